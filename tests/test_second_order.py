"""Second-order products: gvp_bench.hvp / batch_hvp by every strategy, and Hessian-vector products by composing
first-order products (every (outer, inner) pair of strategies gives H v or raises UnsupportedError)."""

import itertools

import pytest
import torch

import gvp_bench
from gvp_bench.conformance import CASES, run_cell
from gvp_bench.conformance.cases import HVP_FUNCTIONS

STRATEGIES = gvp_bench.strategies()


def _objective(x, w):
    return (torch.sin(w @ x) ** 2).sum() * x.prod() + (x ** 3).sum()


def _problem():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, generator=generator, dtype=torch.float64).requires_grad_()
    w = torch.randn(2, 3, generator=generator, dtype=torch.float64).requires_grad_()
    return x, w, (lambda: _objective(x, w))


def _reference_hvp(x, w, v):
    return torch.autograd.functional.hvp(_objective, (x.detach(), w.detach()), tuple(v))[1]


@pytest.mark.parametrize("strategy", gvp_bench.hvp_strategies())
def test_hvp_and_batch_hvp_match_torch(strategy):
    x, w, func = _problem()
    generator = torch.Generator().manual_seed(1)
    vs = [torch.randn(4, 3, generator=generator, dtype=torch.float64),
          torch.randn(4, 2, 3, generator=generator, dtype=torch.float64)]
    batch = gvp_bench.batch_hvp(func, [x, w], vs, strategy=strategy)
    for row in range(4):
        v = [vs[0][row], vs[1][row]]
        single = gvp_bench.hvp(func, [x, w], v, strategy=strategy)
        for result, rows, expected in zip(single, batch, _reference_hvp(x, w, v)):
            torch.testing.assert_close(result, expected)
            torch.testing.assert_close(rows[row], expected)
            assert not result.requires_grad
    flat = torch.cat([vs[0][0], vs[1][0].reshape(-1)])
    torch.testing.assert_close(gvp_bench.hvp(func, [x, w], flat, strategy=strategy)[1], batch[1][0])


@pytest.mark.parametrize("strategy", gvp_bench.hvp_strategies())
def test_hvp_unused_param_and_one_param(strategy):
    x, w, _ = _problem()
    unused = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    func = lambda: (x ** 3).sum()  # noqa: E731
    result = gvp_bench.hvp(func, [x, unused], [torch.ones(3, dtype=torch.float64), torch.ones(2, dtype=torch.float64)],
                           strategy=strategy)
    torch.testing.assert_close(result[0], 6 * x.detach())
    torch.testing.assert_close(result[1], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(gvp_bench.hvp(func, [x], torch.ones(3, dtype=torch.float64), strategy=strategy),
                               6 * x.detach())


def test_hvp_refuses_what_it_cannot_do_with_typed_errors():
    x, w, func = _problem()
    v = [torch.ones(3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)]
    for strategy in gvp_bench.hvp_strategies():
        with pytest.raises(ValueError, match="must return a scalar"):
            gvp_bench.hvp(lambda: w @ x, [x, w], v, strategy=strategy)
        with pytest.raises(ValueError, match="v must hold one tensor per param"):
            gvp_bench.hvp(func, [x, w], v[:1], strategy=strategy)
    with pytest.raises(ValueError, match="unknown Hessian-vector product strategy"):
        gvp_bench.hvp(func, [x, w], v, strategy="nope")
    half = torch.ones(3, dtype=torch.float16, requires_grad=True)
    with pytest.raises(TypeError, match="torch.float16"):
        gvp_bench.hvp(lambda: half.sum(), [half], torch.ones(3, dtype=torch.float16))


# Composition: an outer product of a func that is itself a product with create_graph=True.

def _composed(kind, outer, inner, x, f, v, w):
    one = torch.ones((), dtype=torch.float64)
    if kind == "jvp-over-vjp":
        return gvp_bench.jvp(lambda: gvp_bench.vjp(f, [x], one, True, strategy=inner), [x], v, strategy=outer)
    if kind == "vjp-over-vjp":
        return gvp_bench.vjp(lambda: gvp_bench.vjp(f, [x], one, True, strategy=inner), [x], v, strategy=outer)
    return gvp_bench.jvp(lambda: gvp_bench.jvp(f, [x], w, True, strategy=inner), [x], v, strategy=outer)


@pytest.mark.parametrize("kind", ["jvp-over-vjp", "vjp-over-vjp", "jvp-over-jvp"])
def test_every_pair_composes_to_the_hvp_or_raises_unsupported(kind):
    x = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64, requires_grad=True)
    f = lambda: (torch.sin(x) * x.prod()).sum() + (x ** 3).sum()  # noqa: E731
    v = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    w = torch.tensor([1.5, 0.25, -0.5], dtype=torch.float64)
    hv = torch.autograd.functional.hvp(lambda y: (torch.sin(y) * y.prod()).sum() + (y ** 3).sum(), x.detach(), v)[1]
    expected = (w * hv).sum() if kind == "jvp-over-jvp" else hv
    answered = []
    for outer, inner in itertools.product(STRATEGIES, STRATEGIES):
        try:
            result = _composed(kind, outer, inner, x, f, v, w)
        except gvp_bench.UnsupportedError:
            continue
        torch.testing.assert_close(result, expected, msg=f"{kind}: outer {outer}, inner {inner}")
        answered.append((outer, inner))
    # the outers that follow autograd's graph compose with every inner that offers create_graph=True
    for outer in ("double_backward", "reference_loop", "auto"):
        assert (outer, "double_backward") in answered and (outer, "func_vmap") in answered, answered


