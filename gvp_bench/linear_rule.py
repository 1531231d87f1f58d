"""A forward-AD rule for ``nn.Linear`` whose input carries no tangent: J v without a GEMM on zeros.

torch's forward-AD formula for ``addmm`` (what ``F.linear`` runs) adds ``input_t @ weight_pᵀ``
even when the input has no tangent, multiplying a materialised zero tangent: for the first
layer of a network, whose input x is data, a whole GEMM of the layer's size on zeros. Here the
model's large ``nn.Linear`` layers run, for one forward-AD pass, through
:class:`_LinearOfConstantInput`, an autograd.Function whose jvp is ``linear(input, weight_t,
bias_t)``, whenever their input has no tangent and nothing needs a graph; otherwise through
their own forward. The answer is the same; the work is one GEMM less per such layer.
"""

import contextlib

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn

# Layers with fewer weights than this keep their own forward: the Function's fixed cost is more than the GEMM saved.
MIN_WEIGHTS = 1 << 14


class _LinearOfConstantInput(torch.autograd.Function):
    """``F.linear(input, weight, bias)`` for an input without a tangent; forward AD only (no graph)."""

    @staticmethod
    def forward(input, weight, bias):
        return F.linear(input, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def jvp(ctx, input_t, weight_t, bias_t):
        (input,) = ctx.saved_tensors
        return F.linear(input, weight_t, bias_t)


def _has_tangent(tensor):
    return tensor is not None and fwAD.unpack_dual(tensor).tangent is not None


def _linear_forward(module, input):
    weight, bias = module.weight, module.bias
    if (not _has_tangent(input) and _has_tangent(weight)
            and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (input, weight, bias)))):
        return _LinearOfConstantInput.apply(input, weight, bias)
    return F.linear(input, weight, bias)


def large_linear_layers(modules):
    """The modules that are ``nn.Linear`` with its own forward and at least MIN_WEIGHTS weights."""
    return [m for m in modules
            if isinstance(m, nn.Linear) and m.__class__.forward is nn.Linear.forward and m.weight.numel() >= MIN_WEIGHTS]


@contextlib.contextmanager
def constant_input_rule(layers):
    """For the block, ``layers`` (from :func:`large_linear_layers`) run through :func:`_linear_forward`."""
    for layer in layers:
        layer.__dict__["forward"] = lambda input, layer=layer: _linear_forward(layer, input)
    try:
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)
