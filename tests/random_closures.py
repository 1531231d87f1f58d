"""Random closures for the property tests, and the expectations they are checked against.

A :class:`ClosureSpec` is plain data (param shapes and dtypes, the output shape, which param feeds
which term, a seed), so an example hypothesis finds can be written down as a regression case
(tests/test_property_regressions.py). ``spec.build()`` gives ``func``, a zero-argument closure over
the params, and the params; ``spec.build(oracle=True)`` the same function with every computation in
float64, at the same numbers (the param values and constants are drawn from ``seed`` in float64 and
rounded through the spec's dtypes in both builds).

func() is a sum of terms, each the product of one or two factors, then an elementwise outer
function, reshaped to the output shape (m elements). A factor takes one param through an
elementwise function, flattened to its n elements x, and maps x to m elements:

- ``gather``: x[idx] times constants (output element i depends on one element of the param);
- ``contract``: A @ x with a dense constant A (every output element depends on every element);
- ``reduce``: (c · x).sum() times a constant vector (likewise, through a sum).

Every such function is smooth and finite at finite params, and its derivative with respect to a
param element is nonzero (almost surely: the constants have no zero, products only take factors of
non-empty params, no function saturates) exactly where the output depends on that element. The NaN/inf checks rely on
this: there, "output i depends on param element j" and "J[i, j] != 0" are the same thing.
"""

import contextlib
import functools
import math
import re
from dataclasses import dataclass
from typing import Optional

import pytest
import torch

import gvp_bench
from gvp_bench import support
from gvp_bench.conformance.checks import TOLERANCES
from gvp_bench.conformance.oracle import finite_difference_jacobian

DTYPES = {"float32": torch.float32, "float64": torch.float64}

UNARY = {
    "identity": lambda x: x,
    "sin": torch.sin,
    "tanh": torch.tanh,
    "exp": lambda x: torch.exp(x / 2),
    "square": lambda x: x * x + x,
    "sigmoid": torch.sigmoid,
}
# Nothing that saturates: tanh(45) is 1 in float32, its slope 0, as if the output did not depend on its input.
OUTER = {"identity": lambda x: x, "atan": torch.atan, "sin": torch.sin}
MAPS = ("gather", "contract", "reduce")


@dataclass(frozen=True)
class Factor:
    param: int
    map: str = "contract"     # one of MAPS
    unary: str = "identity"   # one of UNARY, applied to the param first
    cast: bool = True         # converted to the output dtype; False leaves the dtype to type promotion


