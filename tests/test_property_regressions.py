"""Regression cases for the bugs the property tests (tests/test_properties.py) found, as plain tests.

Each bug has a hand-written case through every strategy; FOUND keeps the minimal examples
hypothesis reported, checked against the oracle in every form of the vectors.
"""

import math

import pytest
import torch

from gvp_bench.conformance.oracle import finite_difference_jacobian
from random_closures import (FUNCTIONS, STRATEGIES, ClosureSpec, Factor, Problem, assert_close, check_nonfinite_product,
                             not_offered, product)

NAMES = sorted(STRATEGIES)
FLOAT32_AND_64 = (torch.float32, torch.float64)


def _strategy(name):
    return STRATEGIES[name]


def _two_blocks(dtype):
    a = torch.tensor([0.3, -0.7], dtype=dtype, requires_grad=True)
    b = torch.tensor([1.1, 0.4], dtype=dtype, requires_grad=True)
    return (lambda: torch.cat([a.sin(), b.cos()])), [a, b]


# create_graph=True gives lists, as documented (the contract returned the strategies' tuples).

@pytest.mark.parametrize("name", NAMES)
def test_create_graph_results_are_lists(name):
    func, params = _two_blocks(torch.float64)
    strategy = _strategy(name)
    with not_offered(name, "vjp", create_graph=True):
        assert type(strategy.vjp(func, params, torch.ones(4, dtype=torch.float64), create_graph=True)) is list
    with not_offered(name, "batch_vjp", create_graph=True):
        assert type(strategy.batch_vjp(func, params, torch.ones(2, 4, dtype=torch.float64), create_graph=True)) is list
    with not_offered(name, "full_jacobian", create_graph=True):
        assert type(strategy.full_jacobian(func, params, create_graph=True)) is list
    with not_offered(name, "batch_vjp", create_graph=True):
        assert type(strategy.batch_vjp(func, params[:1], torch.ones(2, 4, dtype=torch.float64), create_graph=True)) \
            is list


# Outputs with no elements: correctly shaped empty results (jacrev_chunked with any chunk size,
# reference_loop's jvp and batch_jvp, and the Jacobians of double_backward, autograd_functional and
# func_vmap crashed).

def _empty_outputs():
    x = torch.randn(3, requires_grad=True)
    y = torch.randn(2, 2, requires_grad=True)
    scalar = torch.tensor(0.3, requires_grad=True)
    index = torch.zeros(0, dtype=torch.long)
    yield "slice", (lambda: x[:0] * 2), [x]
    yield "gather from a 0-d param with an empty index", (lambda: torch.exp(scalar).reshape(-1)[index]), [scalar]
    yield "(2, 0) from two params", (lambda: (x[:2, None] * y.sum()).expand(2, 0)), [x, y]
    yield "(0, 3)", (lambda: (x * y.sum())[None][:0]), [x, y]
    yield "a constant", (lambda: torch.zeros(0, 4)), [x, y]


EMPTY_OUTPUTS = list(_empty_outputs())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("label,func,params", EMPTY_OUTPUTS, ids=[case[0] for case in EMPTY_OUTPUTS])
def test_outputs_with_no_elements_give_empty_results(name, label, func, params):
    strategy, shape = _strategy(name), tuple(func().shape)
    v = [torch.ones_like(p) for p in params]
    assert strategy.jvp(func, params, v).shape == shape
    assert strategy.batch_jvp(func, params, [t.expand(2, *t.shape) for t in v]).shape == (2,) + shape
    with not_offered(name, "vjp"):
        grads = strategy.vjp(func, params, torch.ones(shape))
        for g, p in zip(grads if len(params) > 1 else [grads], params):
            assert torch.equal(g, torch.zeros_like(p))
    with not_offered(name, "batch_vjp"):
        for g, p in zip(strategy.batch_vjp(func, params, torch.ones((2,) + shape)), params):
            assert torch.equal(g, torch.zeros((2,) + tuple(p.shape), dtype=p.dtype))
    for block, p in zip(strategy.full_jacobian(func, params), params):
        assert block.shape == (0,) + tuple(p.shape) and block.dtype == p.dtype


# A param with no elements: autograd_functional's Jacobian reshaped its block with -1, which is
# ambiguous for zero elements.

@pytest.mark.parametrize("name", NAMES)
def test_params_with_no_elements(name):
    x = torch.randn(3, requires_grad=True)
    empty = torch.randn(0, 3, requires_grad=True)
    func = lambda: torch.sin(x) + empty.sum()  # noqa: E731
    jacobian = _strategy(name).full_jacobian(func, [x, empty])
    torch.testing.assert_close(jacobian[0], torch.diag(torch.cos(x.detach())))
    assert jacobian[1].shape == (3, 0, 3)
    torch.testing.assert_close(_strategy(name).jvp(func, [x, empty], [torch.ones(3), torch.ones(0, 3)]),
                               torch.cos(x.detach()))


# Params of mixed dtypes: J v in the output's dtype (jacrev_chunked and reference_loop gave float64 for a
# float32 output), vᵀJ and the Jacobian's blocks in each param's (jacrev_chunked's vjp crashed,
# forward_dual's Jacobian blocks had the output's dtype).

