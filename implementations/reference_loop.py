"""``reference_loop``: the documented reference behaviour, the slow baseline.

How: as the documented reference implementation (torch_secorder.core.gvp) does it: J v by one
backward pass per output element (each row of J with torch.autograd.grad, then its dot
product with v), vᵀJ by one backward pass, the Jacobian row by row, and batches as a Python
loop over the vectors, each product recomputing the forward pass. Unlike the reference, v is
checked against params (the reference zips them and silently drops extra tensors).

When it wins: never; it is the baseline the others are measured against (its J v takes one
backward pass per output element, and a batch one such J v per vector), and the behaviour
users of the reference get today.
"""

import torch

from gvp_bench.kit import (Strategy, Unsupported, check_batch_cotangents, forward_with_graph, grad_or_zeros,
                           jacobian_vector_products, reverse_vjp)


def _jacobian_rows(output, live, create_graph):
    """J as a tuple (one per param) of (output numel, *param shape): one backward pass per output element."""
    flat = output.reshape(-1)
    rows = [grad_or_zeros(flat[i], live, None, create_graph, retain_graph=True) for i in range(flat.numel())]
    return tuple(torch.stack([row[k] for row in rows]) if rows else p.new_zeros((0,) + tuple(p.shape))
                 for k, p in enumerate(live))


class ReferenceLoop(Strategy):
    name = "reference_loop"
    unsupported = (
        Unsupported(("sparse_gradients",), "sparse gradients",
                    "autograd's sparse gradients of an embedding cannot be reshaped into a batch of products or "
                    "a J v"),
    )

    def _jvp(self, func, params, tangents, create_graph):
        output, live = forward_with_graph(func, params)
        jacobian = _jacobian_rows(output, live, create_graph)
        matrices = [rows.reshape(output.numel(), p.numel()) for rows, p in zip(jacobian, params)]
        return jacobian_vector_products(matrices, tangents, output)

    def _batch_jvp(self, func, params, tangents, create_graph):
        return torch.stack([self._jvp(func, params, row, create_graph) for row in zip(*tangents)])

    def _vjp(self, func, params, v, create_graph):
        return reverse_vjp(func, params, v, create_graph)

    def _batch_vjp(self, func, params, vs, create_graph):
        # The first forward pass also checks vs against the output; each row then runs its own.
        output, live = forward_with_graph(func, params)
        cotangents = check_batch_cotangents(vs, output)
        rows = [grad_or_zeros(output, live, cotangents[0], create_graph)]
        rows += [reverse_vjp(func, params, u, create_graph) for u in cotangents[1:]]
        return tuple(torch.stack(per_param) for per_param in zip(*rows))

    def _full_jacobian(self, func, params, create_graph):
        output, live = forward_with_graph(func, params)
        return _jacobian_rows(output, live, create_graph)