@dataclass(frozen=True)
class ClosureSpec:
    shapes: tuple                         # the params' shapes
    dtypes: tuple                         # the params' dtypes, "float32" or "float64"
    output_shape: tuple = ()
    terms: tuple = ()                     # tuples of one or two Factors, multiplied; the terms are summed
    outer: str = "identity"               # one of OUTER, applied to the sum
    output_dtype: str = "float64"         # what cast factors are converted to
    returns_param: Optional[int] = None   # func returns params[i] itself (output_shape is then its shape)
    frozen: tuple = ()                    # indices of params that do not require grad
    seed: int = 0

    def __post_init__(self):
        assert len(self.shapes) == len(self.dtypes) >= 1
        if self.returns_param is not None:
            assert tuple(self.output_shape) == tuple(self.shapes[self.returns_param]) and not self.terms
        for term in self.terms:
            assert 1 <= len(term) <= 2
            for factor in term:
                n = self.numel(factor.param)
                assert factor.map in MAPS and factor.unary in UNARY
                assert factor.map != "gather" or n > 0 or self.outputs == 0, "gather needs a non-empty param"
                assert len(term) == 1 or n > 0, "products take factors of non-empty params only"

    def numel(self, index):
        return math.prod(self.shapes[index])

    @property
    def outputs(self):
        return math.prod(self.output_shape)

    @property
    def total(self):
        return sum(self.numel(i) for i in range(len(self.shapes)))

    @property
    def lowest_precision(self):
        """float32 when any param or the output is float32 (the tolerance the products are held to)."""
        return torch.float32 if "float32" in self.dtypes + (self.output_dtype,) else torch.float64

    def build(self, oracle=False, device="cpu", edits=()):
        """(func, params). ``oracle``: every param and every computation in float64. ``edits``:
        (param, flat index, value) triples set in the param values (NaN and inf for the checks)."""
        generator = torch.Generator().manual_seed(self.seed)
        dtypes = [DTYPES[d] for d in self.dtypes]
        working = [torch.float64 if oracle else d for d in dtypes]
        values = [torch.randn(s, generator=generator, dtype=torch.float64).to(d).double()
                  for s, d in zip(self.shapes, dtypes)]
        for index, element, value in edits:
            values[index].view(-1)[element] = value
        params = [v.to(device=device, dtype=w).requires_grad_(i not in self.frozen)
                  for i, (v, w) in enumerate(zip(values, working))]
        output_dtype = torch.float64 if oracle else DTYPES[self.output_dtype]
        m = self.outputs
        terms = [[(factor, self._constants(factor, generator, dtypes[factor.param], working[factor.param], device))
                  for factor in term] for term in self.terms]
        constant = self._nonzero(generator, (m,)).to(device=device, dtype=output_dtype)

        def func():
            if self.returns_param is not None:
                return params[self.returns_param]
            total = None
            for term in terms:
                product = None
                for factor, constants in term:
                    value = _apply(factor, params[factor.param], constants)
                    value = value.to(output_dtype) if factor.cast else value
                    product = value if product is None else product * value
                total = product if total is None else total + product
            if total is None:  # no param used: a constant output
                total = constant
            return OUTER[self.outer](total).reshape(self.output_shape)

        return func, params

    def _constants(self, factor, generator, dtype, working, device):
        """The factor's constants, rounded through its param's dtype, in the working dtype."""
        n, m = self.numel(factor.param), self.outputs
        if factor.map == "gather":
            index = torch.randint(max(n, 1), (m,), generator=generator)
            drawn = (self._nonzero(generator, (m,)),)
        elif factor.map == "contract":
            index, drawn = None, (self._nonzero(generator, (m, n)) / max(n, 1),)
        else:
            index, drawn = None, (self._nonzero(generator, (n,)) / max(n, 1), self._nonzero(generator, (m,)))
        drawn = tuple(c.to(dtype).to(device=device, dtype=working) for c in drawn)
        return (index.to(device) if index is not None else None,) + drawn

    @staticmethod
    def _nonzero(generator, shape):
        """Constants of magnitude 0.5 to 1.5 and either sign: never zero."""
        magnitude = 0.5 + torch.rand(shape, generator=generator, dtype=torch.float64)
        sign = torch.randint(2, shape, generator=generator).double() * 2 - 1
        return magnitude * sign


def _apply(factor, param, constants):
    x = UNARY[factor.unary](param).reshape(-1)
    index, *values = constants
    if factor.map == "gather":
        return x[index] * values[0]
    if factor.map == "contract":
        return values[0] @ x
    return (values[0] * x).sum() * values[1]


@functools.lru_cache(maxsize=512)
def oracle_jacobian(spec, edits=()):
    """J as an (outputs, total) float64 matrix: central finite differences of the float64 build
    (gvp_bench's oracle, which shares no code with any strategy)."""
    func, params = spec.build(oracle=True, edits=edits)
    return finite_difference_jacobian(func, params)


@functools.lru_cache(maxsize=512)
def dependence(spec):
    """D as an (outputs, total) bool matrix: D[i, j] when output i depends on param element j, found
    by setting that element alone to NaN in the float64 build and seeing which outputs turn NaN."""
    columns = []
    with torch.no_grad():
        for index in range(len(spec.shapes)):
            for element in range(spec.numel(index)):
                func, _ = spec.build(oracle=True, edits=((index, element, math.nan),))
                columns.append(torch.isnan(func().reshape(-1)))
    if not columns:
        return torch.zeros(spec.outputs, 0, dtype=torch.bool)
    return torch.stack(columns, dim=1)


# The strategies under test, the problem a spec builds, and the checks of the products.

# Not the strategies whose first call per workload compiles (compiled, cuda_graphs): every random closure is a
# new workload, seconds each; the conformance harness and tests/test_compiled.py check them.
STRATEGIES = {name: gvp_bench.get_strategy(name) for name in gvp_bench.strategies()
              if not gvp_bench.get_strategy(name).costly_first_call}
STRATEGIES.update({f"jacrev_chunked[chunk_size={size}]": gvp_bench.get_strategy("jacrev_chunked", chunk_size=size)
                   for size in (1, 2)})
FUNCTIONS = ("jvp", "vjp", "batch_jvp", "batch_vjp", "full_jacobian")


