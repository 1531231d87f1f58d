"""gvp-bench compare: regressions beyond the threshold and the noise are caught and named, honest
runs of the same code pass, status changes and one-sided cells are shown."""

import numpy as np
import pytest
import synthetic_results as synthetic

from gvp_bench import cli, stats
from gvp_bench.compare import compare_files

SLOW_CELL = dict(op="batch_jvp", model="mlp", size="small", strategy="func_vmap", k=16)


def _compare(tmp_path, base_rows, new_rows, capsys, *options):
    tmp_path.mkdir(exist_ok=True)
    base = synthetic.write(tmp_path / "base.jsonl", base_rows)
    new = synthetic.write(tmp_path / "new.jsonl", new_rows)
    status = cli.main(["compare", str(base), str(new), *options])
    return status, capsys.readouterr().out


def _compare_runs(tmp_path, base_runs, new_runs, capsys, *options):
    """compare of two folders, each holding one results file per run (repeated runs of one side)."""
    for side, runs in (("base", base_runs), ("new", new_runs)):
        (tmp_path / side).mkdir(parents=True)
        for index, rows in enumerate(runs):
            synthetic.write(tmp_path / side / f"run{index}.jsonl", rows)
    status = cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "new"), *options])
    return status, capsys.readouterr().out


def _noisy_runs(seeds, cell_noise=0.12):
    return [synthetic.cells(seed=seed, cell_noise=cell_noise, models=("mlp",)) for seed in seeds]


def _last_lines(output):
    return output[output.rindex(" cells.\n"):]


def test_one_cell_one_and_a_half_times_slower_fails_naming_it(tmp_path, capsys):
    rows = synthetic.cells(seed=0, models=("mlp",))
    status, out = _compare(tmp_path, rows, synthetic.slower(rows, 1.5, **SLOW_CELL), capsys)
    assert status == 1
    assert "1 regression(s):\n  batch_jvp mlp/small k=16 cpu float32 func_vmap: time 1.5x vs machine" in out


@pytest.mark.parametrize("cell_noise, drift", [(0.0, 1.0), (0.12, 1.0), (0.12, 1.25)])
def test_honest_runs_pass(tmp_path, capsys, cell_noise, drift):
    """Two runs of the same code: the same noisy distribution, then load that shifts each cell
    between runs, then also a machine 25% slower for the whole second run."""
    base = synthetic.cells(seed=1, cell_noise=cell_noise, models=("mlp",))
    new = synthetic.cells(seed=2, cell_noise=cell_noise, drift=drift, models=("mlp",))
    status, out = _compare(tmp_path, base, new, capsys)
    assert status == 0, out
    assert "No regression." in out


@pytest.mark.parametrize("cell_noise, factor", [(0.05, 1.5), (0.12, 2.0)])
def test_a_regression_is_caught_in_noisy_runs_repeated_three_times(tmp_path, capsys, cell_noise, factor):
    """Cells shifted by load between runs (5%, 12%): three runs per side, the cell slower in every NEW run."""
    new = [synthetic.slower(rows, factor, **SLOW_CELL) for rows in _noisy_runs([2, 4, 6], cell_noise)]
    status, out = _compare_runs(tmp_path, _noisy_runs([1, 3, 5], cell_noise), new, capsys, "--only-changed")
    assert status == 1, out
    assert "Runs per side: 3" in out
    assert "1 regression(s):\n  batch_jvp mlp/small k=16 cpu float32 func_vmap: time" in _last_lines(out)


def test_one_run_slower_for_a_whole_process_is_not_a_regression(tmp_path, capsys):
    """What honest runs on a shared machine do now and then: one cell 1.8x slower for a whole run, its samples
    tight. One run per side: the heavy-tailed floor holds it; three per side: the other NEW runs vouch for it."""
    base, new = _noisy_runs([1, 3, 5], cell_noise=0.03), _noisy_runs([2, 4, 6], cell_noise=0.03)
    new[0] = synthetic.slower(new[0], 1.8, **SLOW_CELL)
    status, out = _compare(tmp_path / "single", base[0], new[0], capsys)
    assert status == 0, out
    assert "Runs per side: 1" in out
    status, out = _compare_runs(tmp_path / "repeated", base, new, capsys)
    assert status == 0, out


