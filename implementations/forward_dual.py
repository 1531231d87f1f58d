"""``forward_dual``: J v in one forward pass with torch.autograd.forward_ad dual tensors.

How: each param is replaced for the call by a dual tensor (primal = the param, tangent = its
part of v); the output's tangent is J v. Batches of tangents are a loop of such passes, and
the Jacobian is one pass per parameter element (column by column). The vᵀJ side uses reverse
mode: one backward pass, or one recorded forward and a backward pass per row for a batch.
It takes no chunk_size: a dual tensor holds one tangent, and vmap cannot batch passes of them
(aten::_make_dual has no batching rule, torch 2.14), so a Jacobian is always one column at a
time, the least memory a forward-mode Jacobian can take.

When it wins: single J v on most models (about 1.5-3 forward passes of work, no graph kept,
memory flat in depth: fastest JVP measured on the MLP and CNN on an H100); batches where
memory is tight, since the loop holds one tangent at a time; Jacobians with far more
outputs than parameters. It fails where an operator has no forward-AD formula.

Where model_jvp's time goes (zoo mlp medium: 784-1024-1024-10 on 64 inputs, float32, one thread
of a 2-core Xeon, torch 2.14; thread CPU time, medians of 95-140 interleaved blocked_autorange
blocks, two runs): 5.9-6.0 ms against 1.85 ms for the no-grad forward, 3.2x, where a JVP's
arithmetic is 2.57 forward passes. Its matrix products do 3.0 (715 against 238 MFLOP,
FlopCounterMode): torch's addmm forward-AD formula multiplies the missing tangent of the input x
by W1ᵀ as a materialised ZeroTensor, a full GEMM on zeros (0.7 ms). Elementwise tangent
arithmetic (adds, tanh_backward) takes about 0.3 ms under torch.profiler; the fixed cost
(Python, dual tensors: the whole call on the tiny MLP) 0.16 ms. GEMMs written out by hand, just
the 2.57 passes, take 2.5-2.6x the forward: at 64 inputs they are compute-bound (130 GFLOP/s;
the weights stream at 4 GB/s of the 29 GB/s one core reads), so FLOPs are the floor. Loaded runs
that read 6-7x timed preemption by other processes (samples step by about 4.2 ms), not work.
"""

from contextlib import nullcontext

import torch
import torch.autograd.forward_ad as fwAD

from gvp_bench.chunking import forward_mode_jacobian
from gvp_bench.contract import Strategy
from gvp_bench.functional import call_with, primals_of
from gvp_bench.linear_rule import constant_input_rule
from gvp_bench.reverse import forward_with_graph, grad_or_zeros, reverse_vjp
from gvp_bench.validation import check_batch_cotangents


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
