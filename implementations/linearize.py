"""``linearize``: torch.func.linearize once per call, then every J v through the linear function.

How: torch.func.linearize over the functional form (gvp_bench.functional) evaluates func at
the params and traces its forward-mode derivative into an FX graph (make_fx), with the parts
that do not depend on the tangent (the forward pass) folded into constants: what is left
computes J v and nothing else. A batch of tangents then runs through it with vmap, in chunks
that fit the memory budget (gvp_bench.chunking); the Jacobian pushes the identity's columns
through it the same way (forward mode, P columns). The folded constants carry no graph, so
create_graph=True raises UnsupportedError. Where vmap cannot run the traced graph, the batch goes
row by row through the linear function instead: make_fx records a reshape of a contiguous tensor as
aten.view, and vmap's rule for some operators gives each row's result non-contiguous (nn.Embedding's
rows come out with the batch dimension in the middle), which that view cannot flatten (nn.Embedding
then nn.Flatten). VJPs: linearize gives J v only, so vjp and
batch_vjp raise UnsupportedError (after checking their input, as every strategy does).
Random operations (dropout in train mode) raise UnsupportedError: the traced graph draws its
random numbers again on every J v, outside the random state model_jvp's closure restores, so
the mask would differ from func's own (checked on linearize's first evaluation of func).

When it wins: in principle, many products at one point, once the tracing is paid for; in eager
PyTorch, never measured so far. The tracing (make_fx) costs 50-70 ms per call on the 2-core CPU
whatever the batch, and each product through the linear function is cheap (the tiny cnn: 69.5 ms
at k = 1, 72.6 ms at k = 256), but vmap(jvp) also computes the forward pass once for the whole batch:
func_vmap took 0.5-0.8 ms (tiny mlp) and 1.4-2.1 ms (tiny cnn) for k = 1 to 256 in the same run
(``gvp-bench run --suite batch``, --threads 1, quiet: results/cpu-2core-batch.jsonl), where
linearize took 54-60 ms and 70-73 ms, so it lost at every k, by 35-105x. It also holds the
forward pass's intermediates as constants for the call. Batches go through vmap of the linear
function, which also chunks: against a loop of it, vmap was 50 against 74 ms (tiny mlp, k = 8) and 84 against 92 ms (tiny cnn, k = 32), but 68
against 56 ms for the mlp at k = 32 (one run each under load: within the noise of the tracing).
"""

import warnings

import torch
from torch.func import linearize, vmap

from gvp_bench.chunking import Chunked, forward_mode_jacobian, in_chunks
from gvp_bench.contract import Strategy
from gvp_bench.errors import UnsupportedError
from gvp_bench.functional import as_function_of, call_with, primals_of
from gvp_bench.randomness import RandomOperations
from gvp_bench.validation import check_batch_cotangents, check_cotangent

J_V_ONLY = "torch.func.linearize gives J v only (forward mode): it has no vᵀJ"
RANDOM = ("func draws random numbers ({}): the linearized function would draw them anew on every call, "
          "not the ones of func's own pass (a dropout mask per product)")
NON_CONTIGUOUS_VIEW = "view size is not compatible with input tensor's size and stride"  # torch's message
NO_GRAPH = ("create_graph=True: torch.func.linearize folds the forward pass into constants, so its J v "
            "carries no graph back to the params")


def _checked_once(function, strategy):
    """function, whose first call (linearize's plain evaluation) raises UnsupportedError when it draws
    random numbers: linearize's traced graph draws them again on every J v."""
    calls = []

    def function_without_randomness(*replacements):
        if calls:
            return function(*replacements)
        calls.append(True)
        with RandomOperations() as random:
            output = function(*replacements)
        if random.seen:
            raise UnsupportedError(strategy, RANDOM.format(", ".join(sorted(set(random.seen)))))
        return output

    return function_without_randomness


def _vmapped_or_row_by_row(linear):
    """linear over a batch of tangents: vmapped, or row by row from the first batch where vmap gives a row's
    intermediate result a layout the traced graph's aten.view cannot take (see the module's docstring)."""
    vmapped, row_by_row = vmap(linear), []

    def batched(*tangents):
        if not row_by_row:
            try:
                return vmapped(*tangents)
            except RuntimeError as error:
                if NON_CONTIGUOUS_VIEW not in str(error):
                    raise
                row_by_row.append(True)
        return torch.stack([linear(*row) for row in zip(*tangents)])

    return batched


class Linearize(Chunked, Strategy):
    name = "linearize"

    def _linearized(self, func, params, create_graph):
        """func()'s output and the linear function J·: tangents matching params -> J v."""
        if create_graph:
            raise UnsupportedError(self.name, NO_GRAPH)
        with warnings.catch_warnings():  # const_fold's notice about the folded constants, on every call
            warnings.filterwarnings("ignore", "Attempted to insert a get_attr Node", UserWarning)
            return linearize(_checked_once(as_function_of(func, params), self.name), *primals_of(params, False))

    def _batched(self, func, params, rows, create_graph):
        """func()'s output, J· vmapped over a batch of tangents, and the rows to push at once."""
        output, linear = self._linearized(func, params, create_graph)
        return output, _vmapped_or_row_by_row(linear), self._rows_per_chunk(func, params, rows, "outputs")

    def _jvp(self, func, params, tangents, create_graph):
        return self._linearized(func, params, create_graph)[1](*tangents)

    def _batch_jvp(self, func, params, tangents, create_graph):
        rows = tangents[0].shape[0]
        _, batched, chunk = self._batched(func, params, rows, create_graph)
        return in_chunks(lambda start, stop: batched(*(t[start:stop] for t in tangents)), rows, chunk)

    def _full_jacobian(self, func, params, create_graph):
        output, batched, chunk = self._batched(func, params, sum(p.numel() for p in params), create_graph)
        return forward_mode_jacobian(lambda tangents: batched(*tangents), params, chunk, output.numel)

    def _vjp(self, func, params, v, create_graph):
        with torch.no_grad():
            check_cotangent(v, call_with(func, params, params))
        raise UnsupportedError(self.name, J_V_ONLY)

    def _batch_vjp(self, func, params, vs, create_graph):
        with torch.no_grad():
            check_batch_cotangents(vs, call_with(func, params, params))
        raise UnsupportedError(self.name, J_V_ONLY)
