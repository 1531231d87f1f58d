"""Memory-budgeted chunking: the measured peak stays under an explicit budget, where the same call
without one exceeds it; the options are checked; the engine records what was chosen."""

import warnings

import pytest
import torch

import gvp_bench
from gvp_bench.bench import measure, runner, workloads
from gvp_bench.chunking import MemoryBudgetWarning

CHUNKED = ("func_vmap", "jacrev_chunked", "linearize", "double_backward")
BUDGET = 1_000_000  # bytes: far below every unchunked product below, above a few rows of each
ROWS = 64


def _problem():
    """Large activations (256 x 16 and 256 x 32 per layer) for few params (768) and outputs (32):
    each row of a product costs far more than its share of the result, so only chunking keeps it small."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=generator)
    w1 = torch.randn(16, 16, generator=generator, requires_grad=True)
    w2 = torch.randn(16, 32, generator=generator, requires_grad=True)
    return (lambda: (torch.tanh(x @ w1) @ w2).sin().sum(0)), [w1, w2]


def _calls(strategy):
    func, params = _problem()
    generator = torch.Generator().manual_seed(1)
    tangents = [torch.randn((ROWS,) + tuple(p.shape), generator=generator) for p in params]
    cotangents = torch.randn(ROWS, 32, generator=generator)
    return {"batch_jvp": lambda: strategy.batch_jvp(func, params, tangents),
            "batch_vjp": lambda: strategy.batch_vjp(func, params, cotangents),
            "full_jacobian": lambda: strategy.full_jacobian(func, params)}


def _supported(name, op):
    return not (name == "linearize" and op == "batch_vjp")


CELLS = [(name, op) for name in CHUNKED for op in ("batch_jvp", "batch_vjp", "full_jacobian") if _supported(name, op)]


@pytest.mark.parametrize("name,op", CELLS, ids=[f"{name}-{op}" for name, op in CELLS])
def test_the_peak_stays_under_the_budget_where_the_unchunked_call_exceeds_it(name, op):
    budgeted = gvp_bench.get_strategy(name, memory_budget=BUDGET)
    unchunked = gvp_bench.get_strategy(name, chunk_size=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MemoryBudgetWarning)  # the budget must be kept, not only tried
        expected = _calls(unchunked)[op]()
        result = _calls(budgeted)[op]()
        peak = measure.peak_bytes(_calls(budgeted)[op], "cpu")
    assert peak <= BUDGET < measure.peak_bytes(_calls(unchunked)[op], "cpu")
    assert budgeted.last_chunk_size > 1 and budgeted.last_memory_budget_bytes == BUDGET
    assert unchunked.last_chunk_size in (None, ROWS, 32, 768)  # all rows at once: None where not counted
    torch.testing.assert_close(result, expected)


def test_a_budget_below_one_row_computes_one_row_at_a_time_and_warns():
    strategy = gvp_bench.get_strategy("func_vmap", memory_budget=1000)
    with pytest.warns(MemoryBudgetWarning, match="over the memory budget of 1000 bytes"):
        _calls(strategy)["batch_jvp"]()
    assert strategy.last_chunk_size == 1


def test_the_default_budget_is_half_the_free_memory_and_an_int_chunk_size_is_used_as_given():
    default = gvp_bench.get_strategy("func_vmap")
    _calls(default)["batch_jvp"]()
    assert default.chunk_size == "auto" and 0 < default.last_memory_budget_bytes
    assert default.last_chunk_size == ROWS  # half the free memory holds this small product whole
    fixed = gvp_bench.get_strategy("linearize", chunk_size=5)
    _calls(fixed)["full_jacobian"]()
    assert fixed.last_chunk_size == 5 and fixed.last_memory_budget_bytes is None


def test_what_the_latest_call_chose_is_reset_by_a_call_that_does_not_chunk():
    strategy = gvp_bench.get_strategy("double_backward", memory_budget=BUDGET)
    _calls(strategy)["batch_vjp"]()
    assert strategy.last_chunk_size > 1 and strategy.last_memory_budget_bytes == BUDGET
    func, params = _problem()
    strategy.vjp(func, params, torch.ones(32))  # one backward pass: nothing to chunk
    assert strategy.last_chunk_size is None and strategy.last_memory_budget_bytes is None


@pytest.mark.parametrize("name", CHUNKED)
@pytest.mark.parametrize("options,words", [
    (dict(chunk_size=0), "chunk_size"), (dict(chunk_size="big"), "chunk_size"), (dict(chunk_size=True), "chunk_size"),
    (dict(chunk_size=2.0), "chunk_size"), (dict(memory_budget=0), "memory_budget"),
    (dict(memory_budget=1.5), "memory_budget"), (dict(memory_budget="1GB"), "memory_budget"),
    (dict(chunk_size=4, memory_budget=10 ** 6), "memory_budget"),
])
def test_bad_options_are_a_value_error_naming_the_argument(name, options, words):
    with pytest.raises(ValueError, match=words):
        gvp_bench.get_strategy(name, **options)


def test_the_engine_records_the_budget_and_the_chunk_size_chosen():
    settings = runner.Settings(threads=1, min_run_time=0.001, max_run_time=0.01, timeout_s=60)
    chunked = runner.measure_cell(workloads.Workload("batch_jvp", "mlp", "tiny", "func_vmap", "cpu", "float32", 8),
                                  settings)
    assert chunked["status"] == "ok" and chunked["chunk_size"] == 8 and chunked["memory_budget_bytes"] > 0
    single = runner.measure_cell(workloads.Workload("jvp", "mlp", "tiny", "func_vmap", "cpu", "float32"), settings)
    assert single["chunk_size"] is None and single["memory_budget_bytes"] is None
