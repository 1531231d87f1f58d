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
from ..model_call import model_closure

FUNC_FUNCTIONS = ("jvp", "vjp", "batch_jvp", "batch_vjp", "full_jacobian")
MODEL_FUNCTIONS = ("model_jvp", "model_vjp")
HVP_FUNCTIONS = ("hvp", "batch_hvp")  # by the Hessian-vector product strategies, on the cases tagged "scalar"


@dataclass
class Problem:
    """What a check runs: func and params, plus the model and its input for model cases."""
    func: Callable
    params: list
    model: Optional[nn.Module] = None
    x: Optional[torch.Tensor] = None


@dataclass
class ClosureRecipe:
    """``make(*params)`` returns the zero-argument closure over those params; ``prepare`` (when given) turns
    the params, cast to the cell's dtype and device, into the ones the closure is made over and the products
    are taken with respect to (views of one another, another dtype)."""
    make: Callable
    params: list
    prepare: Optional[Callable] = None


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
    refused: Optional[tuple] = None  # (error type, words of its message): every strategy must raise it
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
        if recipe.prepare is not None:
            params = recipe.prepare(params)
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


def _scalar_objective(generator):
    x = _randn(generator, 3)
    def make(w, b):
        x_ = x.to(w)
        return lambda: (torch.sin(w @ x_ + b) ** 2).sum() * b.prod() + (w ** 3).sum()
    return ClosureRecipe(make, [_randn(generator, 2, 3), _randn(generator, 2)])


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


class _SurrogateGradient(torch.autograd.Function):
    """2z forward, and 3 as its derivative in both of its own rules (backward and jvp), as straight-through
    and surrogate-gradient estimators have: the products follow its rules, not its forward."""
    generate_vmap_rule = True

    @staticmethod
    def forward(z):
        return 2 * z

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return 3 * grad

    @staticmethod
    def jvp(ctx, tangent):
        return 3 * tangent


_SURROGATE_X = (1.0, 2.0, 3.0)


def _surrogate_gradient(generator):
    def make(w):
        return lambda: _SurrogateGradient.apply(w @ torch.tensor(_SURROGATE_X, dtype=w.dtype, device=w.device))
    return ClosureRecipe(make, [_randn(generator, 2, 3)])


def _surrogate_jacobian(w):
    """d out_i / d w_kj by the Function's rules: 3 x_j where k = i."""
    x = torch.tensor(_SURROGATE_X, dtype=w.dtype, device=w.device)
    return 3 * torch.kron(torch.eye(2, dtype=w.dtype, device=w.device), x[None])


def _documented_jacobian(x):
    return torch.diag(torch.stack([2 * x[0], 6 * x[1]]))


