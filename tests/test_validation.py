"""Bad input: the same error type from every strategy, naming the argument."""

import pytest
import torch
from torch import nn

import gvp_bench

STRATEGIES = gvp_bench.strategies()


def _problem():
    w = torch.randn(3, 2, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    x = torch.randn(2)
    return (lambda: torch.tanh(w @ x + b)), [w, b]


def _bad_calls():
    """(label, call(strategy), error type, words the message must contain)."""
    func, params = _problem()
    w, b = params
    out = func()
    good_v = [torch.randn_like(w), torch.randn_like(b)]
    yield "func not callable", lambda s: s.jvp(3, params, good_v), TypeError, "func"
    yield "func returns a list", lambda s: s.jvp(lambda: [w], params, good_v), TypeError, "func must return a tensor"
    yield "func returns ints", lambda s: s.vjp(lambda: torch.ones(3, dtype=torch.long), params, torch.ones(3)), \
        TypeError, "floating-point"
    yield "params a tensor", lambda s: s.jvp(func, w, torch.randn_like(w)), TypeError, "params"
    yield "params empty", lambda s: s.full_jacobian(func, []), ValueError, "params"
    yield "params with an int tensor", lambda s: s.vjp(func, [w, torch.ones(3, dtype=torch.long)], out), \
        TypeError, "params[1]"
    yield "params with a non-tensor", lambda s: s.full_jacobian(func, [w, 1.0]), TypeError, "params[1]"
    yield "params repeated", lambda s: s.full_jacobian(func, [w, w]), ValueError, "same tensor"
    yield "v with an extra tensor", lambda s: s.jvp(func, params, good_v + [torch.randn(3)]), ValueError, "v must hold"
    yield "v with too few tensors", lambda s: s.jvp(func, params, good_v[:1]), ValueError, "v must hold"
    yield "v[1] of the wrong shape", lambda s: s.jvp(func, params, [good_v[0], torch.randn(4)]), ValueError, "v[1]"
    yield "v flat of the wrong length", lambda s: s.jvp(func, params, torch.randn(8)), ValueError, "v"
    yield "v[0] of another dtype", lambda s: s.jvp(func, params, [good_v[0].double(), good_v[1]]), TypeError, "v[0]"
    yield "v[0] on another device", lambda s: s.jvp(func, params, [good_v[0].to("meta"), good_v[1]]), \
        ValueError, "device"
    yield "v a number", lambda s: s.jvp(func, params, 1.0), TypeError, "v"
    yield "vjp v of the wrong shape", lambda s: s.vjp(func, params, torch.randn(4)), ValueError, "output shape"
    yield "vjp v of another dtype", lambda s: s.vjp(func, params, torch.randn(3, dtype=torch.float64)), \
        TypeError, "dtype"
    yield "vjp v not a tensor", lambda s: s.vjp(func, params, [1.0, 2.0, 3.0]), TypeError, "v"
    yield "batch sizes differ", lambda s: s.batch_jvp(func, params, [torch.randn(4, 3, 2), torch.randn(5, 3)]), \
        ValueError, "batch size"
    yield "batch_jvp vs without batch dim", lambda s: s.batch_jvp(func, params, good_v), ValueError, "vs[0]"
    yield "batch_jvp empty batch", lambda s: s.batch_jvp(func, params, torch.randn(0, 9)), ValueError, "at least one"
    yield "batch_vjp vs of the wrong shape", lambda s: s.batch_vjp(func, params, torch.randn(4, 5)), ValueError, "vs"
    yield "batch_vjp vs 0-d", lambda s: s.batch_vjp(func, params, torch.tensor(1.0)), ValueError, "vs"
    yield "batch_vjp vs not a tensor", lambda s: s.batch_vjp(func, params, [out, out]), TypeError, "vs"
    yield "model not a module", lambda s: s.model_jvp(func, torch.randn(2), good_v), TypeError, "model"
    frozen = nn.Linear(2, 3).requires_grad_(False)
    yield "model all frozen", lambda s: s.model_vjp(frozen, torch.randn(2), torch.randn(3)), ValueError, "require grad"
    linear = nn.Linear(2, 3)
    yield "model_jvp v for the wrong model", lambda s: s.model_jvp(linear, torch.randn(2), [torch.randn(3, 2)]), \
        ValueError, "v must hold"


BAD_CALLS = list(_bad_calls())


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("label,call,error,words", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_is_refused_alike(strategy, label, call, error, words):
    with pytest.raises(error) as raised:
        call(gvp_bench.get_strategy(strategy))
    assert type(raised.value) is error, f"{strategy} raised {type(raised.value).__name__}, expected {error.__name__}"
    assert words in str(raised.value)


def test_unknown_strategy_lists_the_valid_names():
    with pytest.raises(ValueError) as raised:
        gvp_bench.get_strategy("fastest")
    for name in STRATEGIES:
        assert name in str(raised.value)


def test_strategy_argument_must_be_a_name_or_a_strategy():
    func, params = _problem()
    with pytest.raises(TypeError, match="strategy"):
        gvp_bench.jvp(func, params, torch.randn(9), strategy=3)
    with pytest.raises(ValueError, match="valid names"):
        gvp_bench.jvp(func, params, torch.randn(9), strategy="fastest")


def test_chunk_size_is_checked():
    with pytest.raises(ValueError, match="chunk_size"):
        gvp_bench.get_strategy("jacrev_chunked", chunk_size=0)
