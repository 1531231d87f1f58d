"""``linearize``: torch.func.linearize once per call, then every J v through the linear function.

How: torch.func.linearize over the functional form (gvp_bench.functional) evaluates func at
the params and traces its forward-mode derivative into an FX graph (make_fx), with the parts
that do not depend on the tangent (the forward pass) folded into constants: what is left
computes J v and nothing else. A batch of tangents then runs through it with vmap, in chunks
that fit the memory budget (gvp_bench.chunking); the Jacobian pushes the identity's columns
through it the same way (forward mode, P columns). The folded constants carry no graph, so
create_graph=True raises UnsupportedError. VJPs: linearize gives J v only, so vjp and
batch_vjp raise UnsupportedError (after checking their input, as every strategy does).
Random operations (dropout in train mode) raise UnsupportedError: the traced graph draws its
random numbers again on every J v, outside the random state model_jvp's closure restores, so
the mask would differ from func's own (checked on linearize's first evaluation of func).

When it wins: in principle, many products at one point, once the tracing is paid for. In eager
PyTorch the tracing (make_fx) runs on every call, whatever the batch, and costs far more than a
product; vmap(jvp) (func_vmap) also computes the forward pass once for a whole batch, without
tracing, so linearize has lost to it at every batch size measured (the reference results of the
batch suite). It also holds the forward pass's intermediates as constants for the call.
"""

import warnings

import torch
from torch.func import linearize, vmap

from gvp_bench.kit import (SUBSTITUTION_BLIND_SPOTS, Chunked, Strategy, Unsupported, UnsupportedError,
                           as_function_of, call_with, check_batch_cotangents, check_cotangent,
                           forward_mode_jacobian, in_chunks, primals_of)
from gvp_bench.randomness import RandomOperations

J_V_ONLY = "torch.func.linearize gives J v only (forward mode): it has no vᵀJ"
RANDOM = ("func draws random numbers ({}): the linearized function would draw them anew on every call, "
          "not the ones of func's own pass (a dropout mask per product)")
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


class Linearize(Chunked, Strategy):
    name = "linearize"
    unsupported = (
        Unsupported(("vjp", "model_vjp", "batch_vjp"), "J v only", J_V_ONLY),
        Unsupported(("create_graph",), "create_graph=True", NO_GRAPH),
        Unsupported(("random_numbers",), "draws random numbers",
                    "the linearized function would draw random numbers anew on every J v, not the ones of func's "
                    "own pass"),
        Unsupported(("custom_function_backward_only",), "defines no jvp",
                    "linearize traces forward-mode AD, which needs a jvp formula from every custom autograd.Function"),
        Unsupported(("no_forward_formula",), "_weight_norm_interface",
                    "forward-mode AD needs a jvp formula for every operator func runs; torch has none for some "
                    "(weight_norm's fused kernel)"),
    ) + SUBSTITUTION_BLIND_SPOTS

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
        return output, vmap(linear), self._rows_per_chunk(func, params, rows, "outputs")

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
