"""The named conformance cases: small problems that between them cover the contract.

A case builds a :class:`Problem` for a dtype and device, always from the same seed: the same
values in float32 and float64 (drawn in float64, then cast). Model cases also carry the
module and its input, and are checked through model_jvp / model_vjp as well as through the
five closure functions.
"""

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from .. import zoo
from ..contract import model_closure

FUNC_FUNCTIONS = ("jvp", "vjp", "batch_jvp", "batch_vjp", "full_jacobian")
MODEL_FUNCTIONS = ("model_jvp", "model_vjp")


@dataclass
class Problem:
    """What a check runs: func and params, plus the model and its input for model cases."""
    func: Callable
    params: list
    model: Optional[nn.Module] = None
    x: Optional[torch.Tensor] = None


@dataclass
class ClosureRecipe:
    """``make(*params)`` returns the zero-argument closure over those params."""
    make: Callable
    params: list


@dataclass
class ModelRecipe:
    model: nn.Module
    x: torch.Tensor


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    build: Callable  # (generator) -> ClosureRecipe or ModelRecipe, in float64 on the CPU
    second_order: bool = False  # also check create_graph=True against finite differences
    analytic_jacobian: Optional[Callable] = None  # params -> J as an (outputs, params) matrix
    tags: tuple = field(default_factory=tuple)
    features: tuple = ()  # what its cells exercise, names from gvp_bench.support.FEATURES (see exercises)

    @property
    def is_model(self):
        return "model" in self.tags

    @property
    def functions(self):
        return FUNC_FUNCTIONS + (MODEL_FUNCTIONS if self.is_model else ())

    def exercises(self, function, device):
        """The features (gvp_bench.support.FEATURES) the cell of ``function`` on ``device`` exercises: the
        function, the device, create_graph for second-order cases, and the case's own features (but
        model_jvp / model_vjp make their own closure: no random_state_closure)."""
        features = {function, torch.device(device).type, *self.features}
        if self.second_order:
            features.add("create_graph")
        if function in MODEL_FUNCTIONS:
            features.discard("random_state_closure")
        return features

    def seeded(self):
        """A context in which the global random state starts from the case's seed, restored after.

        Model closures in train mode draw their random state when made: made in this context, the
        oracle's closure and the one model_jvp makes draw the same dropout mask."""
        return _seeded(sum(map(ord, self.name)))

    def problem(self, dtype=torch.float64, device="cpu"):
        """A fresh problem in dtype on device, built from the case's seed."""
        with self.seeded():  # module initialisation draws from the global generator
            recipe = self.build(torch.Generator().manual_seed(sum(map(ord, self.name))))
        if isinstance(recipe, ModelRecipe):
            model = recipe.model.to(device=device, dtype=dtype)
            x = recipe.x.to(device=device, dtype=dtype) if recipe.x.is_floating_point() else recipe.x.to(device)
            with self.seeded():  # as the checks call model_jvp / model_vjp
                func = model_closure(model, x)
            return Problem(func, [p for p in model.parameters() if p.requires_grad], model, x)
        params = [p.detach().to(device=device, dtype=dtype).requires_grad_() for p in recipe.params]
        return Problem(recipe.make(*params), params)


@contextlib.contextmanager
def _seeded(seed):
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        torch.manual_seed(seed)
        yield


def _randn(generator, *shape):
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def _documented_example(generator):
    def make(x):
        return lambda: torch.stack([x[0] ** 2, 3 * x[1] ** 2])
    return ClosureRecipe(make, [torch.tensor([1.0, 2.0], dtype=torch.float64)])


def _scalar_output(generator):
    x = _randn(generator, 4)
    def make(w):
        x_ = x.to(w)
        return lambda: torch.tanh(w @ x_).sum()
    return ClosureRecipe(make, [_randn(generator, 3, 4)])


def _vector_output(generator):
    x = _randn(generator, 4)
    def make(w, b):
        x_ = x.to(w)
        return lambda: torch.tanh(w @ x_ + b)
    return ClosureRecipe(make, [_randn(generator, 3, 4), _randn(generator, 3)])


def _matrix_output(generator):
    x = _randn(generator, 5, 3)
    def make(scale, a):
        x_ = x.to(a)
        return lambda: scale * torch.sin(x_ @ a)
    return ClosureRecipe(make, [_randn(generator), _randn(generator, 3, 2)])


def _unused_params(generator):
    x = _randn(generator, 3)
    def make(a, unused, c):
        x_ = x.to(a)
        return lambda: torch.exp(a * x_) + c.sum() * x_
    return ClosureRecipe(make, [_randn(generator, 3), _randn(generator, 2, 2), _randn(generator, 4)])


def _returns_param(generator):
    def make(x):
        return lambda: x
    return ClosureRecipe(make, [_randn(generator, 2, 3)])