def _mixed_dtype_cases():
    """(label, the params' dtypes, make(params, low) -> func, where `low` is what float32 stands for: the
    oracle builds the same function with float64 everywhere)."""
    f32, f64 = torch.float32, torch.float64
    yield "float32 output of a float64 param", (f32, f64), lambda p, low: lambda: p[1].to(low).sin() * 2
    yield "float32 output, a float64 param unused", (f32, f64), lambda p, low: lambda: p[0].sin()
    yield "float32 output promoted with a 0-d float64 param", (f32, f64), lambda p, low: lambda: p[0] * p[1].sum()
    yield "float32 output computed in float64", (f32, f64), \
        lambda p, low: lambda: (p[0].double().sin() + p[1].cos()).to(low)
    yield "float64 output of both", (f32, f64), lambda p, low: lambda: p[0].double() * p[1]
    yield "float32 output of float64 params", (f64, f64), lambda p, low: lambda: (p[0] * p[1]).to(low)


MIXED = list(_mixed_dtype_cases())
_VALUES = (torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), torch.tensor([0.1, 0.2, -0.3], dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("label,dtypes,make", MIXED, ids=[case[0] for case in MIXED])
def test_mixed_dtypes_give_the_documented_dtypes(name, label, dtypes, make):
    strategy = _strategy(name)
    params = [v.to(d).requires_grad_() for v, d in zip(_VALUES, dtypes)]
    func = make(params, torch.float32)
    output = func()
    oracle_params = [p.detach().double().requires_grad_() for p in params]
    jacobian = finite_difference_jacobian(make(oracle_params, torch.float64), oracle_params)
    ones = torch.ones(sum(p.numel() for p in params), dtype=torch.float64)

    def close(actual, expected):
        torch.testing.assert_close(actual.double(), expected, rtol=1e-4, atol=1e-5)

    jv = strategy.jvp(func, params, [torch.ones_like(p) for p in params])
    assert jv.dtype == output.dtype
    close(jv, jacobian @ ones)
    assert strategy.batch_jvp(func, params, [torch.ones_like(p)[None] for p in params]).dtype == output.dtype
    u = torch.ones_like(output)
    for what, results_of in (("vjp", lambda: strategy.vjp(func, params, u)),
                             ("batch_vjp", lambda: [r[0] for r in strategy.batch_vjp(func, params, u[None])]),
                             ("full_jacobian", lambda: [b.sum(0) for b in strategy.full_jacobian(func, params)])):
        with not_offered(name, what):
            results = results_of()
            assert [r.dtype for r in results] == [p.dtype for p in params], what
            close(torch.cat([r.reshape(-1) for r in results]), jacobian.sum(0))


# NaN and inf in v reach exactly the results that depend on them (jacrev_chunked and reference_loop
# multiplied them by the zeros of J and spread them over every result).

@pytest.mark.parametrize("dtype", FLOAT32_AND_64)
@pytest.mark.parametrize("name", NAMES)
def test_nan_and_inf_in_v_reach_only_what_depends_on_them(name, dtype):
    func, (a, b) = _two_blocks(dtype)
    strategy, nan, inf = _strategy(name), math.nan, math.inf
    jv = strategy.jvp(func, [a, b], [torch.tensor([nan, 1.0], dtype=dtype), torch.tensor([1.0, -inf], dtype=dtype)])
    assert torch.isnan(jv[0]) and torch.isfinite(jv[1:3]).all() and jv[3] == inf  # -sin(0.4) · -inf
    with not_offered(name, "vjp"):
        vj = strategy.vjp(func, [a, b], torch.tensor([1.0, inf, nan, 1.0], dtype=dtype))
        assert torch.isfinite(vj[0][0]) and vj[0][1] == inf and torch.isnan(vj[1][0]) and torch.isfinite(vj[1][1])
    # a batch: one row's NaN stays in that row
    vs = torch.tensor([[nan, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=dtype)
    rows = strategy.batch_jvp(func, [a, b], vs)
    assert torch.isnan(rows[0, 0]) and torch.equal(rows[0, 1:], torch.zeros(3, dtype=dtype))
    assert torch.isfinite(rows[1]).all()
    with not_offered(name, "batch_vjp"):
        us = strategy.batch_vjp(func, [a, b], vs)
        assert torch.isnan(us[0][0, 0]) and us[0][0, 1] == 0 and torch.equal(us[1][0], torch.zeros(2, dtype=dtype))
        assert torch.isfinite(us[0][1]).all() and torch.isfinite(us[1][1]).all()


@pytest.mark.parametrize("name", NAMES)
def test_nan_in_a_param_stays_where_it_is_met(name):
    """A NaN param element spoils the outputs that depend on it; J v for a v that does not move it is
    finite and right at the other outputs (jacrev_chunked's and reference_loop's J v multiplied the NaN
    that reverse mode puts in J's column for it by v's zero there)."""
    a = torch.tensor([math.nan, 0.5, -0.2], dtype=torch.float64, requires_grad=True)
    func = lambda: torch.exp(a)  # noqa: E731
    jv = _strategy(name).jvp(func, [a], torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(jv[1:], torch.exp(a.detach()[1:]) * torch.tensor([1.0, 2.0], dtype=torch.float64))


# The minimal examples hypothesis reported (with report_multiple_bugs=False, on the code before the fixes),
# against the oracle in every form of the vectors, with create_graph False and True.

FOUND = [
    # forward_dual's Jacobian block in the output's dtype, float32, for a float64 param
    pytest.param(ClosureSpec(shapes=((),), dtypes=("float64",), output_shape=(), terms=((Factor(0, "gather", "exp"),),),
                             output_dtype="float32"), id="jacobian block dtype"),
    # autograd_functional's Jacobian for a param with no elements: reshape(-1, 0) is ambiguous
    pytest.param(ClosureSpec(shapes=((0,),), dtypes=("float64",), output_shape=(),
                             terms=((Factor(0, "contract", "exp"),),)), id="empty param"),
    # double_backward's Jacobian of an output with no elements: autograd.grad over a batch of 0
    pytest.param(ClosureSpec(shapes=((), (), ()), dtypes=("float64",) * 3, output_shape=(0,),
                             terms=((Factor(0, "gather", "exp"),), (Factor(1, "gather", "exp"),))),
                 id="empty output of three params"),
    # func_vmap's (and auto's) Jacobian of an output with no elements: vmap over 0 cotangents; jacrev_chunked's
    # vjp crashed on it even before checking v
    pytest.param(ClosureSpec(shapes=((),), dtypes=("float64",), output_shape=(0,),
                             terms=((Factor(0, "gather", "exp"),),)), id="empty output of a 0-d param"),
    # reference_loop's J v of an output with no elements: reshape(0, -1) is ambiguous
    pytest.param(ClosureSpec(shapes=((0,), (), ()), dtypes=("float64",) * 3, output_shape=(0,), returns_param=0),
                 id="empty param returned"),
    # jacrev_chunked's and reference_loop's J v in float64 for a float32 output, and the other way round
    pytest.param(ClosureSpec(shapes=((),), dtypes=("float64",), output_shape=(), output_dtype="float32"),
                 id="float32 output of a float64 param"),
    pytest.param(ClosureSpec(shapes=((),), dtypes=("float32",), output_shape=(), output_dtype="float64", seed=115),
                 id="float64 output of a float32 param"),
    # create_graph=True gave tuples
    pytest.param(ClosureSpec(shapes=((),), dtypes=("float64",), output_shape=(), returns_param=0, seed=712),
                 id="param returned"),
]

FOUND_NONFINITE = [
    # jacrev_chunked's J v: a NaN tangent for a param the output does not depend on spread through J's zero
    pytest.param(ClosureSpec(shapes=((),), dtypes=("float32",), output_shape=(), output_dtype="float32", seed=12578),
                 "jvp", [math.nan], id="NaN tangent, constant output"),
    pytest.param(ClosureSpec(shapes=((), ()), dtypes=("float64", "float64"), output_shape=(), returns_param=0,
                             seed=24704), "jvp", [0.5, -math.inf], id="inf tangent of an unused param"),
    # the same through vᵀJ and in a batch (written by hand)
    pytest.param(ClosureSpec(shapes=((),), dtypes=("float64",), output_shape=()), "vjp", [math.nan],
                 id="NaN cotangent, constant output"),
    pytest.param(ClosureSpec(shapes=((2,),), dtypes=("float64",), output_shape=(2,),
                             terms=((Factor(0, "gather", "sin"),),), seed=3), "batch_vjp", [[math.inf, 1.0], [1.0, 2.0]],
                 id="inf in a batch of cotangents"),
]


def _all_forms(problem, generator):
    for function in FUNCTIONS:
        lead = (2,) if function.startswith("batch") else ()
        size = problem.total if function.endswith("jvp") else problem.outputs
        flat = None if function == "full_jacobian" else torch.randn(lead + (size,), generator=generator,
                                                                    dtype=torch.float64)
        for form in [None] if flat is None else sorted(problem.forms(function, flat)):
            yield function, flat, form


@pytest.mark.parametrize("create_graph", [False, True], ids=["", "create_graph"])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("spec", FOUND)
def test_found_examples_agree_with_the_oracle(name, spec, create_graph):
    problem = Problem(spec)
    for function, flat, form in _all_forms(problem, torch.Generator().manual_seed(0)):
        outcome = product(name, problem, function, flat, form, create_graph)
        if outcome is not None:
            what, results, expected, _ = outcome
            for index, (r, e) in enumerate(zip(results, expected)):
                assert_close(f"{what} [{index}]", r, e, problem.precision)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("spec,function,vector", FOUND_NONFINITE)
def test_found_nonfinite_examples_follow_the_rule(name, spec, function, vector):
    problem = Problem(spec)
    flat = torch.tensor(vector, dtype=torch.float64)
    for form in sorted(problem.forms(function, flat)):
        check_nonfinite_product(name, problem, function, flat, form)
