"""A cell's time budget: a cell that cannot be measured within it is recorded ``skipped`` with the reason,
the run goes on, and report, compare and recommend show skipped cells without judging them; the scaling
suite and its figure. No timing is
asserted: the strategies here sleep for many times the budgets they are given."""

import signal
import time

import pytest
from synthetic_results import cells, scaling_cells, write

import gvp_bench
from gvp_bench import cli, zoo
from gvp_bench.bench import budget, runner, workloads
from gvp_bench.compare import compare_files, render
from gvp_bench.measurements import load_cells
from gvp_bench.recommend import recommend
from gvp_bench.recommend import render as render_recommendation
from gvp_bench.report import plots, tables, write_report
from gvp_bench.results import read

BRIEF = ["run", "--quiet", "--threads", "1", "--min-run-time", "0.001", "--max-run-time", "0.01"]


class _Sleeping(gvp_bench.Strategy):
    """Every product sleeps: ``first`` seconds on its first call, ``later`` on each call after it; the first
    call sets up (as a compiling strategy's does) where ``costly_first_call``."""

    def __init__(self, first, later, costly_first_call):
        self.sleeps = [first]
        self.later = later
        self.costly_first_call = costly_first_call

    def _jvp(self, func, params, tangents, create_graph):
        time.sleep(self.sleeps.pop() if self.sleeps else self.later)
        return func()

    _vjp = _batch_jvp = _batch_vjp = _full_jacobian = _jvp


SLEEPING = {"test_hopeless": (5.0, 5.0, False), "test_slow": (0.3, 5.0, False), "test_sets_up": (0.3, 0.0, False),
            "test_compiles": (0.6, 0.0, True)}


@pytest.fixture
def sleeping_strategies():
    for name, behaviour in SLEEPING.items():
        gvp_bench.register(name, lambda behaviour=behaviour: _Sleeping(*behaviour))
    yield
    for name in SLEEPING:
        gvp_bench.unregister(name)


def _measure(workload, seconds):
    settings = runner.Settings(threads=1, min_run_time=0.001, max_run_time=0.01, timeout_s=60, budget_s=seconds)
    return runner.measure_cell(workload, settings)


def test_a_cell_over_its_budget_is_skipped_with_the_reason_and_the_run_goes_on(tmp_path, sleeping_strategies):
    path = tmp_path / "run.jsonl"
    order = "test_hopeless,test_slow,test_sets_up,test_compiles,double_backward"
    assert cli.main([*BRIEF, "--models", "scalar5", "--ops", "jvp", "--strategies", order, "--budget", "0.4",
                     "--out", str(path)]) == 0
    rows = {row["strategy"]: row for row in read(path)[1]}
    assert {name: row["status"] for name, row in rows.items()} == {
        "test_hopeless": "skipped", "test_slow": "skipped", "test_sets_up": "ok", "test_compiles": "ok",
        "double_backward": "ok"}
    # the first call ran into the alarm of the whole budget: no time of it
    assert rows["test_hopeless"]["error"] == "its first call did not end within the cell budget of 0.4 s"
    assert rows["test_hopeless"]["first_call_s"] is None
    # the first call fits the budget, but a second one (which sets up nothing) cannot be measured 4 times in it
    assert rows["test_slow"]["error"].startswith("one call takes more than 100 ms (its first took 3")
    assert "4 calls at the least, past the cell budget of 0.4 s" in rows["test_slow"]["error"]
    assert rows["test_slow"]["first_call_s"] >= 0.3 and rows["test_slow"]["median_s"] is None
    # a long first call that sets up what later calls reuse: the second call decides, and it fits
    assert rows["test_sets_up"]["first_call_s"] >= 0.3 and rows["test_sets_up"]["median_s"] < 0.1
    # a first call that compiles is bound by the cell's time limit only, not by its budget
    assert rows["test_compiles"]["first_call_s"] >= 0.6 and rows["test_compiles"]["median_s"] < 0.1


def test_a_hopeless_cell_is_skipped_by_counting_before_any_call():
    workload = workloads.Workload("full_jacobian", "mlp", "tiny", "forward_dual", "cpu", "float32")
    row = _measure(workload, 1e-5)  # one forward pass per parameter: 155 of them cannot take 2.5 µs
    assert row["status"] == "skipped" and row["first_call_s"] is None
    assert "by counting (155 passes one after another, each at least a forward pass of" in row["error"]
    budget.Budget(None).check_counted(workloads.prepare(workload), 155, 12)  # no budget: no check


def test_counting_knows_the_loops_of_the_built_in_strategies():
    parameters, outputs, k = 1000, 10, 8
    assert budget.sequential_passes("forward_dual", "full_jacobian", parameters, outputs, None) == parameters
    assert budget.sequential_passes("forward_dual", "batch_jvp", parameters, outputs, k) == k
    assert budget.sequential_passes("reference_loop", "jvp", parameters, outputs, None) == outputs
    assert budget.sequential_passes("reference_loop", "batch_jvp", parameters, outputs, k) == k * outputs
    assert budget.sequential_passes("reference_loop", "vjp", parameters, outputs, None) == 1
    assert budget.sequential_passes("func_vmap", "full_jacobian", parameters, outputs, None) == 1  # vmapped