CASES = [
    Case("documented_example", "the documented example: [x0², 3x1²] at x = [1, 2]", _documented_example,
         second_order=True, analytic_jacobian=_documented_jacobian),
    Case("scalar_output", "a 0-d output, one matrix param", _scalar_output, tags=("scalar",)),
    Case("vector_output", "a vector output, params of different shapes (matrix and vector)", _vector_output),
    Case("matrix_output", "a matrix output, a 0-d param and a matrix param", _matrix_output),
    Case("unused_params", "three params, one not used at all, one used only through a sum", _unused_params),
    Case("returns_param", "func returns a param itself (the identity)", _returns_param),
    Case("exp_reducer", "torch.autograd.functional's documented x.exp().sum(dim=1)", _exp_reducer),
    Case("second_order", "a nonlinear function of two params, create_graph checked", _second_order,
         second_order=True),
    Case("custom_function", "a custom autograd.Function with backward, jvp and a vmap rule",
         _custom_function(_CubeWithJvp), features=("custom_function_jvp",)),
    Case("custom_function_rules", "a custom autograd.Function whose rules are not its forward's derivative (a "
         "surrogate gradient)", _surrogate_gradient, analytic_jacobian=_surrogate_jacobian,
         features=("custom_function_jvp",)),
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


# What a strategy cannot see (gvp_bench.blind_spots): each gives one answer from every strategy, or a typed error.

def _jacobian_of(function):
    """An analytic_jacobian: torch.autograd.functional.jacobian of ``function(*params)``, a function written with
    what the closure captures computed from the params inside it, as an (outputs, params) matrix."""
    def jacobian(*params):
        blocks = torch.autograd.functional.jacobian(function, tuple(p.detach() for p in params))
        outputs = function(*params).numel()
        return torch.cat([b.reshape(outputs, -1) for b in blocks], dim=1)
    return jacobian


def _derived_outside(derive):
    def build(generator):
        def make(w):
            captured = derive(w)  # made once, outside func: a graph to w that a substitution cannot follow
            return lambda: torch.tanh(captured @ _derived_c().to(w))
        return ClosureRecipe(make, [_randn(generator, 3, 3)])
    return build


def _derived_c():
    return _randn(torch.Generator().manual_seed(0), 3)


def _derived_function(derive):
    """The same function, derive(w) computed inside: the derivative along autograd's graph."""
    return lambda w: torch.tanh(derive(w) @ _derived_c().to(w))


_SYMMETRIC_PART = lambda w: w + w.T  # noqa: E731
_TRANSPOSED = lambda w: w.t()  # noqa: E731


def _derived_detached(generator):
    def make(w):
        constant = (w + w.T).detach()  # a constant: no strategy differentiates it
        return lambda: torch.tanh(constant @ w[0])
    return ClosureRecipe(make, [_randn(generator, 3, 3)])


def _derived_from_frozen(generator):
    frozen = _randn(generator, 3, 3)
    def make(w):
        derived = frozen.to(w) * 2  # derived from a tensor that requires no grad: a constant
        return lambda: torch.tanh(derived @ w)
    return ClosureRecipe(make, [_randn(generator, 3)])


def _captured_leaf_requiring_grad(generator):
    other = _randn(generator, 3).requires_grad_()  # requires grad but is not among params: a constant
    def make(w):
        other_ = other.detach().to(w).requires_grad_()
        return lambda: torch.sin(w * other_)
    return ClosureRecipe(make, [_randn(generator, 3)])


_PADDING_INDICES = torch.tensor([0, 2, 1, 0, 3])


def _embedding(**options):
    def build(generator):
        def make(weight):
            return lambda: torch.tanh(torch.nn.functional.embedding(_PADDING_INDICES, weight, **options))
        return ClosureRecipe(make, [_randn(generator, 4, 2)])
    return build


def _embedding_padding_function(padding_idx):
    def function(weight):
        keep = (_PADDING_INDICES != padding_idx % weight.shape[0]).unsqueeze(-1)  # torch's backward rule: no
        rows = torch.where(keep, weight[_PADDING_INDICES], weight[_PADDING_INDICES].detach())  # grad at padding
        return torch.tanh(rows)
    return function


def _embedding_module(generator, **options):
    model = nn.Sequential(nn.Embedding(5, 3, **options), nn.Flatten(0), nn.Tanh()).double()
    return ModelRecipe(model, torch.tensor([0, 2, 4, 0]))


def _embedding_max_norm(generator):
    def make(weight):
        return lambda: torch.nn.functional.embedding(torch.tensor([1, 2]), weight, max_norm=0.5)
    return ClosureRecipe(make, [_randn(generator, 4, 3) * 3])


def _in_place_param_update(generator):
    def make(w):
        def func():
            with torch.no_grad():
                w.mul_(1.0)  # an in-place update of a param inside func, however harmless
            return torch.sin(w)
        return func
    return ClosureRecipe(make, [_randn(generator, 3)])


def _in_precision(dtype):
    def build(generator):
        def make(w):
            return lambda: torch.tanh(w @ w.T)
        return ClosureRecipe(make, [_randn(generator, 2, 3)],
                             prepare=lambda params: [p.detach().to(dtype).requires_grad_() for p in params])
    return build


def _half_output(generator):
    def make(w):
        return lambda: torch.tanh(w).half()
    return ClosureRecipe(make, [_randn(generator, 3)])


def _overlapping(generator):
    def make(w, row):
        return lambda: torch.sin(w).sum(dim=1) + row
    return ClosureRecipe(make, [_randn(generator, 3, 3)], prepare=lambda params: [params[0], params[0][0]])


class _Symmetric(nn.Module):
    def forward(self, x):
        return x.triu() + x.triu(1).transpose(0, 1)


def _parametrized(parametrization):
    def build(generator):
        model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2)).double()
        parametrization(model[0])
        return ModelRecipe(model, _randn(generator, 4, 3))
    return build


def _weight_norm(layer):
    torch.nn.utils.parametrizations.weight_norm(layer)


def _symmetric(layer):
    torch.nn.utils.parametrize.register_parametrization(layer, "weight", _Symmetric())


def _buffer_requiring_grad(generator):
    model = nn.Linear(3, 2).double()
    model.register_buffer("shift", _randn(generator, 2).requires_grad_())
    model.register_forward_hook(lambda module, inputs, output: output + module.shift)
    return ModelRecipe(model, _randn(generator, 4, 3))