def test_drift_of_the_machine_is_not_a_regression_but_code_slower_everywhere_is(tmp_path, capsys):
    rows = synthetic.cells(seed=0, models=("mlp",))
    loaded = synthetic.cells(seed=0, drift=1.3, models=("mlp",))  # forward passes 1.3x too: the machine
    assert _compare(tmp_path, rows, loaded, capsys)[0] == 0
    (tmp_path / "base.jsonl").unlink(), (tmp_path / "new.jsonl").unlink()
    slower = synthetic.slower(rows, 1.3)  # every product 1.3x, the forward passes as before: the code
    assert _compare(tmp_path, rows, slower, capsys)[0] == 1


def test_load_that_its_own_forward_pass_saw_is_not_a_regression(tmp_path, capsys):
    """A cell 3x slower with its forward pass, timed right after it, 3x slower too: a burst of load."""
    rows = synthetic.cells(seed=0, models=("mlp",))
    burst = [dict(row, forward_median_s=row["forward_median_s"] * 3) if all(
        row.get(name) == value for name, value in SLOW_CELL.items()) else row for row in synthetic.slower(
        rows, 3.0, **SLOW_CELL)]
    status, out = _compare(tmp_path, rows, burst, capsys)
    assert status == 0
    assert "within noise  batch_jvp mlp/small k=16 cpu float32 func_vmap" in out


def test_status_changes_and_one_sided_cells(tmp_path, capsys):
    rows = synthetic.cells(seed=0, models=("transformer",))
    new = [dict(row) for row in rows[1:]]  # the first cell only in BASE
    broken = next(row for row in new if row["strategy"] == "forward_dual" and row["op"] == "vjp")
    broken.update(status="error", error="RuntimeError: boom", samples_s=None, median_s=None)
    fixed = next(row for row in new if row["status"] == "unsupported")
    fixed.update(synthetic.ok_row(fixed["op"], "transformer", "small", fixed["strategy"], 0.01,
                                  rng=np.random.default_rng(0), k=fixed["k"]))
    status, out = _compare(tmp_path, rows, new, capsys)
    assert status == 2  # a BASE cell missing and one failing: NEW does not vouch for every BASE cell
    assert "Not comparable: 2 BASE cell(s) missing or failing in NEW: " in out
    assert "vjp transformer/small cpu float32 forward_dual (error)" in out
    status, out = _compare(tmp_path / "allowed", rows, new, capsys, "--allow-missing")
    assert status == 1
    assert "vjp transformer/small cpu float32 forward_dual: broken: ok -> error (RuntimeError: boom)" in out
    assert "fixed: unsupported -> ok" in out and "only in BASE" in out
    assert _last_lines(out).count("\n  ") == 1  # the one regression: neither the fix nor the missing cell


@pytest.mark.parametrize("cell_noise, regression", [(0.0, True), (0.12, False)])
def test_a_cell_that_timed_out_is_a_regression_only_in_quiet_runs(tmp_path, capsys, cell_noise, regression):
    base = synthetic.cells(seed=1, cell_noise=cell_noise, models=("mlp",))
    new = synthetic.cells(seed=1 if not cell_noise else 2, cell_noise=cell_noise, models=("mlp",))
    cell = next(row for row in new if all(row.get(name) == value for name, value in SLOW_CELL.items()))
    cell.update(status="timeout", error="over the time limit of 60 s per cell", samples_s=None, median_s=None)
    status, out = _compare(tmp_path, base, new, capsys)
    assert status == int(regression)
    if regression:
        assert "batch_jvp mlp/small k=16 cpu float32 func_vmap: timed out (over the time limit of 60 s" in out
    else:
        assert "timed out (within noise)  batch_jvp mlp/small k=16 cpu float32 func_vmap" in out


def test_memory_regression(tmp_path, capsys):
    rows = synthetic.cells(seed=0, models=("mlp",))
    new = [dict(row, peak_bytes=row["peak_bytes"] * 2) if row.get("strategy") == "jacrev_chunked"
           and row["op"] == "jvp" and row["size"] == "small" else row for row in rows]
    status, out = _compare(tmp_path, rows, new, capsys)
    assert status == 1
    assert "jvp mlp/small cpu float32 jacrev_chunked: memory 2x" in out


