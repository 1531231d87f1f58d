"""``double_backward``: J v by the double-backward trick, on torch.autograd.grad alone.

How: record func() with autograd and take g(u) = uᵀJ for a dummy cotangent u that requires
grad (create_graph=True), so g is linear in u; then J v = d<g(u), v>/du, a second backward
pass through the first. Batches go through ``autograd.grad(is_grads_batched=True)``, which
vmaps the backward pass over the batch; vᵀJ is one backward pass and the Jacobian is a
batch of VJPs with the rows of the identity. Batches and Jacobians run in chunks of rows that
fit a memory budget (``chunk_size="auto"``, the default; see gvp_bench.chunking), or
``chunk_size`` rows at a time, over one recorded forward pass (and, for J v, one first
backward pass).

When it wins: for vᵀJ (one backward pass, the least there is), and for J v where no
forward-mode formula exists, since it needs reverse-mode formulas only (twice differentiable
ones). For J v it usually loses to forward_dual: about two backward passes plus a recorded
graph of the first, against about one forward pass.
"""

import torch

from gvp_bench.kit import (Chunked, Strategy, Unsupported, check_batch_cotangents, forward_with_graph,
                           grad_or_zeros, identity_cotangents, in_chunks, reverse_vjp)


def _jvps_by_double_backward(output, live, tangents, create_graph, rows_per_chunk=None):
    """J v for one tangent per param (``rows_per_chunk`` None), or for a batch of them, the batch's rows
    ``rows_per_chunk`` at a time: the first backward pass, g(u) = uᵀJ, once; the second per chunk."""
    batched = rows_per_chunk is not None
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

    def second_backward(chosen):
        (jv,) = torch.autograd.grad(grads, dummy, chosen, create_graph=create_graph, retain_graph=True,
                                    allow_unused=True, is_grads_batched=batched)
        if jv is None:
            return zeros[:chosen[0].shape[0]] if batched else zeros
        return jv

    if not batched:
        return second_backward(tangents)
    return in_chunks(lambda start, stop: second_backward([t[start:stop] for t in tangents]), batch[0], rows_per_chunk)


class DoubleBackward(Chunked, Strategy):
    name = "double_backward"
    unsupported = (
        Unsupported(("sparse_gradients",), "sparse gradients",
                    "autograd's sparse gradients of an embedding cannot be reshaped into a batch of products or "
                    "a J v"),
    )

    def _jvp(self, func, params, tangents, create_graph):
        output, live = forward_with_graph(func, params)
        return _jvps_by_double_backward(output, live, tangents, create_graph)

    def _batch_jvp(self, func, params, tangents, create_graph):
        output, live = forward_with_graph(func, params)
        rows = tangents[0].shape[0]
        chunk = self._rows_per_chunk(func, params, rows, "outputs")
        return _jvps_by_double_backward(output, live, tangents, create_graph, rows_per_chunk=chunk)

    def _vjp(self, func, params, v, create_graph):
        return reverse_vjp(func, params, v, create_graph)

    def _batch_vjp(self, func, params, vs, create_graph):
        output, live = forward_with_graph(func, params)
        us = check_batch_cotangents(vs, output)
        chunk = self._rows_per_chunk(func, params, us.shape[0], "parameters")
        return in_chunks(lambda start, stop: grad_or_zeros(output, live, us[start:stop], create_graph,
                                                           retain_graph=True, is_grads_batched=True),
                         us.shape[0], chunk)

    def _full_jacobian(self, func, params, create_graph):
        output, live = forward_with_graph(func, params)
        rows = output.numel()
        chunk = self._rows_per_chunk(func, params, rows, "parameters")
        return in_chunks(lambda start, stop: grad_or_zeros(output, live, identity_cotangents(output, start, stop),
                                                           create_graph, retain_graph=True, is_grads_batched=True),
                         rows, chunk)
