"""The engine survives any cell: a failed cell's state is put back in-process, and under ``--isolate`` a cell
that crashes its process is recorded while the run completes the others."""

import os
import resource

import pytest
import torch

import gvp_bench
from gvp_bench import cli, process_state
from gvp_bench.bench import runner, workloads
from gvp_bench.results import read

BRIEF = ["--quiet", "--threads", "1", "--min-run-time", "0.001", "--max-run-time", "0.01", "--device", "cpu",
         "--no-jax", "--suite", "quick", "--models", "mlp", "--ops", "jvp"]
SETTINGS = runner.Settings(threads=1, min_run_time=0.001, max_run_time=0.01, timeout_s=60)


class Aborting(gvp_bench.Strategy):
    """Aborts its process, as a crash inside a kernel would (no core file)."""

    def _abort(self, *args):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.abort()

    _jvp = _vjp = _batch_jvp = _batch_vjp = _full_jacobian = _abort


class LeavingHooksDisabled(gvp_bench.Strategy):
    """Answers, but its public jvp leaves saved-tensor hooks disabled after the contract's products (which put
    back what they leave), as code around a product can."""

    def jvp(self, func, params, v, create_graph=False):
        result = super().jvp(func, params, v, create_graph)
        torch._C._autograd._saved_tensors_hooks_disable("left disabled by a test strategy")
        return result

    def _jvp(self, func, params, tangents, create_graph):
        return gvp_bench.get_strategy("forward_dual")._jvp(func, params, tangents, create_graph)

    _vjp = _batch_jvp = _batch_vjp = _full_jacobian = _jvp


@pytest.fixture
def registered():
    names = []

    def register(name, factory):
        gvp_bench.register(name, factory)
        names.append(name)

    yield register
    for name in names:
        gvp_bench.unregister(name)


def test_a_cell_that_crashes_its_process_is_recorded_and_the_run_completes_the_others(tmp_path, registered):
    registered("aborting_for_test", Aborting)
    out = tmp_path / "run.jsonl"
    assert cli.main(["run", *BRIEF, "--isolate", "--strategies", "aborting_for_test,double_backward",
                     "--out", str(out)]) == 0
    rows = {row["strategy"]: row for row in read(out)[1]}
    assert rows["aborting_for_test"]["status"] == "error"
    assert "crashed: killed by SIGABRT" in rows["aborting_for_test"]["error"]
    assert rows["double_backward"]["status"] == "ok" and rows["double_backward"]["median_s"] > 0


def test_a_cell_that_leaves_the_state_changed_is_recorded_and_the_next_cell_runs_clean(registered):
    registered("leaving_hooks_disabled_for_test", LeavingHooksDisabled)
    before = process_state.snapshot()
    cell = workloads.Workload("jvp", "mlp", "tiny", "leaving_hooks_disabled_for_test", "cpu", "float32")
    row = runner.measure_cell(cell, SETTINGS)
    assert row["status"] == "error" and "saved_tensors_hooks_disabled" in row["error"]
    assert process_state.changed(before, process_state.snapshot()) == []
