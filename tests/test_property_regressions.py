"""Regression cases for the bugs the property tests (tests/test_properties.py) found, as plain tests.

Each bug has a hand-written case through every strategy; FOUND keeps the minimal examples
hypothesis reported, checked against the oracle in every form of the vectors.
"""

import pytest
import torch

from random_closures import STRATEGIES

NAMES = sorted(STRATEGIES)


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
    assert type(strategy.vjp(func, params, torch.ones(4, dtype=torch.float64), create_graph=True)) is list
    assert type(strategy.batch_vjp(func, params, torch.ones(2, 4, dtype=torch.float64), create_graph=True)) is list
    assert type(strategy.full_jacobian(func, params, create_graph=True)) is list
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
    grads = strategy.vjp(func, params, torch.ones(shape))
    for g, p in zip(grads if len(params) > 1 else [grads], params):
        assert torch.equal(g, torch.zeros_like(p))
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