def test_an_inner_time_limit_acts_and_the_outer_one_runs_on_after_it():
    class Inner(BaseException):
        pass

    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(runner.CellTimeout), runner.time_limit(0.3):
        with pytest.raises(Inner), runner.time_limit(0.05, Inner):
            time.sleep(5)
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] < 0.3  # the outer limit is armed again
        time.sleep(5)
    with pytest.raises(runner.CellTimeout), runner.time_limit(0.05):
        with runner.time_limit(5, Inner):  # the outer limit ends sooner: it alone acts
            time.sleep(5)
    assert signal.getsignal(signal.SIGALRM) is before and signal.getitimer(signal.ITIMER_REAL)[0] == 0


def _skipped(rows, **key):
    """``rows`` with the cells matching ``key`` skipped."""
    changed = []
    for row in rows:
        if all(row.get(name) == value for name, value in key.items()):
            row = {**{name: row[name] for name in ("op", "model", "size", "strategy", "device", "dtype", "k")},
                   "status": "skipped", "threads": 2, "error": "one call takes 2.1 s: measuring it takes 4 calls at "
                                                              "the least, past the cell budget of 3 s"}
        changed.append(row)
    return changed


def test_compare_shows_a_skipped_cell_as_neither_a_regression_nor_a_win(tmp_path, capsys):
    rows = cells(seed=1, models=("mlp",))
    base = write(tmp_path / "base.jsonl", rows)
    new = write(tmp_path / "new.jsonl", _skipped(cells(seed=2, models=("mlp",)), strategy="reference_loop"))
    comparison = compare_files([base], [new])
    skipped = comparison.table[comparison.table.strategy == "reference_loop"]
    assert set(skipped.verdict) == {"ok -> skipped"} and not skipped.regressed.any()
    back = compare_files([new], [base])
    assert set(back.table[back.table.strategy == "reference_loop"].verdict) == {"skipped -> ok"}
    assert not len(back.regressions)
    assert "No regression." in render(comparison)
    assert cli.main(["compare", str(base), str(new)]) == 0


def test_report_and_recommend_show_skipped_cells_with_their_reason(tmp_path):
    path = write(tmp_path / "run.jsonl", _skipped(cells(seed=3, models=("mlp",)), strategy="reference_loop",
                                                  op="full_jacobian"))
    measured = load_cells([path])
    assert tables.status_counts(measured).loc["reference_loop", "skipped"] == 2  # tiny and small
    failures = tables.failures(measured)
    assert set(failures.status) == {"skipped"} and failures.error.str.contains("past the cell budget").all()
    small = measured[measured["size"] == "small"]
    assert tables.times(small).loc["full_jacobian", "reference_loop"] == "SKIPPED"
    assert "reference_loop" in tables.winners(small).set_index("op").loc["full_jacobian", "did not run"]
    recommendation = recommend(load_cells([path]), "full_jacobian", "mlp", size="small")
    table = recommendation.cells.set_index("strategy")
    assert table.status["reference_loop"] == "skipped"
    assert "reference_loop" not in set(recommendation.ranked.strategy)
    assert "past the cell budget" in render_recommendation(recommendation)


def test_the_scaling_suite_runs_the_three_models_over_every_size_with_a_budget():
    suite = workloads.get_suite("scaling")
    assert suite.models == tuple((model, size) for model in ("mlp", "cnn", "transformer") for size in zoo.SIZES)
    assert suite.ops == workloads.OPS and suite.budget_s
    cells = workloads.expand(suite, ops=["jvp"], strategy_names=["forward_dual"])
    assert [(cell.model, cell.size) for cell in cells] == list(suite.models)


def test_the_report_draws_cost_and_memory_against_the_parameters(tmp_path):
    path = write(tmp_path / "scaling.jsonl", scaling_cells(), suite="scaling")
    measured = load_cells([path])
    figure = plots.scaling(measured, tables.strategy_order(measured), str(tmp_path))
    assert figure.file == "scaling-mlp-cpu-float32.png" and (tmp_path / figure.file).stat().st_size > 10_000
    assert "against the parameter count" in figure.caption
    assert plots.scaling(measured[measured["size"] == "tiny"], ["forward_dual"], str(tmp_path)) is None  # one size
    few = [row for row in scaling_cells(ops=("jvp",)) if row["strategy"] in ("forward_dual", "func_vmap")]
    index = write_report([write(tmp_path / "few.jsonl", few, suite="scaling")], tmp_path / "report")
    assert "](scaling-mlp-cpu-float32.png)" in open(index, encoding="utf-8").read()  # in gvp-bench report