class Problem:
    def __init__(self, spec, edits=()):
        self.spec, self.edits = spec, tuple(edits)
        self.func, self.params = spec.build(edits=self.edits)
        with torch.no_grad():
            output = self.func()
        self.output_shape, self.output_dtype = tuple(output.shape), output.dtype
        self.outputs, self.total = spec.outputs, spec.total
        self.mixed = len({p.dtype for p in self.params}) > 1
        self.precision = spec.lowest_precision

    @property
    def jacobian(self):
        return oracle_jacobian(self.spec, self.edits)

    def tangents(self, flat):
        """flat (float64, last dimension total) as {form: what the strategy is given}, and the float64
        values actually given (rounded through the params' dtypes)."""
        lead = tuple(flat.shape[:-1])
        pieces = [piece.reshape(lead + tuple(p.shape)).to(p.dtype)
                  for piece, p in zip(flat.split([p.numel() for p in self.params], dim=-1), self.params)]
        given = torch.cat([piece.double().reshape(lead + (p.numel(),)) for piece, p in zip(pieces, self.params)],
                          dim=-1)
        forms = {"list": pieces, "flat": given.to(self.params[0].dtype)}
        if len(self.params) == 1:
            forms["tensor"] = pieces[0]
        return forms, given

    def cotangents(self, flat):
        """flat (float64, last dimension outputs) as {form: what the strategy is given}, and the values given."""
        lead = tuple(flat.shape[:-1])
        flat = flat.to(self.output_dtype)
        return {"shaped": flat.reshape(lead + self.output_shape), "flat": flat}, flat.double()

    def split(self, flat):
        """The last dimension of flat cut into pieces shaped like the params."""
        lead = tuple(flat.shape[:-1])
        pieces = flat.split([p.numel() for p in self.params], dim=-1)
        return [piece.reshape(lead + tuple(p.shape)) for piece, p in zip(pieces, self.params)]

    def forms(self, function, flat):
        """The accepted forms of the vector flat for function."""
        return (self.tangents(flat) if function.endswith("jvp") else self.cotangents(flat))[0]


def check_tensor(what, result, shape, dtype, create_graph=False):
    assert isinstance(result, torch.Tensor), f"{what}: expected a tensor, got {type(result).__name__}"
    assert tuple(result.shape) == tuple(shape), f"{what}: expected shape {tuple(shape)}, got {tuple(result.shape)}"
    assert result.dtype == dtype, f"{what}: expected dtype {dtype}, got {result.dtype}"
    assert result.device.type == "cpu", f"{what}: expected device cpu, got {result.device}"
    if not create_graph:
        assert not result.requires_grad, f"{what}: create_graph=False but the result carries an autograd graph"


def check_list(what, result, count):
    assert type(result) is list, f"{what}: expected a list, got {type(result).__name__}"
    assert len(result) == count, f"{what}: expected {count} tensors, got {len(result)}"
    return result


def per_param(what, result, problem):
    """vjp's result as a list: a bare tensor for one param, else a list."""
    if len(problem.params) == 1:
        assert isinstance(result, torch.Tensor), f"{what}: one param gives a bare tensor, got {type(result).__name__}"
        return [result]
    return check_list(what, result, len(problem.params))


def assert_close(what, actual, expected, precision, tolerances=TOLERANCES):
    tolerance = tolerances[precision]
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual.detach().double().cpu(), expected, rtol=tolerance["rtol"],
                               atol=tolerance["atol"] * scale, msg=lambda m: f"{what}: {m}")


def call(name, function, *args, create_graph=False):
    """The strategy's function; None where the strategy declares it does not offer it (its ``unsupported``
    class data, gvp_bench.support) and raises UnsupportedError saying so."""
    try:
        return getattr(STRATEGIES[name], function)(*args, create_graph)
    except gvp_bench.UnsupportedError as error:
        if not _not_offered(name, function, create_graph, error.reason):
            raise  # these closures use plain operators only: nothing else may be refused
        return None


def _features(function, create_graph):
    """What a call of function on these closures exercises (gvp_bench.support.FEATURES)."""
    return {function, "cpu"} | ({"create_graph"} if create_graph else set())


def _not_offered(name, function, create_graph, reason=""):
    """The strategy's declarations that refuse the call (with words of ``reason``, when given)."""
    return [entry for entry in support.declared(STRATEGIES[name], _features(function, create_graph))
            if entry.reason in reason or not reason]


def not_offered(name, function, create_graph=False):
    """A context for a call of the strategy's function: where the strategy declares it does not offer it, the
    call must raise UnsupportedError saying so (the rest of the block is then not run); elsewhere nothing."""
    declared = _not_offered(name, function, create_graph)
    if not declared:
        return contextlib.nullcontext()
    return pytest.raises(gvp_bench.UnsupportedError, match="|".join(re.escape(entry.reason) for entry in declared))


