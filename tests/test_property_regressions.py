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
