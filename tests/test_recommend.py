"""gvp-bench recommend: ranks the strategies of a workload, never answers from another device or size, falls
back to the nearest measured k or dtype and says which, gives the expected time and memory, says when the top two
are within noise, and leads with a compiling strategy only when allowed."""

import re

import numpy as np
import pytest
import synthetic_results as synthetic

from gvp_bench import cli
from gvp_bench.measurements import load_cells
from gvp_bench.recommend import recommend


def _workload(rng, times, noise=0.02, **fields):
    """One workload: strategy -> median time, with peak memory 1 MiB x its rank."""
    fields = dict(dict(op="jvp", model="mlp", size="small"), **fields)
    return [synthetic.ok_row(fields["op"], fields["model"], fields["size"], strategy, median, rng=rng, noise=noise,
                             peak_bytes=2 ** 20 * (i + 1), **{k: v for k, v in fields.items()
                                                               if k not in ("op", "model", "size")})
            for i, (strategy, median) in enumerate(times.items())]


@pytest.fixture
def results(tmp_path):
    rng = np.random.default_rng(0)
    rows = (_workload(rng, {"forward_dual": 1e-3, "func_vmap": 2e-3, "reference_loop": 9e-3, "auto": 1.1e-3})
            + _workload(rng, {"forward_dual": 3e-3, "double_backward": 3.05e-3}, noise=0.2, size="medium")
            + _workload(rng, {"func_vmap": 4e-3, "forward_dual": 6e-3}, op="batch_jvp", k=8)
            + _workload(rng, {"func_vmap": 9e-3, "forward_dual": 8e-3}, op="batch_jvp", k=32))
    rows.append(dict(op="jvp", model="mlp", size="small", strategy="jacrev_chunked", device="cpu", dtype="float32",
                     k=None, status="unsupported", error="no forward-mode AD formula for aten::foo"))
    return synthetic.write(tmp_path / "run.jsonl", rows)


