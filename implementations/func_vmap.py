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

When it wins: batches of products on a GPU, where one batched kernel replaces k launches. It
costs memory: vmap holds the intermediates of every row of a chunk at once (the memory budget
bounds it), and on a CPU with few cores a batched kernel often gains nothing over a loop. A single
J v runs the same operators as forward_dual, plus the functorch layer's overhead per call.
"""

from torch.func import jvp, vjp, vmap

from gvp_bench.kit import (SUBSTITUTION_BLIND_SPOTS, Chunked, Strategy, Unsupported, UnsupportedError,
                           as_function_of, check_batch_cotangents, check_cotangent, identity_cotangents,
                           in_chunks, primals_of, signature, zeros_for)
from gvp_bench.randomness import random_operations

# Devices whose eager dropout is the fused kernel aten::native_dropout (torch's is_fused_kernel_acceptable)
FUSED_DROPOUT_DEVICES = ("cuda",)
FUSED_DROPOUT = ("func runs dropout in train mode on {device}: eager dropout there is the fused kernel "
                 "aten::native_dropout, whose mask vmap (randomness='same') does not reproduce (its batching rule "
                 "draws the mask with bernoulli_), so the batch would use another mask than func's own pass")


class FuncVmap(Chunked, Strategy):
    name = "func_vmap"
    unsupported = (
        Unsupported(("custom_function_backward_only",), "setup_context",
                    "torch.func transforms need every custom autograd.Function in func written with setup_context "
                    "(and a vmap rule); one with an old-style forward(ctx, ...) and a backward only is refused"),
        Unsupported(("random_numbers",), "runs dropout in train mode on",
                    "on CUDA, eager dropout is a fused kernel whose mask vmap's batching rule does not reproduce: a "
                    "batch of J v would use another mask than func's own pass"),
        Unsupported(("no_forward_formula",), "_weight_norm_interface",
                    "forward-mode AD needs a jvp formula for every operator func runs; torch has none for some "
                    "(weight_norm's fused kernel)"),
    ) + SUBSTITUTION_BLIND_SPOTS

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
