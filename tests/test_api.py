"""The public API as the documentation states it, through every strategy."""

import pytest
import torch
from torch import nn

import gvp_bench
from gvp_bench.conformance.cases import CubeBackwardOnly
from conftest import DEVICES

STRATEGIES = gvp_bench.strategies()
ON_THE_CPU = [name for name in STRATEGIES if name != "cuda_graphs"]  # it refuses the CPU (tests/test_compiled.py)
J_V_ONLY = {"linearize"}  # strategies whose VJPs raise UnsupportedError (checked below)


def _vjp_or_unsupported(strategy, call):
    """call()'s result, or None where the strategy offers J v only: then call() must say so."""
    if strategy not in J_V_ONLY:
        return call()
    with pytest.raises(gvp_bench.UnsupportedError, match="J v only"):
        call()
    return None


def _documented(device="cpu"):
    x = torch.tensor([1.0, 2.0], requires_grad=True, device=device)
    return (lambda: torch.stack([x[0] ** 2, 3 * x[1] ** 2])), x


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_documented_examples_give_the_documented_values(strategy, device):
    if device == "cpu" and strategy not in ON_THE_CPU:
        pytest.skip(f"{strategy} refuses the CPU (tests/test_compiled.py)")
    func, x = _documented(device)
    v = torch.tensor([0.5, -1.0], device=device)
    vs = torch.eye(2, device=device)
    expected = torch.tensor([[2.0, 0.0], [0.0, 12.0]], device=device)
    assert torch.equal(gvp_bench.jvp(func, [x], v, strategy=strategy), torch.tensor([1.0, -12.0], device=device))
    assert torch.equal(gvp_bench.batch_jvp(func, [x], vs, strategy=strategy), expected)
    vjp = _vjp_or_unsupported(strategy, lambda: gvp_bench.vjp(func, [x], v, strategy=strategy))
    batch_vjp = _vjp_or_unsupported(strategy, lambda: gvp_bench.batch_vjp(func, [x], vs, strategy=strategy))
    if strategy not in J_V_ONLY:
        assert torch.equal(vjp, torch.tensor([1.0, -12.0], device=device))
        assert torch.equal(batch_vjp[0], expected)
    (jacobian,) = gvp_bench.full_jacobian(func, [x], strategy=strategy)
    assert torch.equal(jacobian, expected)


@pytest.mark.parametrize("strategy", ON_THE_CPU)
def test_documented_model_examples(strategy):
    torch.manual_seed(0)
    model = nn.Linear(10, 1)
    x = torch.randn(1, 10)
    v = [torch.randn_like(p) for p in model.parameters()]
    expected = x @ v[0].T + v[1]
    torch.testing.assert_close(gvp_bench.model_jvp(model, x, v, strategy=strategy), expected)
    grads = _vjp_or_unsupported(strategy, lambda: gvp_bench.model_vjp(model, x, torch.ones(1, 1), strategy=strategy))
    if strategy not in J_V_ONLY:
        torch.testing.assert_close(grads[0], x)
        torch.testing.assert_close(grads[1], torch.ones(1))


@pytest.mark.parametrize("strategy", ON_THE_CPU)
def test_params_are_left_untouched(strategy):
    w = torch.randn(3, 2, requires_grad=True)
    before = w.detach().clone()
    func = lambda: torch.tanh(w @ torch.ones(2))  # noqa: E731
    gvp_bench.jvp(func, [w], torch.ones(3, 2), strategy=strategy)
    gvp_bench.full_jacobian(func, [w], strategy=strategy)
    assert torch.equal(w, before) and w.grad is None and w.requires_grad and w.is_leaf


@pytest.mark.parametrize("strategy", ON_THE_CPU)
def test_params_that_do_not_require_grad_still_work(strategy):
    w = torch.randn(3, 2)
    func = lambda: (w ** 2).sum(dim=1)  # noqa: E731
    (jacobian,) = gvp_bench.full_jacobian(func, [w], strategy=strategy)
    expected = torch.zeros(3, 3, 2)
    for row in range(3):
        expected[row, row] = 2 * w[row]
    torch.testing.assert_close(jacobian, expected)
    assert not w.requires_grad


def test_strategy_instances_and_options_are_accepted():
    func, x = _documented()
    one_row_at_a_time = gvp_bench.get_strategy("jacrev_chunked", chunk_size=1)
    assert one_row_at_a_time.chunk_size == 1
    (jacobian,) = gvp_bench.full_jacobian(func, [x], strategy=one_row_at_a_time)
    assert torch.equal(jacobian, torch.tensor([[2.0, 0.0], [0.0, 12.0]]))


def test_auto_falls_back_when_a_strategy_is_unsupported():
    x = torch.randn(3, requires_grad=True)
    auto = gvp_bench.get_strategy("auto")
    result = gvp_bench.jvp(lambda: CubeBackwardOnly.apply(x), [x], torch.ones(3))
    torch.testing.assert_close(result, 3 * x.detach() ** 2)
    assert auto.last_choice == "double_backward"
    with pytest.raises(gvp_bench.UnsupportedError, match="defines no jvp") as raised:
        gvp_bench.jvp(lambda: CubeBackwardOnly.apply(x), [x], torch.ones(3), strategy="forward_dual")
    assert isinstance(raised.value, NotImplementedError)


def test_hessian_vector_product_from_create_graph():
    """The seed's note: create_graph=True results give second-order products."""
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    func = lambda: (x ** 3).sum()  # noqa: E731
    for strategy in set(STRATEGIES) - J_V_ONLY:
        if strategy in ("compiled", "cuda_graphs"):  # their graphs are differentiable once only: refused
            with pytest.raises(gvp_bench.UnsupportedError, match="create_graph=True|CUDA graphs record CUDA kernels"):
                gvp_bench.vjp(func, [x], torch.tensor(1.0, dtype=torch.float64), create_graph=True, strategy=strategy)
            continue
        gradient = gvp_bench.vjp(func, [x], torch.tensor(1.0, dtype=torch.float64), create_graph=True,
                                 strategy=strategy)
        hvp = gvp_bench.jvp(lambda: gradient, [x], torch.ones(4, dtype=torch.float64), strategy="double_backward")
        (hessian_times_ones,) = torch.autograd.grad(gradient, x, torch.ones(4, dtype=torch.float64))
        torch.testing.assert_close(hessian_times_ones, 6 * x.detach(), msg=strategy)
        torch.testing.assert_close(hvp, 6 * x.detach(), msg=strategy)