def test_ranks_by_time_with_auto_aside_and_failures_listed(results, capsys):
    assert cli.main(["recommend", "--op", "jvp", "--model", "mlp", "--size", "small", "--device", "cpu",
                     "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "Measured workload: jvp mlp/small cpu float32" in out
    assert "Use forward_dual: expect " in out and " per call" in out and "1 MiB peak memory" in out
    ranking = [line.split()[:2] for line in out.splitlines() if line.split()[:1] in (["1"], ["2"], ["3"], ["-"])]
    assert ranking == [["1", "forward_dual"], ["2", "func_vmap"], ["3", "reference_loop"], ["-", "auto"],
                       ["-", "jacrev_chunked"]]
    assert "no forward-mode AD formula for aten::foo" in out
    assert "beyond noise" in out


def test_top_two_within_noise(results):
    cells = load_cells([results])
    chosen = recommend(cells, "jvp", "mlp", size="medium")
    assert chosen.within_noise
    assert not recommend(cells, "jvp", "mlp", size="small").within_noise


def _drifted(tmp_path, slower):
    """A workload whose cells saw the machine's speed move 1.5x (the forward pass timed after each), the
    runner-up ``slower`` than the best with tight samples: only the drift can say that is noise."""
    rng = np.random.default_rng(0)
    rows = _workload(rng, {"forward_dual": 1e-3, "double_backward": slower * 1e-3, "func_vmap": 5e-3}, noise=0.01)
    for row, forward in zip(rows, (1e-4, 1.5e-4, 1.2e-4)):
        row.update(forward_median_s=forward, forward_ratio=row["median_s"] / forward)
    return synthetic.write(tmp_path / "drifted.jsonl", rows)


@pytest.mark.parametrize("slower, noise", [(1.3, True), (2.0, False)])
def test_a_gap_within_the_machines_drift_is_within_noise(tmp_path, capsys, slower, noise):
    results = _drifted(tmp_path, slower)
    assert recommend(load_cells([results]), "jvp", "mlp", size="small").within_noise is noise
    assert cli.main(["recommend", "--op", "jvp", "--model", "mlp", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    drift = "1.5x: the same forward pass took 100 µs to 150 µs after this workload's cells"
    assert (f"are within noise of each other (1.3x; no more than the machine's drift during the run, {drift})"
            if noise else f"is 2x slower, beyond noise and the machine's drift during the run ({drift}).") in out


def test_nearest_k_is_said(results, capsys):
    assert cli.main(["recommend", "--op", "batch_jvp", "--model", "mlp", "--size", "small", "--k", "16",
                     "--device", "cpu", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    # the same distance in k from 8 and 32 (a factor 2): the larger k, where the choice matters more
    assert ("No exact measurement; using the nearest measured workload, batch_jvp mlp/small k=32 cpu float32"
            in out)
    assert "k 32 instead of 16" in out
    assert "Use forward_dual" in out


@pytest.mark.parametrize("arguments,words", [
    (["--device", "cuda"], "no measurement of batch_jvp on mlp on cuda: measured on cpu only"),
    (["--size", "large", "--device", "cpu"],
     "no measurement of batch_jvp on mlp at size large on cpu: measured at small only"),
    (["--size", "huge", "--device", "cpu"], "--size: unknown size 'huge'; valid: tiny, small, medium, large"),
    (["--dtype", "float16", "--device", "cpu"], "--dtype: unknown dtype 'float16'; valid: float32, float64"),
    (["--device", "tpu"], "--device: unknown device 'tpu'; valid: cpu, cuda"),
])
def test_no_answer_from_another_device_or_size_and_unknown_values_are_refused(results, arguments, words):
    with pytest.raises(SystemExit, match=re.escape(f"gvp-bench: {words}")):
        cli.main(["recommend", "--op", "batch_jvp", "--model", "mlp", "--results", str(results), *arguments])


def test_the_size_defaults_to_the_largest_measured(results):
    cells = load_cells([results])
    assert recommend(cells, "jvp", "mlp", device="cpu").used["size"] == "medium"


def test_nearest_k(results):
    cells = load_cells([results])
    assert recommend(cells, "batch_jvp", "mlp", k=4).used["k"] == 8
    assert recommend(cells, "batch_jvp", "mlp").used["k"] == 32  # no k asked: the largest


def test_unmeasured_model_is_an_error_naming_what_was_measured(results):
    with pytest.raises(SystemExit, match="no measurement of jvp on resnet; .*models measured for jvp: mlp"):
        cli.main(["recommend", "--op", "jvp", "--model", "resnet", "--results", str(results)])


def test_a_compiling_winner_leads_only_when_allowed_with_its_first_call_and_when_it_pays_off(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [dict(row, first_call_s=first) for row, first in
            zip(_workload(rng, {"compiled": 1e-3, "forward_dual": 2e-3}, noise=0.0), (2.001, 0.001))]
    path = str(synthetic.write(tmp_path / "run.jsonl", rows))
    assert cli.main(["recommend", "--op", "jvp", "--model", "mlp", "--device", "cpu", "--results", path]) == 0
    out = capsys.readouterr().out
    assert "Use forward_dual:" in out
    assert ("Compiling is faster: compiled takes 1 ms per call (0.5x the time of forward_dual), but its first call "
            "in that run took 2 s (where it compiles, unless an earlier cell had compiled the same graph); it pays "
            "for that after about 2,000 calls in one process. Pass --allow-compile to lead with it.") in out
    assert cli.main(["recommend", "--op", "jvp", "--model", "mlp", "--device", "cpu", "--results", path,
                     "--allow-compile"]) == 0
    out = capsys.readouterr().out
    assert "Use compiled:" in out
    assert ("compiled: its first call in that run took 2 s (where it compiles, unless an earlier cell had compiled "
            "the same graph); against forward_dual, the fastest that does not compile (2 ms per call), it pays for "
            "it after about 2,000 calls in one process.") in out
