"""gvp-bench compare reads pytest-benchmark's JSON (suites/test_bench_pytest.py's benchmarks) as a run."""

import json

import numpy as np
import pytest

from gvp_bench import cli

CELLS = [dict(op=op, model="mlp", size="tiny", strategy=strategy, device="cpu", dtype="float32", k=None)
         for op in ("jvp", "vjp") for strategy in ("forward_dual", "double_backward", "func_vmap")]


def _benchmark_json(path, slower=None, factor=1.0, seed=0):
    """A pytest-benchmark JSON file shaped as ``--benchmark-json`` writes it, one benchmark per cell."""
    rng = np.random.default_rng(seed)
    benchmarks = []
    for cell in CELLS:
        data = (2e-4 * np.exp(rng.normal(0, 0.02, 20)) * (factor if cell == slower else 1.0)).tolist()
        q1, q3 = np.percentile(data, [25, 75])
        benchmarks.append(dict(
            group=f"quick {cell['op']} mlp/tiny cpu float32", name=f"test_product[quick-{cell['op']}-mlp-tiny]",
            extra_info=dict(cell, workarounds=[], peak_bytes=896, forward_median_s=1e-4,
                            forward_ratio=float(np.median(data)) / 1e-4),
            stats=dict(median=float(np.median(data)), iqr=float(q3 - q1), rounds=len(data), data=data)))
    report = dict(machine_info=dict(processor="x86_64", python_version="3.11.7", cpu=dict(brand_raw="AMD EPYC")),
                  commit_info=dict(id="0" * 40, dirty=False), benchmarks=benchmarks,
                  datetime="2026-12-01T15:00:00", version="5.1.0")
    path.write_text(json.dumps(report))
    return str(path)


def test_compare_reads_pytest_benchmark_json_and_names_the_slower_cell(tmp_path, capsys):
    base = _benchmark_json(tmp_path / "base.json", seed=1)
    assert cli.main(["compare", base, _benchmark_json(tmp_path / "same.json", seed=2)]) == 0
    assert "6 same of 6 cells." in capsys.readouterr().out
    slower = _benchmark_json(tmp_path / "slower.json", slower=CELLS[1], factor=1.5, seed=2)
    assert cli.main(["compare", base, slower]) == 1
    assert "1 regression(s):\n  jvp mlp/tiny cpu float32 double_backward: time 1.5" in capsys.readouterr().out


def test_a_pytest_benchmark_file_of_another_suite_is_refused_naming_the_benchmark(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps(dict(benchmarks=[dict(name="test_sort", extra_info={}, stats={})])))
    with pytest.raises(SystemExit, match="benchmark 'test_sort' has no cell fields in its extra_info"):
        cli.main(["compare", str(other), str(other)])