def _exp_reducer(generator):
    def make(x):
        return lambda: x.exp().sum(dim=1)
    return ClosureRecipe(make, [torch.rand(4, 4, generator=generator, dtype=torch.float64)])


def _second_order(generator):
    x = _randn(generator, 3)
    def make(w, b):
        x_ = x.to(w)
        return lambda: torch.sin(w @ x_) * b + (b ** 3).sum()
    return ClosureRecipe(make, [_randn(generator, 2, 3), _randn(generator, 2)])


def _mlp_frozen(generator):
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    model[0].bias.requires_grad_(False)
    return ModelRecipe(model, _randn(generator, 2, 4))


def _batchnorm(mode):
    def build(generator):
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double()
        with torch.no_grad():
            model[1].running_mean.copy_(_randn(generator, 4))
            model[1].running_var.copy_(torch.rand(4, generator=generator, dtype=torch.float64) + 0.5)
        getattr(model, mode)()
        return ModelRecipe(model, _randn(generator, 5, 3))
    return build


def _dropout(mode):
    def build(generator):
        model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Dropout(0.5), nn.Linear(6, 2)).double()
        return ModelRecipe(model.train(mode == "train"), _randn(generator, 3, 3))
    return build


class _CubeWithJvp(torch.autograd.Function):
    """x³ with backward, jvp and a generated vmap rule: usable by every strategy."""
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x ** 3

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.x = inputs[0]

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * grad

    @staticmethod
    def jvp(ctx, tangent):
        return 3 * ctx.x ** 2 * tangent


class CubeBackwardOnly(torch.autograd.Function):
    """x³ with a backward formula only, as much user code writes it: no forward mode."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * grad


def _custom_function(function):
    def build(generator):
        x = _randn(generator, 3)

        def make(w):
            x_ = x.to(w)
            return lambda: function.apply(w @ x_ + w.sum(dim=1))
        return ClosureRecipe(make, [_randn(generator, 2, 3)])
    return build


def _documented_jacobian(x):
    return torch.diag(torch.stack([2 * x[0], 6 * x[1]]))


CASES = [
    Case("documented_example", "the documented example: [x0², 3x1²] at x = [1, 2]", _documented_example,
         second_order=True, analytic_jacobian=_documented_jacobian),
    Case("scalar_output", "a 0-d output, one matrix param", _scalar_output),
    Case("vector_output", "a vector output, params of different shapes (matrix and vector)", _vector_output),
    Case("matrix_output", "a matrix output, a 0-d param and a matrix param", _matrix_output),
    Case("unused_params", "three params, one not used at all, one used only through a sum", _unused_params),
    Case("returns_param", "func returns a param itself (the identity)", _returns_param),
    Case("exp_reducer", "torch.autograd.functional's documented x.exp().sum(dim=1)", _exp_reducer),
    Case("second_order", "a nonlinear function of two params, create_graph checked", _second_order,
         second_order=True),
    Case("custom_function", "a custom autograd.Function with backward, jvp and a vmap rule",
         _custom_function(_CubeWithJvp), features=("custom_function_jvp",)),
    Case("custom_function_backward_only", "a custom autograd.Function with a backward formula only",
         _custom_function(CubeBackwardOnly), features=("custom_function_backward_only",)),
    Case("mlp_frozen", "an nn.Sequential MLP with a frozen bias", _mlp_frozen, second_order=True, tags=("model",)),
    Case("batchnorm_train", "BatchNorm1d in train mode: batch statistics, buffers unchanged",
         _batchnorm("train"), tags=("model",), features=("random_state_closure",)),
    Case("batchnorm_eval", "BatchNorm1d in eval mode: running statistics, buffers unchanged",
         _batchnorm("eval"), tags=("model",)),
    Case("dropout_eval", "Dropout in eval mode (the identity)", _dropout("eval"), tags=("model",)),
    Case("dropout_train", "Dropout in train mode: one mask for every forward pass of the call",
         _dropout("train"), second_order=True, tags=("model",),
         features=("random_numbers", "random_state_closure")),
]


def _zoo_model(name, mode):
    def build(generator):
        entry = zoo.build(name, "tiny", dtype=torch.float64, mode=mode)
        return ModelRecipe(entry.model, entry.x)
    return build


_RECURRENT = ("lstm", "gru")  # the zoo models that run nn.LSTM / nn.GRU
ZOO_CASES = [
    Case(f"zoo_{name}_{mode}", f"zoo model {name} (tiny) in {mode} mode: {zoo.describe(name)}", _zoo_model(name, mode),
         tags=("model", "zoo"), features=(("random_state_closure",) if mode == "train" else ())
         + (("recurrent_module",) if name in _RECURRENT else ()))
    for name in zoo.names() for mode in ("train", "eval")
]
CASES = CASES + ZOO_CASES


def case_by_name(name):
    for case in CASES:
        if case.name == name:
            return case
    raise ValueError(f"unknown case {name!r}; valid names: {', '.join(c.name for c in CASES)}")