HVP_CELLS = [pytest.param(strategy, case, function, id=f"{strategy}-{case.name}-{function}")
             for case in CASES if "scalar" in case.tags for function in HVP_FUNCTIONS
             for strategy in gvp_bench.hvp_strategies()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("strategy,case,function", HVP_CELLS)
def test_hvp_conformance_cell(strategy, case, function, dtype):
    outcome = run_cell(strategy, case, function, dtype, "cpu")
    assert outcome.status == "pass", outcome.detail


def test_the_second_order_suite_measures_every_hvp_strategy_and_they_agree():
    from gvp_bench.bench import workloads

    cells = workloads.expand(workloads.get_suite("second_order"), models=["mlp"])
    assert {cell.op for cell in cells} == set(workloads.HVP_OPS)
    assert {cell.strategy for cell in cells} == set(gvp_bench.hvp_strategies())
    assert all((cell.k is not None) == (cell.op == "batch_hvp") for cell in cells)
    results = {}
    for cell in cells:
        prepared = workloads.prepare(cell)
        results[cell.op, cell.strategy] = prepared.product()
        assert prepared.workarounds() == []
    for (op, strategy), result in results.items():
        for got, expected in zip(result, results[op, "reverse_over_reverse"]):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=f"{op} by {strategy}")


def test_ggn_vp_is_j_transpose_h_j_v_by_every_strategy():
    generator = torch.Generator().manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    x = torch.randn(2, 3, generator=generator, dtype=torch.float64)
    target = torch.tensor([0, 2])
    params = list(model.parameters())
    func = lambda: model(x)  # noqa: E731
    loss = lambda output: torch.nn.functional.cross_entropy(output, target)  # noqa: E731
    v = torch.randn(sum(p.numel() for p in params), generator=generator, dtype=torch.float64)
    jacobian = torch.cat([block.reshape(6, -1) for block in gvp_bench.full_jacobian(func, params)], dim=1)
    with torch.no_grad():
        output = func()
    hessian = torch.autograd.functional.hessian(loss, output).reshape(6, 6)
    expected = jacobian.T @ hessian @ jacobian @ v
    for strategy in [name for name in STRATEGIES if not gvp_bench.get_strategy(name).costly_first_call]:
        try:
            result = gvp_bench.ggn_vp(func, params, loss, v, strategy=strategy)
        except gvp_bench.UnsupportedError:
            assert strategy == "linearize", strategy  # J v only
            continue
        torch.testing.assert_close(torch.cat([r.reshape(-1) for r in result]), expected, msg=strategy)
    with pytest.raises(ValueError, match="must return a scalar"):
        gvp_bench.ggn_vp(func, params, lambda output: output, v, strategy="func_vmap")