def _hessian_by_composition(inner):
    def build(generator):
        def make(x):
            def gradient():
                one = torch.ones((), dtype=x.dtype, device=x.device)
                from .. import api  # the public function, as a user composes it
                return api.vjp(lambda: _composed_objective(x), [x], one, create_graph=True, strategy=inner)
            return gradient
        return ClosureRecipe(make, [_randn(generator, 3)])
    return build


def _composed_objective(x):
    return (x ** 2 * torch.sin(x)).sum() + x.prod()


def _composed_hessian(x):
    return torch.autograd.functional.hessian(_composed_objective, x.detach())


BLIND_SPOT_CASES = [
    Case("scalar_objective", "a scalar nonlinear function of two params with coupled second derivatives",
         _scalar_objective, tags=("scalar",)),
    Case("derived_outside_func", "func reads S = W + W.T computed outside func (autograd's graph to W)",
         _derived_outside(_SYMMETRIC_PART), analytic_jacobian=_jacobian_of(_derived_function(_SYMMETRIC_PART)),
         features=("graph_outside_func",)),
    Case("derived_view_outside_func", "func reads W.t(), a view of the param taken outside func",
         _derived_outside(_TRANSPOSED), analytic_jacobian=_jacobian_of(_derived_function(_TRANSPOSED)),
         features=("graph_outside_func",)),
    Case("derived_detached", "func reads (W + W.T).detach() computed outside func: a constant", _derived_detached),
    Case("derived_from_frozen", "func reads a tensor derived outside func from one that requires no grad",
         _derived_from_frozen),
    Case("captured_leaf_requiring_grad", "func reads a leaf that requires grad but is not among params",
         _captured_leaf_requiring_grad),
    Case("buffer_requiring_grad", "a module's buffer that requires grad (not a param: a constant)",
         _buffer_requiring_grad, tags=("model",)),
    Case("embedding_padding", "F.embedding with padding_idx=0: the padding row gets no derivative in either mode",
         _embedding(padding_idx=0), analytic_jacobian=_jacobian_of(_embedding_padding_function(0))),
    Case("embedding_padding_negative", "F.embedding with padding_idx=-1 (the last row)", _embedding(padding_idx=-1),
         analytic_jacobian=_jacobian_of(_embedding_padding_function(-1))),
    Case("embedding_sparse", "F.embedding(sparse=True): dense results all the same", _embedding(sparse=True),
         features=("sparse_gradients",)),
    Case("embedding_flatten_module", "nn.Embedding then nn.Flatten(0): vmap gives the embedding's rows batched "
         "in the middle, which a traced view cannot flatten", _embedding_module, tags=("model",)),
    Case("weight_norm", "a Linear under torch.nn.utils.parametrizations.weight_norm", _parametrized(_weight_norm),
         tags=("model",), features=("parametrization", "no_forward_formula")),
    Case("parametrize_symmetric", "a Linear whose weight is parametrized as symmetric (torch.nn.utils.parametrize)",
         _parametrized(_symmetric), tags=("model",), features=("parametrization",)),
    Case("hessian_by_composition", "func is a VJP with create_graph=True (double_backward): J is the Hessian",
         _hessian_by_composition("double_backward"), analytic_jacobian=_composed_hessian,
         features=("product_of_product",)),
    Case("hessian_by_composition_functional", "func is a VJP with create_graph=True by func_vmap",
         _hessian_by_composition("func_vmap"), analytic_jacobian=_composed_hessian,
         features=("product_of_product",)),
    Case("embedding_max_norm", "F.embedding(max_norm=...) renormalises the weight in place: refused",
         _embedding_max_norm, refused=(ValueError, "modified params[0] in place")),
    Case("embedding_max_norm_module", "nn.Embedding(max_norm=1.0) in a model: refused",
         lambda generator: _embedding_module(generator, max_norm=1.0), tags=("model",),
         refused=(ValueError, "in place")),
    Case("in_place_param_update", "func updates a param in place under no_grad: refused", _in_place_param_update,
         refused=(ValueError, "modified params[0] in place")),
    Case("float16_params", "float16 params: refused, naming the dtype", _in_precision(torch.float16),
         refused=(TypeError, "torch.float16")),
    Case("bfloat16_params", "bfloat16 params: refused, naming the dtype", _in_precision(torch.bfloat16),
         refused=(TypeError, "torch.bfloat16")),
    Case("half_output", "func returns float16 from float32/float64 params: refused", _half_output,
         refused=(TypeError, "func's output has dtype torch.float16")),
    Case("overlapping_params", "params W and W[0], a view of W: refused", _overlapping,
         refused=(ValueError, "share storage")),
]
CASES = CASES + BLIND_SPOT_CASES


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
