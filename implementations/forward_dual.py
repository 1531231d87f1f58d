"""``forward_dual``: J v in one forward pass with torch.autograd.forward_ad dual tensors.

How: each param is replaced for the call by a dual tensor (primal = the param, tangent = its
part of v); the output's tangent is J v. Batches of tangents are a loop of such passes, and
the Jacobian is one pass per parameter element (column by column). The vᵀJ side uses reverse
mode: one backward pass, or one recorded forward and a backward pass per row for a batch.
It takes no chunk_size: a dual tensor holds one tangent, and vmap cannot batch passes of them
(aten::_make_dual has no batching rule, torch 2.14), so a Jacobian is always one column at a
time, the least memory a forward-mode Jacobian can take.

When it wins: single J v on most models (a few forward passes' work, no graph kept, memory flat
in depth); batches where memory is tight, since the loop holds one tangent at a time; Jacobians
with far more outputs than parameters. It fails where an operator has no forward-AD formula.

Where its time goes: the matrix products of the forward pass and of the tangent, so model_jvp
costs a small multiple of the no-grad forward. torch's addmm forward-AD formula multiplies the
input's missing tangent as a materialised zero tensor, one matrix product that does no useful
work; elementwise tangent arithmetic and the fixed cost of dual tensors come on top.
"""

from contextlib import nullcontext

import torch
import torch.autograd.forward_ad as fwAD

from gvp_bench.kit import (NO_FORWARD_FORMULA, SUBSTITUTION_BLIND_SPOTS, Strategy, Unsupported, call_with,
                           check_batch_cotangents, forward_mode_jacobian, forward_with_graph, grad_or_zeros,
                           primals_of, reverse_vjp)
from gvp_bench.linear_rule import constant_input_rule


def _dual_pass(func, params, tangents, create_graph):
    """func() with dual params; returns (output, J v)."""
    primals = primals_of(params, create_graph)
    form = getattr(func, "model_form", None)  # a model closure: its large linear layers skip zero tangents
    rule = constant_input_rule(form().large_linears) if form is not None and not create_graph else nullcontext()
    with fwAD.dual_level(), rule:
        duals = tuple(fwAD.make_dual(p, t) for p, t in zip(primals, tangents))
        output, tangent = fwAD.unpack_dual(call_with(func, params, duals))
    return output, torch.zeros_like(output) if tangent is None else tangent


def _column(func, params, tangents, create_graph):
    """J times a batch of one tangent, by one dual pass."""
    return _dual_pass(func, params, [t[0] for t in tangents], create_graph)[1].unsqueeze(0)


class ForwardDual(Strategy):
    name = "forward_dual"
    unsupported = (
        Unsupported(("custom_function_backward_only",), "defines no jvp",
                    "J v and the Jacobian run forward-mode AD, which needs a jvp formula from every custom "
                    "autograd.Function in func"),
        NO_FORWARD_FORMULA,
    ) + SUBSTITUTION_BLIND_SPOTS

    def _jvp(self, func, params, tangents, create_graph):
        return _dual_pass(func, params, tangents, create_graph)[1]

    def _batch_jvp(self, func, params, tangents, create_graph):
        return torch.stack([self._jvp(func, params, row, create_graph) for row in zip(*tangents)])

    def _vjp(self, func, params, v, create_graph):
        return reverse_vjp(func, params, v, create_graph)

    def _batch_vjp(self, func, params, vs, create_graph):
        output, live = forward_with_graph(func, params)
        rows = [grad_or_zeros(output, live, u, create_graph, retain_graph=True)
                for u in check_batch_cotangents(vs, output)]
        return tuple(torch.stack(per_param) for per_param in zip(*rows))

    def _full_jacobian(self, func, params, create_graph):
        return forward_mode_jacobian(lambda tangents: _column(func, params, tangents, create_graph), params, 1,
                                     lambda: _dual_pass(func, params, [torch.zeros_like(p) for p in params],
                                                        create_graph)[0].numel())
