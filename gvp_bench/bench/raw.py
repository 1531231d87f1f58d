"""The torch calls the strategies wrap, written by hand for a module: what a product costs without gvp-bench.

These are reference rows, not strategies: no argument checks, no buffer protection, no
workarounds, only what a user writing the technique directly for one model would write.

- ``raw.forward_ad`` (model_jvp): the params as dual tensors through
  ``torch.func.functional_call`` under ``torch.autograd.forward_ad``;
- ``raw.func_jvp`` (model_jvp): ``torch.func.jvp`` of ``functional_call`` over the params;
- ``raw.autograd_grad`` (model_vjp): ``torch.autograd.grad(model(x), params, u)``.
"""

import torch
import torch.autograd.forward_ad as fwAD
from torch.func import functional_call

from ..errors import translate_missing_rules

FRAMEWORK = "torch-raw"
# strategy -> the ops it measures
STRATEGIES = {"raw.forward_ad": ("model_jvp",), "raw.func_jvp": ("model_jvp",), "raw.autograd_grad": ("model_vjp",)}
NAMES = {"model_jvp": "raw.forward_ad", "model_vjp": "raw.autograd_grad"}  # the one overhead compares with


def _trainable(model):
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return [name for name, _ in named], [p for _, p in named]


def model_jvp(model):
    """``call(x, tangents)``: J v of model(x) by dual params (tangents: a list matching the trainable params)."""
    names, params = _trainable(model)

    def call(x, tangents):
        with fwAD.dual_level():
            duals = {name: fwAD.make_dual(p.detach(), t) for name, p, t in zip(names, params, tangents)}
            return fwAD.unpack_dual(functional_call(model, duals, (x,))).tangent

    return call


def model_func_jvp(model):
    """``call(x, tangents)``: J v of model(x) by torch.func.jvp over functional_call."""
    names, params = _trainable(model)

    def call(x, tangents):
        return torch.func.jvp(lambda *ps: functional_call(model, dict(zip(names, ps)), (x,)),
                              tuple(p.detach() for p in params), tuple(tangents))[1]

    return call


def model_vjp(model):
    """``call(x, u)``: uᵀJ of model(x) by one backward pass."""
    _, params = _trainable(model)

    def call(x, u):
        return torch.autograd.grad(model(x), params, u)

    return call


def _typed(name, builder):
    """``builder`` whose calls raise UnsupportedError where torch has no formula for an operator (a row
    ``unsupported`` with the operator's name, as a strategy's would be, rather than an error)."""
    def build(model):
        call = builder(model)

        def typed_call(*args):
            with translate_missing_rules(name):
                return call(*args)
        return typed_call
    return build


BUILDERS = {name: _typed(name, builder) for name, builder in
            (("raw.forward_ad", model_jvp), ("raw.func_jvp", model_func_jvp), ("raw.autograd_grad", model_vjp))}
