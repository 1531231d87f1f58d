"""``func_vmap``: torch.func.jvp and torch.func.vjp over the functional form, batched by vmap.

How: func becomes a function of its params (each occurrence of a param swapped for the
function's argument, see gvp_bench.functional); J v is torch.func.jvp on it, vᵀJ the pullback
of torch.func.vjp; batches are torch.func.vmap over those, so k products run as one batched
computation (random operations draw the same values for every row, so dropout keeps one
mask), and the Jacobian is vmap over the pullback with the rows of the identity. Batches and
Jacobians run in chunks of rows that fit a memory budget (``chunk_size="auto"``, the default;
see gvp_bench.chunking), or ``chunk_size`` rows at a time.

What it refuses: batches of J v of a func that runs dropout in train mode on CUDA
(UnsupportedError). Eager CUDA dropout runs the fused kernel ``aten::native_dropout``; under
vmap its batching rule (functorch's BatchRulesRandomness.cpp, randomness "same") draws the mask
with ``bernoulli_`` instead, as the CPU kernel does: on CUDA the batch would use another mask than
func's own pass, and every other strategy's. Whether func runs it is found by one plain call of
func, once per workload signature, on CUDA only.

When it wins: batches of products on a GPU, where one batched kernel replaces k launches
(16 JVPs of an MLP: 1.13 ms against 13.1 ms for a loop on an H100). It costs memory: vmap
holds all the chunk's tangents' intermediates at once (1.84 GB against 0.16 GB for a loop on
a small CNN, unchunked), and on a 2-core CPU it often gains nothing over a loop.

Where model_jvp's time goes (zoo mlp medium: 784-1024-1024-10 on 64 inputs, float32, one thread
of a 2-core Xeon, torch 2.14; thread CPU time, medians of 95-140 interleaved blocked_autorange
blocks, two runs): 6.1-6.2 ms against 1.85 ms for the no-grad forward, 3.3x. torch.func.jvp runs
the same operators as forward_dual (see its docstring): 3.0 forward passes of matrix products
instead of 2.57, one of them a GEMM on the materialised zero tangent of the input (0.7 ms), and
0.2-0.3 ms more than forward_dual for the functorch layer (written by hand over functional_call,
in the same runs: torch.func.jvp 6.05-6.29 ms, dual tensors 5.74-5.93 ms). Its fixed cost (the
whole call on the tiny MLP) is about 0.29 ms. Loaded runs that read 6-7x timed preemption, not
work.
"""

from torch.func import jvp, vjp, vmap

from gvp_bench.autotune.signature import signature
from gvp_bench.chunking import Chunked, in_chunks
from gvp_bench.contract import Strategy
from gvp_bench.errors import UnsupportedError
from gvp_bench.functional import as_function_of, primals_of
from gvp_bench.randomness import random_operations
from gvp_bench.reverse import identity_cotangents, zeros_for
from gvp_bench.validation import check_batch_cotangents, check_cotangent

# Devices whose eager dropout is the fused kernel aten::native_dropout (torch's is_fused_kernel_acceptable)
FUSED_DROPOUT_DEVICES = ("cuda",)
FUSED_DROPOUT = ("func runs dropout in train mode on {device}: eager dropout there is the fused kernel "
                 "aten::native_dropout, whose mask vmap (randomness='same') does not reproduce (its batching rule "
                 "draws the mask with bernoulli_), so the batch would use another mask than func's own pass")


class FuncVmap(Chunked, Strategy):
    name = "func_vmap"

    def compute(self, product, func, params, *args):
        """The contract's compute, after refusing a batch of J v of a func that runs CUDA's fused dropout
        (outside the products, which the compiled strategies trace)."""
        if product == "batch_jvp":
            self._refuse_fused_dropout(func, params, args)
        return super().compute(product, func, params, *args)

    def _jvp(self, func, params, tangents, create_graph):
        return jvp(as_function_of(func, params), primals_of(params, create_graph), tangents)[1]

    def _batch_jvp(self, func, params, tangents, create_graph):
        function = as_function_of(func, params)
        primals = primals_of(params, create_graph)
        batched = vmap(lambda *row: jvp(function, primals, row)[1], randomness="same")
        rows = tangents[0].shape[0]
        chunk = self._rows_per_chunk(func, params, rows, "outputs")
        return in_chunks(lambda start, stop: batched(*(t[start:stop] for t in tangents)), rows, chunk)

    def _vjp(self, func, params, v, create_graph):
        output, pullback = vjp(as_function_of(func, params), *primals_of(params, create_graph))
        return pullback(check_cotangent(v, output))

    def _batch_vjp(self, func, params, vs, create_graph):
        output, pullback = vjp(as_function_of(func, params), *primals_of(params, create_graph))
        us = check_batch_cotangents(vs, output)
        chunk = self._rows_per_chunk(func, params, us.shape[0], "parameters")
        return in_chunks(lambda start, stop: vmap(pullback)(us[start:stop]), us.shape[0], chunk)

    def _full_jacobian(self, func, params, create_graph):
        output, pullback = vjp(as_function_of(func, params), *primals_of(params, create_graph))
        if output.numel() == 0:  # no rows; vmap over a batch of no cotangents fails on some backward formulas
            return zeros_for(params, (0,))
        chunk = self._rows_per_chunk(func, params, output.numel(), "parameters")
        return in_chunks(lambda start, stop: vmap(pullback)(identity_cotangents(output, start, stop)),
                         output.numel(), chunk)

    def _refuse_fused_dropout(self, func, params, args):
        """UnsupportedError where func runs the fused dropout kernel (see the module docstring); what one plain
        call of func found is kept per workload signature."""
        device = params[0].device
        if device.type not in FUSED_DROPOUT_DEVICES:
            return
        found = self.__dict__.setdefault("_runs_fused_dropout", {})
        key = signature("batch_jvp", func, params, args)
        if key not in found:
            found[key] = "aten::native_dropout" in random_operations(func, params)
        if found[key]:
            raise UnsupportedError(self.name, FUSED_DROPOUT.format(device=device.type))
