"""pytest-benchmark's JSON (``--benchmark-json``) read as a gvp-bench run, so that ``gvp-bench compare``
(and report) take it next to results files.

``suites/test_bench_pytest.py`` stores each cell's fields (op, model, size, strategy, device,
dtype, k) in a benchmark's ``extra_info``, with its peak memory and forward pass; pytest-benchmark's
statistics give the median, the IQR, the rounds and the per-call samples (``stats.data``). Its
machine and commit information become the header's fingerprint. A benchmark without the cell's
fields (another suite's) cannot be matched to a cell: the file is refused, naming it. Skipped
cells (unsupported products) are not in the file.
"""

import json
import os

from .results import CELL_KEY, ResultsError


def is_pytest_benchmark(path):
    """Whether ``path`` names a pytest-benchmark JSON file (``.json``; results files are ``.jsonl``)."""
    return os.fspath(path).endswith(".json")


def _fingerprint(report):
    machine, commit = report.get("machine_info") or {}, report.get("commit_info") or {}
    cpu = machine.get("cpu") or {}
    return dict(cpu=cpu.get("brand_raw") or machine.get("processor"), cpu_cores=cpu.get("count"),
                python=machine.get("python_version"), platform=machine.get("release"),
                git_commit=commit.get("id"), git_dirty=commit.get("dirty"), date=report.get("datetime"),
                measure="time")


def _row(benchmark, measured_at):
    extra, stats = benchmark.get("extra_info") or {}, benchmark.get("stats") or {}
    return dict({name: extra.get(name) for name in CELL_KEY}, record="cell", status="ok",
                median_s=stats.get("median"), iqr_s=stats.get("iqr"), runs=stats.get("rounds"),
                samples_s=stats.get("data"), peak_bytes=extra.get("peak_bytes"),
                forward_median_s=extra.get("forward_median_s"), forward_ratio=extra.get("forward_ratio"),
                workarounds=extra.get("workarounds"), measured_at=measured_at)


def read(path):
    """The header and cell rows of a pytest-benchmark JSON file, as :func:`gvp_bench.results.read` gives them."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as stream:
            report = json.load(stream)
    except OSError as error:
        raise ResultsError(f"{path}: cannot read the pytest-benchmark file: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ResultsError(f"{path}: not a pytest-benchmark JSON file (not JSON)") from None
    if not isinstance(report, dict) or not isinstance(report.get("benchmarks"), list):
        raise ResultsError(f"{path}: not a pytest-benchmark JSON file (no benchmarks list)")
    unmatched = [b.get("name") for b in report["benchmarks"] if "op" not in (b.get("extra_info") or {})]
    if unmatched:
        raise ResultsError(f"{path}: benchmark {unmatched[0]!r} has no cell fields in its extra_info (only "
                           "suites/test_bench_pytest.py's benchmarks can be compared)")
    header = dict(record="header", run_id=f"pytest-benchmark {report.get('datetime')}", suite="pytest-benchmark",
                  machine=_fingerprint(report))
    return header, [_row(benchmark, report.get("datetime")) for benchmark in report["benchmarks"]], []
