"""``jacrev_chunked``: materialise J with torch.func.jacrev(chunk_size=...), then multiply.

How: one call of torch.func.jacrev over the functional form gives J, computed ``chunk_size``
rows at a time (vmap over that many VJPs per chunk; 1 is a plain loop, None all rows at
once, ``"auto"``, the default, as many as fit a memory budget: see gvp_bench.chunking); every
product is then a matrix product with J.

When it wins: many products at one point with few outputs (once J is built, each further
product is a matrix-vector product), and the full Jacobian when memory must stay bounded:
the chunk size trades speed for peak memory. For one product it pays for M backward passes.
"""

from torch.func import jacrev

from gvp_bench.kit import (SUBSTITUTION_BLIND_SPOTS, Chunked, EmptyOutputPadding, Strategy, Unsupported,
                           as_function_of, check_batch_cotangents, check_cotangent, jacobian_vector_products,
                           primals_of, vector_jacobian_products)


class JacrevChunked(Chunked, Strategy):
    name = "jacrev_chunked"
    unsupported = (
        Unsupported(("custom_function_backward_only",), "setup_context",
                    "torch.func transforms need every custom autograd.Function in func written with setup_context "
                    "(and a vmap rule); one with an old-style forward(ctx, ...) and a backward only is refused"),
    ) + SUBSTITUTION_BLIND_SPOTS

    def _jacobian(self, func, params, create_graph):
        """func()'s output and J as (output numel, param numel) matrices, one per param."""
        function, padding = as_function_of(func, params), EmptyOutputPadding()

        def with_output(*replacements):
            output = function(*replacements)
            return padding.pad(output), output

        argnums = tuple(range(len(params)))
        chunk = self._rows_per_chunk(func, params, None, "parameters")
        blocks, output = jacrev(with_output, argnums=argnums, has_aux=True, chunk_size=chunk)(
            *primals_of(params, create_graph))
        return output, tuple(padding.rows(b, p).reshape(output.numel(), p.numel()) for b, p in zip(blocks, params))

    def _jvp(self, func, params, tangents, create_graph):
        output, matrices = self._jacobian(func, params, create_graph)
        return jacobian_vector_products(matrices, tangents, output)

    def _batch_jvp(self, func, params, tangents, create_graph):
        output, matrices = self._jacobian(func, params, create_graph)
        return jacobian_vector_products(matrices, tangents, output, batch=tangents[0].shape[0])

    def _vjp(self, func, params, v, create_graph):
        output, matrices = self._jacobian(func, params, create_graph)
        return vector_jacobian_products(matrices, check_cotangent(v, output), params)

    def _batch_vjp(self, func, params, vs, create_graph):
        output, matrices = self._jacobian(func, params, create_graph)
        us = check_batch_cotangents(vs, output)
        return vector_jacobian_products(matrices, us, params, batch=us.shape[0])

    def _full_jacobian(self, func, params, create_graph):
        output, matrices = self._jacobian(func, params, create_graph)
        return tuple(m.reshape((output.numel(),) + tuple(p.shape)) for m, p in zip(matrices, params))
