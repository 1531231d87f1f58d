"""gvp-bench targets: each target's ratio from the cells, its verdict, unmeasured when cells are missing."""

import numpy as np
import synthetic_results as synthetic

from gvp_bench import cli, targets
from gvp_bench.measurements import load_cells


def _rows(single_jvp=1e-3, batch=8e-3, reference=30e-3, auto=1.05e-3, forward=0.5e-3):
    rng = np.random.default_rng(0)

    def row(op, size, strategy, median, k=None, **extra):
        return dict(synthetic.ok_row(op, "mlp", size, strategy, median, rng=rng, noise=0.0, k=k, forward_s=forward),
                    **extra)

    return [row("model_jvp", "medium", "forward_dual", single_jvp), row("model_jvp", "medium", "func_vmap", 2e-3),
            row("model_jvp", "medium", "auto", auto, choice="forward_dual"),
            row("jvp", "medium", "forward_dual", single_jvp), row("batch_jvp", "medium", "func_vmap", batch, k=16),
            row("model_jvp", "medium-b4", "forward_dual", 1e-3), row("model_jvp", "medium-b4", "reference_loop", reference)]


def _outcomes(tmp_path, **figures):
    return {o.target: o for o in targets.check(load_cells([synthetic.write(tmp_path / "run.jsonl", _rows(**figures))]))}


def test_targets_are_ratios_of_the_best_cells(tmp_path):
    outcomes = _outcomes(tmp_path)
    assert outcomes["best model_jvp in forward passes"].value == 2.0
    assert outcomes["best model_jvp in forward passes"].verdict == "met"
    assert outcomes["16 tangents in one batch_jvp / 16 single jvp"].value == 0.5
    assert outcomes["reference_loop / best model_jvp"].value == 30.0
    assert abs(outcomes["auto / best, model_jvp mlp/medium"].value - 1.05) < 1e-9
    assert outcomes["auto / best, jvp mlp/medium"].verdict == "unmeasured"  # no auto cell for it
    assert outcomes["CUDA best jvp in forward passes, every zoo model/medium"].verdict == "unmeasured"


def test_a_missed_target_fails_the_command(tmp_path, capsys):
    path = synthetic.write(tmp_path / "run.jsonl", _rows(batch=12e-3, reference=10e-3))
    assert cli.main(["targets", str(path)]) == 1
    out = capsys.readouterr().out
    assert "2 MISSED of 8 targets" in out and "0.75x" in out and "10x" in out
