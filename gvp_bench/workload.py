"""A workload of your own: the model or closure that gvp-bench benchmarks, verifies and recommends for.

``Workload(model, x)`` takes an ``nn.Module`` and its input: every op applies, model_jvp /
model_vjp on the module, and the five closure ops on ``model(x)`` as a function of the module's
trainable parameters. ``Workload(func, params)`` takes a zero-argument closure and the tensors it
reads (a list, tuple or dict of them): the five closure ops apply. Either form takes a ``name``,
which results rows carry in their ``model`` column.

A module workload is measured in any dtype and on any device: each is a copy of the module and
input, cast. A closure cannot be cast (it reads the tensors it captured), so it is measured in
its own dtype, on its own device.
"""

import copy

import torch
from torch import nn

from .model_call import model_closure
from .validation import check_func, check_model, check_params

SIZE = "user"  # the results' size column for a workload of your own (the zoo's are tiny ... large)
CLOSURE_OPS = ("jvp", "vjp", "batch_jvp", "batch_vjp", "full_jacobian")
MODEL_OPS = ("model_jvp", "model_vjp")


class Workload:
    """``Workload(model, x, name=None)`` or ``Workload(func, params, name=None)``; the name defaults to the
    module's class name or the closure's ``__name__`` (``closure`` for a lambda)."""

    def __init__(self, target, inputs, name=None):
        if isinstance(target, nn.Module):
            check_model(target, inputs)
            if not isinstance(inputs, torch.Tensor):
                raise TypeError(f"x must be the module's input, a tensor, got {type(inputs).__name__}")
            self.model, self.x = target, inputs
            self.params = [p for p in target.parameters() if p.requires_grad]
            self.func = model_closure(target, inputs)
        else:
            check_func(target)
            check_params(inputs)
            self.model, self.x = None, None
            self.params, self.func = inputs, target
        default = type(target).__name__ if self.model is not None else getattr(target, "__name__", "<lambda>")
        self.name = name if name is not None else default.replace("<lambda>", "closure")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string naming the workload, got {self.name!r}")

    @property
    def tensors(self):
        """The params as a sequence, whatever form they were given in."""
        return list(self.params.values()) if isinstance(self.params, dict) else list(self.params)

    @property
    def dtype(self):
        return self.tensors[0].dtype

    @property
    def device(self):
        return self.tensors[0].device

    @property
    def ops(self):
        """The ops that apply: the five closure ops, and model_jvp / model_vjp for a module."""
        return CLOSURE_OPS + (MODEL_OPS if self.model is not None else ())

    @property
    def parameter_count(self):
        return sum(p.numel() for p in self.tensors)

    @property
    def output_size(self):
        with torch.no_grad():
            return self.func().numel()

    def forward(self):
        """The plain forward pass the products are compared with: ``model(x)``, or ``func()``."""
        with torch.no_grad():
            return self.model(self.x) if self.model is not None else self.func()

    def to(self, device=None, dtype=None):
        """This workload on ``device`` in ``dtype``: a cast copy of a module and its input; a closure as it
        is, which cannot be cast (ValueError when asked for another dtype or device)."""
        device = torch.device(device) if device is not None else self.device
        dtype = dtype or self.dtype
        if self.model is None:
            if (device.type, dtype) != (self.device.type, self.dtype):
                raise ValueError(f"workload {self.name!r} is a closure over {self.dtype} params on {self.device.type}: "
                                 f"it cannot be cast to {dtype} on {device.type}; give it as (model, x) to measure "
                                 "it in other dtypes or on other devices")
            return self
        model = copy.deepcopy(self.model).to(device=device, dtype=dtype)
        x = self.x.to(device=device, dtype=dtype) if self.x.is_floating_point() else self.x.to(device)
        return Workload(model, x, name=self.name)

    def __repr__(self):
        form = f"module {type(self.model).__name__}" if self.model is not None else "closure"
        return (f"<gvp_bench.Workload {self.name!r}: {form}, {self.parameter_count} parameters, "
                f"{self.dtype} on {self.device.type}>")


def as_workload(value, name=None):
    """A Workload from what a workload function returns: a Workload, ``(model, x)`` or ``(func, params)``.

    ``name`` names a workload given as a pair. TypeError when ``value`` is none of these.
    """
    if isinstance(value, Workload):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return Workload(*value, name=name)
    raise TypeError(f"expected (model, x), (func, params) or a gvp_bench.Workload, got {_describe(value)}")


def _describe(value):
    if isinstance(value, tuple):
        return f"a tuple of {len(value)} items"
    return type(value).__name__
