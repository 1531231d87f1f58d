"""``func_vmap``: torch.func.jvp and torch.func.vjp over the functional form, batched by vmap.

How: func becomes a function of its params (each occurrence of a param swapped for the
function's argument, see gvp_bench.functional); J v is torch.func.jvp on it, vᵀJ the pullback
of torch.func.vjp; batches are torch.func.vmap over those, so k products run as one batched
computation (random operations draw the same values for every row, so dropout keeps one
mask), and the Jacobian is vmap over the pullback with the rows of the identity. Batches and
Jacobians run in chunks of rows that fit a memory budget (``chunk_size="auto"``, the default;
see gvp_bench.chunking), or ``chunk_size`` rows at a time.

When it wins: batches of products on a GPU, where one batched kernel replaces k launches. It
costs memory: vmap holds the intermediates of every row of a chunk at once (the memory budget
bounds it), and on a CPU with few cores a batched kernel often gains nothing over a loop. A single
J v runs the same operators as forward_dual, plus the functorch layer's overhead per call.
"""

from torch.func import jvp, vjp, vmap

from gvp_bench.kit import (Chunked, Strategy, Unsupported, as_function_of, check_batch_cotangents, check_cotangent,
                           identity_cotangents, in_chunks, primals_of, zeros_for)


class FuncVmap(Chunked, Strategy):
    name = "func_vmap"
    unsupported = (
        Unsupported(("custom_function_backward_only",), "setup_context",
                    "torch.func transforms need every custom autograd.Function in func written with setup_context "
                    "(and a vmap rule); one with an old-style forward(ctx, ...) and a backward only is refused"),
    )

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