def test_threshold_and_markdown_output(tmp_path, capsys):
    rows = synthetic.cells(seed=0, models=("mlp",))
    status, out = _compare(tmp_path, rows, synthetic.slower(rows, 1.5, **SLOW_CELL), capsys,
                           "--threshold", "0.6", "--format", "markdown")
    assert status == 0 and "| verdict" in out
    assert "| same      | batch_jvp mlp/small k=16 cpu float32 func_vmap" in out  # 1.5x is within a 60% threshold


def test_noise_floor_is_reported(tmp_path):
    base = synthetic.write(tmp_path / "base.jsonl", synthetic.cells(seed=1, cell_noise=0.12, models=("mlp",)))
    new = synthetic.write(tmp_path / "new.jsonl", synthetic.cells(seed=2, cell_noise=0.12, models=("mlp",)))
    comparison = compare_files([base], [new])
    for noise in (comparison.machine, comparison.forward):
        assert 0.1 < noise.spread < 0.3  # two runs of sigma 0.12: about 0.17
        assert comparison.limit(noise) == noise.floor > 0.10


def test_mann_whitney():
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(0, 0.2, 20), rng.lognormal(0, 0.2, 20)
    assert stats.mann_whitney_greater(a, b) > 0.05
    assert stats.mann_whitney_greater(a, b * 1.5) < 0.001
    assert stats.mann_whitney_greater(a * 1.5, b) > 0.99
    assert stats.mann_whitney_greater([1.0, 1.0], [1.0, 1.0]) == 1.0
    # against the exact distribution: 4 samples above 4 others has p = 1 / C(8, 4) = 0.014
    assert stats.mann_whitney_greater([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(0.014, abs=0.01)


def test_can_show():
    tight = np.random.default_rng(0).lognormal(0, 0.05, 10)
    assert stats.can_show(tight, 1.5) and stats.can_show(tight, 1 / 1.5)
    assert not stats.can_show(tight, 1.01)
    assert not stats.can_show(tight[:3], 10)  # 3 against 3: p is 0.05 at best
    assert not stats.can_show([0.7, 0.6, 0.68, 95, 103], 1.5)


def test_robust_spread_ignores_a_minority_of_outliers():
    values = np.random.default_rng(0).normal(0, 0.1, 200)
    values[:20] = 5
    assert stats.robust_spread(values) == pytest.approx(0.1, rel=0.25)


def test_a_cell_with_too_few_samples_for_the_test_is_judged_on_the_limit(tmp_path, capsys):
    rows = synthetic.cells(seed=0, models=("mlp",))
    for row in rows:
        if all(row.get(name) == value for name, value in SLOW_CELL.items()):
            row.update(samples_s=row["samples_s"][:2], runs=2)
    status, out = _compare(tmp_path, rows, synthetic.slower(rows, 1.5, **SLOW_CELL), capsys)
    assert status == 1
    assert "batch_jvp mlp/small k=16 cpu float32 func_vmap: time 1.5x vs machine, 1.5x vs forward (samples too few " \
           "or scattered to test)" in out


def test_a_cell_scattered_by_bursts_of_load_is_judged_on_the_limit(tmp_path, capsys):
    """Samples as a loaded machine gives them: a few calls 100x slower. The test cannot show 1.5x there."""
    rows = synthetic.cells(seed=0, models=("mlp",))
    for row in rows:
        if all(row.get(name) == value for name, value in SLOW_CELL.items()):
            row.update(samples_s=[0.7e-3, 0.6e-3, 0.68e-3, 95e-3, 103e-3], median_s=0.7e-3, runs=5)
    status, out = _compare(tmp_path, rows, synthetic.slower(rows, 1.5, **SLOW_CELL), capsys)
    assert status == 1
    assert "func_vmap: time 1.5x vs machine, 1.5x vs forward (samples too few or scattered to test)" in out


def test_runs_of_another_set_up_are_warned_about(tmp_path, capsys):
    rows = synthetic.cells(seed=0, models=("mlp",))
    base = synthetic.write(tmp_path / "base.jsonl", rows)
    new = synthetic.write(tmp_path / "new.jsonl", rows, machine=dict(synthetic.MACHINE, threads=1, git_commit="1" * 40))
    assert cli.main(["compare", str(base), str(new)]) == 0
    assert "warning: the runs differ in more than the code (threads 2 vs 1)" in capsys.readouterr().out
    assert cli.main(["compare", str(base), str(new), "--strict"]) == 2
    assert "Not comparable: the runs differ in set-up (threads 2 vs 1) and --strict is on" in capsys.readouterr().out


def test_runs_with_no_cell_in_common_are_not_comparable(tmp_path, capsys):
    status, out = _compare(tmp_path, synthetic.cells(seed=0, models=("mlp",)),
                           synthetic.cells(seed=0, models=("cnn",)), capsys, "--allow-missing")
    assert status == 2
    assert "Not comparable: no cell ran in both runs" in out


def _counted(rows, seed, spread=1e-4):
    """``rows`` as a --measure instructions run writes them: counts per call instead of times and peaks."""
    rng = np.random.default_rng(seed)
    counted = []
    for row in rows:
        row = {name: value for name, value in row.items()
               if name not in ("samples_s", "median_s", "iqr_s", "runs", "peak_bytes", "forward_median_s")}
        if row["status"] == "ok":
            count = 1e7 * row["forward_ratio"]
            row.update(instructions_samples=(count * (1 + rng.normal(0, spread, 3))).tolist(), instructions=count,
                       forward_instructions=1e7)
        counted.append(row)
    return counted


def test_instruction_counts_honest_runs_pass_and_one_percent_more_fails(tmp_path, capsys):
    rows = synthetic.cells(seed=0, models=("mlp",))
    machine = dict(synthetic.MACHINE, measure="instructions", threads=1)
    base = synthetic.write(tmp_path / "base.jsonl", _counted(rows, 1), machine=machine)
    new = synthetic.write(tmp_path / "new.jsonl", _counted(rows, 2), machine=machine)
    assert cli.main(["compare", str(base), str(new)]) == 0
    assert "No regression." in capsys.readouterr().out
    raised = [dict(row, instructions=row["instructions"] * 1.02) if all(
        row.get(name) == value for name, value in SLOW_CELL.items()) else row for row in _counted(rows, 2)]
    new = synthetic.write(tmp_path / "raised.jsonl", raised, machine=machine)
    assert cli.main(["compare", str(base), str(new)]) == 1
    out = capsys.readouterr().out
    assert "1 regression(s):\n  batch_jvp mlp/small k=16 cpu float32 func_vmap: instructions 1.02x" in out
    assert cli.main(["compare", str(base), str(new), "--instructions-threshold", "0.05"]) == 0


def test_a_changed_auto_choice_is_shown_and_judged_like_any_cell(tmp_path, capsys):
    rows = synthetic.cells(seed=0, models=("mlp",))
    base = [dict(row, choice="forward_dual") if row.get("strategy") == "auto" else row for row in rows]
    new = [dict(row, choice="func_vmap") if row.get("strategy") == "auto" and row["op"] == "jvp"
           and row["size"] == "small" else row for row in base]
    status, out = _compare(tmp_path / "changed", base, new, capsys)
    assert status == 0 and "chose func_vmap (was forward_dual)" in out
    slower = synthetic.slower(new, 1.5, op="jvp", model="mlp", size="small", strategy="auto", k=None)
    status, out = _compare(tmp_path / "slower", base, slower, capsys)
    assert status == 1 and "jvp mlp/small cpu float32 auto: time 1.5x vs machine" in out


def test_tail_quantiles_in_robust_standard_deviations():
    """Student's t with 3 degrees of freedom: 0.999-quantile 10.215, 0.75-quantile 0.7649 (tables); a logistic's
    median absolute deviation is its scale x ln 3."""
    assert stats.student_t3_quantile(0.999) * 1.4826 * 0.764892328 == pytest.approx(10.2145, abs=1e-3)
    assert stats.student_t3_quantile(0.75) * 1.4826 == pytest.approx(1.0, abs=1e-6)
    assert stats.logistic_quantile(0.75) * 1.4826 == pytest.approx(1.0, abs=1e-6)
