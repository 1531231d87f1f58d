"""``double_backward``: J v by the double-backward trick, on torch.autograd.grad alone.

How: record func() with autograd and take g(u) = uᵀJ for a dummy cotangent u that requires
grad (create_graph=True), so g is linear in u; then J v = d<g(u), v>/du, a second backward
pass through the first. Batches go through ``autograd.grad(is_grads_batched=True)``, which
vmaps the backward pass over the batch; vᵀJ is one backward pass and the Jacobian is a
batch of VJPs with the rows of the identity.

When it wins: for vᵀJ (one backward pass, the least there is), and for J v where no
forward-mode formula exists, since it needs reverse-mode formulas only (twice differentiable
ones). For J v it usually loses: about two backward passes plus a recorded graph of the
first, 4-5x forward_dual on a small CNN on an H100.
"""

import torch

from gvp_bench.contract import Strategy
from gvp_bench.reverse import forward_with_graph, grad_or_zeros, identity_cotangents, reverse_vjp
from gvp_bench.validation import check_batch_cotangents


def _jvp_by_double_backward(output, live, tangents, create_graph, batched):
    batch = tangents[0].shape[:1] if batched else ()
    zeros = torch.zeros(tuple(batch) + tuple(output.shape), dtype=output.dtype, device=output.device)
    if not output.requires_grad:
        return zeros
    dummy = torch.zeros_like(output, requires_grad=True)
    grads = torch.autograd.grad(output, live, dummy, create_graph=True, allow_unused=True)
    used = [(g, t) for g, t in zip(grads, tangents) if g is not None and g.requires_grad]
    if not used:
        return zeros
    grads, tangents = zip(*used)
    (jv,) = torch.autograd.grad(grads, dummy, tangents, create_graph=create_graph, allow_unused=True,
                                is_grads_batched=batched)
    return zeros if jv is None else jv


class DoubleBackward(Strategy):
    name = "double_backward"

    def _jvp(self, func, params, tangents, create_graph):
        output, live = forward_with_graph(func, params)
        return _jvp_by_double_backward(output, live, tangents, create_graph, batched=False)

    def _batch_jvp(self, func, params, tangents, create_graph):
        output, live = forward_with_graph(func, params)
        return _jvp_by_double_backward(output, live, tangents, create_graph, batched=True)

    def _vjp(self, func, params, v, create_graph):
        return reverse_vjp(func, params, v, create_graph)

    def _batch_vjp(self, func, params, vs, create_graph):
        output, live = forward_with_graph(func, params)
        return grad_or_zeros(output, live, check_batch_cotangents(vs, output), create_graph, is_grads_batched=True)

    def _full_jacobian(self, func, params, create_graph):
        output, live = forward_with_graph(func, params)
        return grad_or_zeros(output, live, identity_cotangents(output), create_graph, is_grads_batched=True)