def product(name, problem, function, flat, form, create_graph=False):
    """Call the strategy's function on the problem with the vector flat (float64; a batch of them for
    batch_*; None for full_jacobian) in the given form, and check the result's type, shape and dtype.

    Returns (what was called, the results as a list, the oracle's results, contraction), where
    contraction(weights) is the (outputs, total) matrix C with <C, J> = <weights, results>; or None
    when a third-party strategy cannot compute it. A flat v for params of mixed dtypes must raise
    TypeError (part of it has another dtype than what it multiplies).
    """
    func, params, jacobian = problem.func, problem.params, problem.jacobian
    if function == "full_jacobian":
        result = call(name, function, func, params, create_graph=create_graph)
        if result is None:
            return None
        results = check_list(function, result, len(params))
        for index, (r, p) in enumerate(zip(results, params)):
            check_tensor(f"{function}, params[{index}]", r, (problem.outputs,) + tuple(p.shape), p.dtype, create_graph)
        return function, results, problem.split(jacobian), lambda w: w.reshape(problem.outputs, problem.total)
    lead = tuple(flat.shape[:-1])
    rows = math.prod(lead)
    what = f"{function} with {form} {'vs' if lead else 'v'}"
    if function.endswith("jvp"):
        forms, given = problem.tangents(flat)
        if form == "flat" and problem.mixed:
            with pytest.raises(TypeError, match="dtype"):
                call(name, function, func, params, forms[form], create_graph=create_graph)
            return None
        result = call(name, function, func, params, forms[form], create_graph=create_graph)
        if result is None:
            return None
        check_tensor(what, result, lead + problem.output_shape, problem.output_dtype, create_graph)
        expected = (given @ jacobian.T).reshape(lead + problem.output_shape)
        return what, [result], [expected], lambda w: (w.reshape(rows, problem.outputs).T
                                                      @ given.reshape(rows, problem.total))
    forms, given = problem.cotangents(flat)
    result = call(name, function, func, params, forms[form], create_graph=create_graph)
    if result is None:
        return None
    results = check_list(what, result, len(params)) if lead else per_param(what, result, problem)
    for index, (r, p) in enumerate(zip(results, params)):
        check_tensor(f"{what}, params[{index}]", r, lead + tuple(p.shape), p.dtype, create_graph)
    return what, results, problem.split(given @ jacobian), lambda w: (given.reshape(rows, problem.outputs).T
                                                                      @ w.reshape(rows, problem.total))


def reached(depends, flat):
    """Which results NaN and inf entries of flat (..., k) reach through a dependence matrix (results, k):
    two bool tensors (..., results)."""
    nan, inf = torch.isnan(flat).double(), torch.isinf(flat).double()
    return (nan @ depends.T.double()) > 0, (inf @ depends.T.double()) > 0


def check_nonfinite(what, result, expected, nan_reached, inf_reached, precision):
    """NaN exactly where a NaN reaches, NaN or ±inf where only an inf does, elsewhere finite and right."""
    result = result.detach().double()
    hit = nan_reached | inf_reached
    assert torch.isnan(result[nan_reached]).all(), f"{what}: a NaN did not reach a result that depends on it"
    assert not torch.isfinite(result[hit]).any(), f"{what}: an inf did not reach a result that depends on it"
    assert torch.isfinite(result[~hit]).all(), \
        f"{what}: NaN or inf in results that do not depend on the non-finite entries: {result}"
    assert_close(what, result[~hit], expected[~hit], precision)


def check_nonfinite_product(name, problem, function, flat, form):
    """Call the strategy's jvp, vjp, batch_jvp or batch_vjp with the vector flat (float64, with NaN or inf
    entries) in the given form, and check the rule: NaN exactly where a NaN has a nonzero term, NaN or
    ±inf where only an inf has, finite and right elsewhere (through the closure's dependence matrix)."""
    func, params, jacobian, depends = problem.func, problem.params, problem.jacobian, dependence(problem.spec)
    lead = tuple(flat.shape[:-1])
    what = f"{function} with {form} {'vs' if lead else 'v'}"
    if function.endswith("jvp"):
        forms, given = problem.tangents(flat)
        result = call(name, function, func, params, forms[form])
        if result is None:
            return
        flat_result, matrix = result.reshape(lead + (problem.outputs,)), jacobian.T
    else:
        forms, given = problem.cotangents(flat)
        result = call(name, function, func, params, forms[form])
        if result is None:
            return
        results = result if lead else per_param(what, result, problem)
        flat_result = torch.cat([r.reshape(lead + (p.numel(),)) for r, p in zip(results, params)], dim=-1)
        matrix, depends = jacobian, depends.T
    nan_reached, inf_reached = reached(depends, given)
    expected = torch.where(torch.isfinite(given), given, 0) @ matrix
    check_nonfinite(what, flat_result, expected, nan_reached, inf_reached, problem.precision)
