"""Property-based tests: every strategy on random closures (tests/random_closures.py).

- Products: jvp, vjp, batch_jvp, batch_vjp and full_jacobian of every registered strategy (and
  jacrev_chunked with chunks of 1 and 2 rows) agree with the finite-difference oracle within the
  conformance tolerance, with the documented types, shapes and dtypes, for every form of the
  vectors; or raise the documented error (a flat v for params of mixed dtypes is a TypeError).
- create_graph=True: the same values and types, and the results' own derivatives are right.
- NaN and inf in v, vs or the params: the rule of README.md's "Guarantees" section.
- Malformed input: the documented error type, the same error from every strategy.

The examples are bounded and derandomized (the hypothesis profile in conftest.py), so CI is
deterministic; ``HYPOTHESIS_PROFILE=explore`` runs ten times as many random ones. Examples these
tests found are kept in tests/test_property_regressions.py.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gvp_bench.conformance.checks import SECOND_ORDER_TOLERANCES
from gvp_bench.conformance.oracle import NESTED_STEP, finite_difference_jacobian
from random_closures import (FUNCTIONS, MAPS, OUTER, STRATEGIES, UNARY, ClosureSpec, Factor, Problem, assert_close,
                             call, check_nonfinite_product, dependence, per_param, product)


# linearize traces func on every call (25-60 ms on 2 cores): it runs a quarter of the examples of the
# tests over every strategy that call many products, which keeps its share of CI near 25 s instead of 100 s.
EXAMPLE_SHARE = {"linearize": 4}


def examples(n, name=None):
    """n examples under the default profile (max_examples=100), scaled with the loaded profile's (and by
    the strategy's EXAMPLE_SHARE)."""
    return max(1, n * settings.default.max_examples // 100 // EXAMPLE_SHARE.get(name, 1))


def over_every_strategy(n, spec):
    """A test of every strategy: ``check(name, spec, data)`` under hypothesis, with specs drawn from
    ``spec`` and examples(n, name) examples."""
    def decorate(check):
        @pytest.mark.parametrize("name", sorted(STRATEGIES))
        def test(name):
            @settings(max_examples=examples(n, name))
            @given(spec=spec, data=st.data())
            def example(spec, data):
                check(name, spec, data)
            example()
        test.__doc__ = check.__doc__
        return test
    return decorate


# Hypothesis strategies: random closure specs.

def one_in(k):
    """True one time in k (hypothesis's integers favour their bounds; sampled_from does not)."""
    return st.sampled_from([False] * (k - 1) + [True])


def shapes(max_numel):
    """0-d to 4-d shapes with at most max_numel elements; a dimension is empty one time in 13."""
    size = st.sampled_from((1, 2, 3) * 4 + (0,))
    return st.lists(size, max_size=4).map(tuple).filter(lambda shape: math.prod(shape) <= max_numel)


@st.composite
def closure_specs(draw, max_params=4, max_numel=12, dtypes=("float64", "float32")):
    count = draw(st.sampled_from(range(1, max_params + 1)))
    param_shapes = tuple(draw(shapes(max_numel)) for _ in range(count))
    dtype = st.sampled_from(dtypes)
    if draw(st.booleans()):
        param_dtypes = (draw(dtype),) * count
    else:
        param_dtypes = tuple(draw(dtype) for _ in range(count))
    frozen = tuple(i for i in range(count) if draw(one_in(4)))
    seed = draw(st.integers(0, 2 ** 16))
    if draw(one_in(10)):
        index = draw(st.sampled_from(range(count)))
        return ClosureSpec(param_shapes, param_dtypes, param_shapes[index], returns_param=index, frozen=frozen,
                           seed=seed)
    output_shape = draw(shapes(max_numel))
    outputs = math.prod(output_shape)
    used = [i for i in range(count) if not draw(one_in(4))]  # the others are unused
    mixed = len(set(param_dtypes)) > 1
    output_dtype = draw(dtype)

    def factor(index):
        maps = MAPS if math.prod(param_shapes[index]) > 0 or outputs == 0 else MAPS[1:]
        return Factor(index, draw(st.sampled_from(maps)), draw(st.sampled_from(sorted(UNARY))),
                      cast=not mixed or draw(st.booleans()))

    non_empty = [i for i in used if math.prod(param_shapes[i]) > 0]
    terms = []
    for index in used:
        if index in non_empty and draw(st.booleans()):
            terms.append((factor(index), factor(draw(st.sampled_from(non_empty)))))
        else:
            terms.append((factor(index),))
    return ClosureSpec(param_shapes, param_dtypes, output_shape, tuple(terms), draw(st.sampled_from(sorted(OUTER))),
                       output_dtype, frozen=frozen, seed=seed)


def draw_vector(data, *shape, label):
    seed = data.draw(st.integers(0, 2 ** 16), label=f"{label} seed")
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def products(name, problem, data, create_graph=False):
    """Each function once, with vectors, batch size and forms drawn by hypothesis (see product)."""
    batch = data.draw(st.integers(1, 3), label="batch size")
    for function in FUNCTIONS:
        lead = (batch,) if function.startswith("batch") else ()
        size = problem.total if function.endswith("jvp") else problem.outputs
        flat = None if function == "full_jacobian" else draw_vector(data, *lead, size, label=function)
        forms = [None] if flat is None else sorted(problem.forms(function, flat))
        form = data.draw(st.sampled_from(forms), label=f"{function} form")
        outcome = product(name, problem, function, flat, form, create_graph)
        if outcome is not None:
            yield outcome


@over_every_strategy(80, closure_specs())
def test_products_agree_with_the_oracle(name, spec, data):
    problem = Problem(spec)
    for what, results, expected, _ in products(name, problem, data):
        for index, (r, e) in enumerate(zip(results, expected)):
            assert_close(f"{what} [{index}]", r, e, problem.precision)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@settings(max_examples=examples(20))
@given(spec=closure_specs(max_params=3, max_numel=4), data=st.data())
def test_create_graph_results_and_their_derivatives(name, spec, data):
    """create_graph=True: the documented types and the same values, and the gradient of <W, results>
    with respect to the params is d<C, J>/dp by finite differences of the oracle."""
    problem = Problem(spec)
    func64, params64 = spec.build(oracle=True)
    live = [i for i, p in enumerate(problem.params) if p.requires_grad]
    for what, results, expected, contraction in products(name, problem, data, create_graph=True):
        for index, (r, e) in enumerate(zip(results, expected)):
            assert_close(f"{what} [{index}] with create_graph=True", r, e, problem.precision)
        weights = [draw_vector(data, *r.shape, label=f"{what} weights") for r in results]
        contracted = sum((r.double() * w).sum() for r, w in zip(results, weights))
        if not live:
            continue
        if contracted.requires_grad:
            gradient = torch.autograd.grad(contracted, [problem.params[i] for i in live], allow_unused=True,
                                           materialize_grads=True)
        else:
            gradient = [torch.zeros_like(problem.params[i]) for i in live]
        matrix = contraction(_flat_weights(what, weights, problem))
        # the oracle's d<C, J(p)>/dp: finite differences of finite-difference Jacobians, in float64
        contracted_jacobian = lambda: (finite_difference_jacobian(func64, params64, NESTED_STEP)  # noqa: E731
                                       * matrix).sum().reshape(1)
        expected_gradient = problem.split(finite_difference_jacobian(contracted_jacobian, params64,
                                                                     NESTED_STEP).reshape(-1))
        for index, g in zip(live, gradient):
            assert_close(f"{what} with create_graph=True: d<W, result>/dparams[{index}]", g,
                         expected_gradient[index], problem.precision, SECOND_ORDER_TOLERANCES)


def _flat_weights(what, weights, problem):
    """The weights of a function's results as the flat vector (or batch of them) its contraction takes."""
    if what.startswith(("jvp", "batch_jvp")):
        return weights[0]
    lead = tuple(weights[0].shape[:1]) if what.startswith(("batch_vjp", "full_jacobian")) else ()
    return torch.cat([w.reshape(lead + (p.numel(),)) for w, p in zip(weights, problem.params)], dim=-1)


# NaN and inf: a non-finite number reaches exactly the results that depend on it.

NONFINITE = st.sampled_from([math.nan, math.inf, -math.inf])


def draw_nonfinite(data, flat, label):
    """flat (float64, (..., k)) with some entries set to NaN, inf or -inf (at least one when it has any)."""
    flat = flat.clone()
    rows = flat.reshape(math.prod(flat.shape[:-1]), flat.shape[-1])
    if rows.numel():
        cells = data.draw(st.lists(st.tuples(st.integers(0, rows.shape[0] - 1), st.integers(0, rows.shape[1] - 1),
                                             NONFINITE), min_size=1, max_size=3), label=f"{label} non-finite entries")
        for row, column, value in cells:
            rows[row, column] = value
    return flat


@over_every_strategy(60, closure_specs())
def test_nan_and_inf_in_vectors_reach_exactly_what_depends_on_them(name, spec, data):
    """(J v)_i is NaN when some v_j = NaN has J_ij != 0, NaN or ±inf when some v_j = ±inf has, and
    finite and right otherwise (on these closures, J_ij != 0 exactly where output i depends on param
    element j); likewise for vᵀJ, and for every row of a batch."""
    problem = Problem(spec)
    batch = data.draw(st.integers(1, 3), label="batch size")
    for function in ("jvp", "batch_jvp", "vjp", "batch_vjp"):
        lead = (batch,) if function.startswith("batch") else ()
        size = problem.total if function.endswith("jvp") else problem.outputs
        flat = draw_nonfinite(data, draw_vector(data, *lead, size, label=function), function)
        forms = problem.forms(function, flat)
        if problem.mixed:
            forms.pop("flat", None)  # a TypeError (see test_products_agree_with_the_oracle)
        form = data.draw(st.sampled_from(sorted(forms)), label=f"{function} form")
        check_nonfinite_product(name, problem, function, flat, form)


def check_finite_and_right(what, result, expected, must_be_finite, precision):
    """Where expected is known (not NaN): every finite entry of result is right, and so finite where
    must_be_finite."""
    result = result.detach().double()
    known = ~torch.isnan(expected)
    assert torch.isfinite(result[must_be_finite]).all(), \
        f"{what}: NaN or inf where no non-finite value enters the arithmetic: {result}"
    finite = torch.isfinite(result) & known
    assert_close(f"{what} (its finite entries)", result[finite], expected[finite], precision)


@over_every_strategy(60, closure_specs())
def test_nan_and_inf_in_params_spoil_only_what_meets_them(name, spec, data):
    """NaN or ±inf param elements: no finite number in a result is wrong, and NaN and inf stay where a
    non-finite value enters the arithmetic: at the outputs that depend on a non-finite element
    ("spoiled"), and at the derivatives with respect to the elements that meet one in an operation;
    on these closures those are the non-finite elements and the elements that reach a spoiled output.
    So J's entries for the other outputs and elements, vᵀJ at the other elements, and J v at the other
    outputs when v is zero at the spoiled elements, are finite and right."""
    assume(spec.total > 0)
    elements = [(i, e) for i in range(len(spec.shapes)) for e in range(spec.numel(i))]
    chosen = data.draw(st.lists(st.sampled_from(elements), min_size=1, max_size=3, unique=True), label="elements")
    edits = tuple((i, e, data.draw(NONFINITE, label="value")) for i, e in chosen)
    problem = Problem(spec, edits)
    depends, oracle = dependence(spec), problem.jacobian  # at the non-finite params: NaN at the spoiled outputs
    offsets = np.cumsum([0] + [spec.numel(i) for i in range(len(spec.shapes))])
    bad = torch.zeros(problem.total, dtype=torch.bool)
    bad[[int(offsets[i]) + e for i, e, _ in edits]] = True
    spoiled_outputs = depends[:, bad].any(dim=1)
    spoiled_elements = bad | depends[spoiled_outputs].any(dim=0)
    # J as far as it is known: the oracle's rows at the other outputs (there J[i, j] = 0 at a non-finite j
    # that output i does not depend on), 0 where an output does not depend on an element, NaN (unknown) else.
    clean = ~spoiled_outputs
    jacobian = torch.zeros_like(oracle)
    jacobian[depends] = math.nan
    jacobian[clean] = torch.where(depends[clean], oracle[clean], 0.0)
    func, params = problem.func, problem.params
    batch = data.draw(st.integers(1, 3), label="batch size")
    for function in FUNCTIONS:
        lead = (batch,) if function.startswith("batch") else ()
        if function.endswith("jvp"):
            v = draw_vector(data, *lead, problem.total, label=function)
            moves_spoiled = data.draw(st.booleans(), label=f"{function} moves spoiled elements")
            if not moves_spoiled:
                v[..., spoiled_elements] = 0
            forms, given = problem.tangents(v)
            result = call(name, function, func, params, forms["list"])
            if result is not None:
                expected = _known_products(given, jacobian.T)
                must_be_finite = torch.zeros_like(clean) if moves_spoiled else clean
                check_finite_and_right(function, result.reshape(lead + (problem.outputs,)), expected,
                                       must_be_finite.expand(expected.shape), problem.precision)
        elif function.endswith("vjp"):
            forms, given = problem.cotangents(draw_vector(data, *lead, problem.outputs, label=function))
            result = call(name, function, func, params, forms["shaped"])
            if result is not None:
                results = result if lead else per_param(function, result, problem)
                flat = torch.cat([r.reshape(lead + (p.numel(),)) for r, p in zip(results, params)], dim=-1)
                expected = _known_products(given, jacobian)
                check_finite_and_right(function, flat, expected, (~spoiled_elements).expand(expected.shape),
                                       problem.precision)
        else:
            result = call(name, function, func, params)
            if result is not None:
                flat = torch.cat([r.reshape(problem.outputs, p.numel()) for r, p in zip(result, params)], dim=-1)
                check_finite_and_right(function, flat, jacobian, clean[:, None] & ~spoiled_elements,
                                       problem.precision)


def _known_products(vectors, matrix):
    """vectors @ matrix with NaN (unknown) where a nonzero vector entry meets an unknown matrix entry."""
    unknown = (vectors != 0).double() @ torch.isnan(matrix).double() > 0
    return torch.where(unknown, math.nan, vectors @ torch.where(torch.isnan(matrix), 0.0, matrix))


# Malformed input: the documented error, the same from every strategy.

NOT_A_TENSOR = st.sampled_from([1.0, None, "v", np.ones(2), (1.0, 2.0), {"v": 1.0}])
OTHER_DTYPES = (torch.float64, torch.float32, torch.float16, torch.int64, torch.bool, torch.complex64)


def _other_dtype(data, dtype):
    return data.draw(st.sampled_from([d for d in OTHER_DTYPES if d != dtype]), label="dtype")


def _wrong_shape(data, valid):
    """A shape that is not one of the valid ones (valid: a predicate on shapes)."""
    return data.draw(st.lists(st.sampled_from((0, 1, 2, 3, 4, 5)), max_size=4).map(tuple).filter(
        lambda shape: not valid(shape)), label="shape")


def _one_of(shape, lead, accepted):
    """Whether shape is lead + one of the accepted shapes, where a lead (batch,) accepts any batch size >= 1."""
    if lead:
        return len(shape) >= 1 and shape[0] >= 1 and shape[1:] in accepted
    return shape in accepted


def _malformed_call(data, problem, function):
    """(what is wrong, the call's arguments, the error it must raise, the argument the message must name)."""
    func, params = problem.func, list(problem.params)
    batch = data.draw(st.integers(1, 2), label="batch size")
    lead = (batch,) if function.startswith("batch") else ()
    name = "vs" if lead else "v"
    if function.endswith("jvp"):
        vector = [torch.zeros(lead + tuple(p.shape), dtype=p.dtype) for p in params]
    elif function.endswith("vjp"):
        vector = torch.zeros(lead + problem.output_shape, dtype=problem.output_dtype)
    else:
        vector = None
    kinds = ["func not callable", "func returns no tensor", "func returns no floating-point tensor",
             "params not a list", "params empty", "params with a non-tensor", "params with a non-float tensor",
             "params with a tensor twice"]
    if function.endswith("jvp"):
        kinds += ["v with a tensor too many or too few", "v with a tensor of the wrong shape",
                  "v a tensor of a shape no form has", "v of another dtype", "v on another device", "v no tensor",
                  "v with a non-tensor"]
        if lead:
            kinds += ["vs with an empty batch", "vs 0-d"] + (["vs with batch sizes that differ"] if len(params) > 1
                                                             else [])
    elif function.endswith("vjp"):
        kinds += ["v of a shape no form has", "v of another dtype", "v on another device", "v no tensor"]
        if lead:
            kinds += ["vs with an empty batch", "vs 0-d"]
    kind = data.draw(st.sampled_from(kinds), label="what is wrong")
    index = data.draw(st.integers(0, len(params) - 1), label="index")
    error, word = ValueError, name
    if kind == "func not callable":
        func, error, word = data.draw(st.sampled_from([3, None, "func", torch.ones(1)])), TypeError, "func"
    elif kind == "func returns no tensor":
        original = func
        func = data.draw(st.sampled_from([lambda: original().tolist(), lambda: [original()], lambda: 1.0]))
        error, word = TypeError, "func"
    elif kind == "func returns no floating-point tensor":
        dtype = data.draw(st.sampled_from([torch.int64, torch.bool, torch.complex64]))
        func, error, word = (lambda original=func: original().to(dtype)), TypeError, "func"
    elif kind == "params not a list":
        params, error, word = data.draw(st.sampled_from([params[0], set(params), iter(params), None])), TypeError, \
            "params"
    elif kind == "params empty":
        params, word = [], "params"
    elif kind == "params with a non-tensor":
        params[index], error, word = data.draw(NOT_A_TENSOR), TypeError, f"params[{index}]"
    elif kind == "params with a non-float tensor":
        dtype = data.draw(st.sampled_from([torch.int64, torch.bool, torch.complex64]))
        params[index] = torch.zeros(problem.params[index].shape, dtype=dtype)
        error, word = TypeError, f"params[{index}]"
    elif kind == "params with a tensor twice":
        params.insert(data.draw(st.integers(0, len(params))), params[index])
        word = "same tensor"
    elif kind == "v with a tensor too many or too few":
        if data.draw(st.booleans()):
            vector = vector + [vector[index]]
        else:
            del vector[index]
    elif kind == "v with a tensor of the wrong shape":
        expected = lead + tuple(params[index].shape)
        shape = _wrong_shape(data, lambda shape: shape == expected)
        vector[index], word = torch.zeros(shape, dtype=params[index].dtype), name
    elif kind == "v a tensor of a shape no form has":
        accepted = [(problem.total,)] + ([tuple(params[0].shape)] if len(params) == 1 else [])
        shape = _wrong_shape(data, lambda shape: _one_of(shape, lead, accepted))
        vector = torch.zeros(shape, dtype=params[0].dtype)
    elif kind == "v of another dtype" and function.endswith("jvp"):
        form = data.draw(st.sampled_from(["list", "tensor"] if len(params) == 1 else ["list"]), label="form")
        dtype = _other_dtype(data, params[index].dtype)
        if form == "list":
            vector[index] = vector[index].to(dtype)
        else:
            vector = vector[0].to(dtype)
        error = TypeError
    elif kind == "v on another device" and function.endswith("jvp"):
        vector[index] = vector[index].to("meta")
    elif kind == "v with a non-tensor":
        vector[index], error = data.draw(NOT_A_TENSOR), TypeError
    elif kind == "v no tensor":
        vector, error = data.draw(NOT_A_TENSOR.filter(lambda x: not isinstance(x, tuple) or len(x) != len(params))
                                  if function.endswith("jvp") else NOT_A_TENSOR), TypeError
        if isinstance(vector, tuple):  # a sequence of the wrong length: a wrong count (jvp) or no tensor (vjp)
            error = ValueError if function.endswith("jvp") else TypeError
    elif kind == "vs with an empty batch":
        vector = [v[:0] for v in vector] if isinstance(vector, list) else vector[:0]
    elif kind == "vs 0-d":
        vector = torch.zeros((), dtype=params[0].dtype if function.endswith("jvp") else problem.output_dtype)
    elif kind == "vs with batch sizes that differ":
        vector[index] = torch.zeros((batch + 1,) + tuple(params[index].shape), dtype=params[index].dtype)
    elif kind == "v of a shape no form has":
        accepted = [problem.output_shape, (problem.outputs,)]
        shape = _wrong_shape(data, lambda shape: _one_of(shape, lead, accepted))
        vector = torch.zeros(shape, dtype=problem.output_dtype)
    elif kind == "v of another dtype":
        vector, error = vector.to(_other_dtype(data, problem.output_dtype)), TypeError
    elif kind == "v on another device":
        vector = vector.to("meta")
    args = (func, params) if function == "full_jacobian" else (func, params, vector)
    return kind, args, error, word


@settings(max_examples=examples(300))
@given(spec=closure_specs(max_params=3, max_numel=6), data=st.data())
def test_malformed_input_gets_the_documented_error_from_every_strategy(spec, data):
    """TypeError for a wrong kind of thing, ValueError for a wrong count, shape, batch size or device;
    the message names the argument, and every strategy gives the same error (never a result)."""
    problem = Problem(spec)
    function = data.draw(st.sampled_from(FUNCTIONS), label="function")
    kind, args, error, word = _malformed_call(data, problem, function)
    messages = {}
    for name, strategy in STRATEGIES.items():
        with pytest.raises(Exception) as raised:
            getattr(strategy, function)(*args)
        assert type(raised.value) is error, (f"{name} {function}, {kind}: raised "
                                             f"{type(raised.value).__name__}({raised.value}), expected {error.__name__}")
        messages[name] = str(raised.value)
        assert word in messages[name], f"{name} {function}, {kind}: the message does not name {word!r}: {raised.value}"
    assert len(set(messages.values())) == 1, f"{function}, {kind}: the strategies' errors differ: {messages}"
