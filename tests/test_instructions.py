"""gvp-bench run --measure instructions (gvp_bench.bench.callgrind) without valgrind's minutes: the
relaunch under callgrind, the counting protocol against dump files written as callgrind writes them,
and thread CPU time next to every timed sample."""

import json
import os
import subprocess

import pytest
import torch

from gvp_bench import cli
from gvp_bench.bench import callgrind, measure, runner, workloads


def test_a_run_is_relaunched_once_under_callgrind_with_its_options(monkeypatch, tmp_path):
    launched = []

    def fake_run(command, env):
        launched.append((command, env))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(callgrind.shutil, "which", lambda name: "/usr/bin/valgrind")
    monkeypatch.setattr(callgrind.subprocess, "run", fake_run)
    out = str(tmp_path / "counts.jsonl")
    assert cli.main(["run", "--measure", "instructions", "--models", "mlp", "--ops", "jvp", "--out", out]) == 0
    (command, env), = launched
    assert command[:3] == ["valgrind", "--tool=callgrind", "--collect-atstart=no"]
    assert command[-2:] == ["-m", "gvp_bench.bench.callgrind"]
    options = json.loads(env["GVP_BENCH_CALLGRIND_ARGS"])
    assert options["measure"] == "instructions" and options["models"] == ["mlp"] and options["out"] == out
    assert "run" not in options  # the function is found again by the process under callgrind


def test_instructions_are_for_the_cpu_and_need_valgrind(monkeypatch):
    with pytest.raises(SystemExit, match="--measure instructions: counts are for the CPU only"):
        cli.main(["run", "--measure", "instructions", "--device", "cuda"])
    monkeypatch.setattr(callgrind.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="valgrind is not installed here"):
        cli.main(["run", "--measure", "instructions", "--models", "mlp"])
    with pytest.raises(callgrind.CallgrindError, match="only under callgrind"):
        callgrind.count(lambda: None)


def test_each_counted_block_is_read_from_its_dump_per_call(monkeypatch, tmp_path):
    """Outside valgrind the toggles do nothing: stand in for callgrind by writing each dump as it
    would (``summary:`` line, then deleted once read) with a count that grows per call."""
    calls, dumps = [], []
    monkeypatch.setenv("GVP_BENCH_CALLGRIND_DUMPS", str(tmp_path))

    def dump():
        dumps.append(len(calls))
        (tmp_path / f"callgrind.out.{os.getpid()}.{len(dumps)}").write_text(
            f"version: 1\nevents: Ir\nsummary: {1000 * len(calls) + len(dumps)}\ntotals: 0\n")

    monkeypatch.setattr(torch._C, "_valgrind_toggle_and_dump_stats", dump)
    counts = callgrind.count(lambda: calls.append(1))
    assert len(calls) == callgrind.WARMUP_CALLS + callgrind.CALLS * callgrind.REPEATS
    # the dump after n calls in all, the k-th: summary 1000 n + k, over CALLS calls
    assert counts == [(1000 * n + k) / callgrind.CALLS for k, n in enumerate(dumps, start=1)]
    assert not list(tmp_path.iterdir())


def test_every_timed_sample_has_its_thread_cpu_time():
    timing = measure.time_call(lambda: sum(range(2000)), device="cpu", threads=1, min_run_time=0.001,
                               max_run_time=0.05)
    assert len(timing.cpu_samples_s) == len(timing.samples_s) >= 1
    assert all(seconds > 0 for seconds in timing.cpu_samples_s)


def test_a_timed_row_keeps_thread_cpu_time_next_to_each_wall_time_sample():
    cell = workloads.Workload("jvp", "mlp", "tiny", "forward_dual", "cpu", "float32")
    row = runner.measure_cell(cell, runner.Settings(threads=1, min_run_time=0.001, max_run_time=0.01, timeout_s=60))
    assert row["status"] == "ok" and len(row["thread_cpu_samples_s"]) == len(row["samples_s"]) == row["runs"]
    assert min(row["thread_cpu_samples_s"]) <= row["thread_cpu_median_s"] <= max(row["thread_cpu_samples_s"])


def test_a_file_of_one_measure_is_not_resumed_with_the_other(tmp_path, monkeypatch):
    out = tmp_path / "timed.jsonl"
    selection = ["--models", "scalar5", "--ops", "jvp", "--strategies", "forward_dual", "--no-jax", "--quiet",
                 "--threads", "1", "--min-run-time", "0.001", "--max-run-time", "0.01", "--out", str(out)]
    assert cli.main(["run", *selection]) == 0
    monkeypatch.setenv("GVP_BENCH_CALLGRIND_DUMPS", str(tmp_path))  # as if under callgrind: no relaunch
    with pytest.raises(SystemExit, match="holds measure 'time', not 'instructions'; resume it with --measure time"):
        cli.main(["run", *selection, "--resume", "--measure", "instructions"])
