"""Reverse-mode building blocks on torch.autograd.grad (a checked vᵀJ on autograd's engine, as grad calls it),
shared by the autograd-based strategies."""

import operator
from itertools import repeat

import torch
from torch.overrides import has_torch_function

from .functional import call_with
from .validation import check_cotangent

_REQUIRES_GRAD = operator.attrgetter("requires_grad")
# autograd's engine, which torch.autograd.grad calls once it has checked and normalised its arguments.
_run_backward = torch.autograd.Variable._execution_engine.run_backward


def forward_with_graph(func, params):
    """func() recorded by autograd, and the tensors to differentiate with respect to.

    Params that require grad are used as they are (so create_graph results stay connected to
    them); the others are replaced for the call by detached leaves that do.
    """
    live = params if all(map(_REQUIRES_GRAD, params)) else tuple(
        p if p.requires_grad else p.detach().requires_grad_() for p in params)
    return call_with(func, params, live), live


def _zeros(param, batch=()):
    return torch.zeros(tuple(batch) + tuple(param.shape), dtype=param.dtype, device=param.device)


def zeros_for(params, batch=()):
    return tuple(_zeros(p, batch) for p in params)


def grad_or_zeros(outputs, inputs, grad_outputs, create_graph, retain_graph=None, is_grads_batched=False):
    """torch.autograd.grad with zeros for the inputs outputs do not depend on."""
    batch = grad_outputs.shape[:1] if is_grads_batched else ()
    if not outputs.requires_grad or (is_grads_batched and grad_outputs.shape[0] == 0):
        return zeros_for(inputs, batch)  # (a batch of no cotangents: the Jacobian of an output with no elements)
    grads = torch.autograd.grad(outputs, inputs, grad_outputs, create_graph=create_graph,
                                retain_graph=retain_graph, allow_unused=True, is_grads_batched=is_grads_batched)
    return _zeros_where_unused(grads, inputs, batch)


def _zeros_where_unused(grads, inputs, batch=()):
    if not any(map(operator.is_, grads, repeat(None))):  # the usual case, first
        return grads
    return tuple(_zeros(x, batch) if g is None else g for g, x in zip(grads, inputs))


def reverse_vjp(func, params, v, create_graph):
    """vᵀJ by one recorded forward pass and one backward pass.

    The backward pass goes to autograd's engine as torch.autograd.grad sends it, without grad's Python
    wrapper, which would check the cotangent again (check_cotangent has checked its shape, dtype and
    device) and normalise arguments that are already normal here, a cost that shows on small models
    (docs/overhead.md). Tensor subclasses, torch-function modes and torch.compile's tracing, which grad
    hands to their own handlers, still go through grad."""
    output, live = forward_with_graph(func, params)
    v = check_cotangent(v, output)
    if not output.requires_grad or has_torch_function((output, v, *live)) or torch.compiler.is_compiling():
        return grad_or_zeros(output, live, v, create_graph)
    return _zeros_where_unused(_run_backward((output,), (v,), create_graph, create_graph, live, True,
                                             accumulate_grad=False), live)


def identity_cotangents(output, start=0, stop=None):
    """Rows ``start`` to ``stop`` (default: all) of the identity, shaped (rows, *output shape): one VJP
    each gives those rows of J."""
    stop = output.numel() if stop is None else stop
    rows = torch.zeros(stop - start, output.numel(), dtype=output.dtype, device=output.device)
    rows[torch.arange(stop - start), torch.arange(start, stop)] = 1
    return rows.reshape((stop - start,) + tuple(output.shape))
