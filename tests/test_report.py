"""gvp-bench report: index.md, a self-contained index.html and PNG figures, every strategy shown,
the cells that did not run listed with why, several machines merged."""

import base64
import re

import pytest
import synthetic_results as synthetic

from gvp_bench import cli
from gvp_bench.measurements import latest, load_frame
from gvp_bench.report import tables


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One report of a synthetic run of two models, written by the command line."""
    folder = tmp_path_factory.mktemp("report")
    results = synthetic.write(folder / "run.jsonl", synthetic.cells(models=("cnn", "transformer")))
    out = folder / "report"
    assert cli.main(["report", str(results), "--out", str(out)]) == 0
    return out


def test_report_writes_markdown_html_and_figures(report):
    markdown = (report / "index.md").read_text()
    figures = re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", markdown)
    assert len(figures) >= 3
    assert {path.name for path in report.glob("*.png")} == set(figures)
    for name in figures:
        assert (report / name).read_bytes().startswith(b"\x89PNG")


def test_html_is_self_contained(report):
    page = (report / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == len(list(report.glob("*.png")))
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert base64.b64decode(images[0].split(",", 1)[1]).startswith(b"\x89PNG")
    assert not re.search(r"<script|<link|https?://", page)
    assert "<table" in page


def test_every_strategy_and_every_failure_is_shown(report):
    markdown = (report / "index.md").read_text()
    counts = markdown.split("## Cells per strategy and status")[1].split("##")[0]
    for strategy in synthetic.STRATEGIES:
        assert f"| {strategy}" in counts
    for status in ("UNSUPPORTED", "ERROR", "OOM", "TIMEOUT"):  # in the per-model tables, where the number would be
        assert status in markdown
    failures = markdown.split("## Cells that did not run")[1].split("##")[0]
    for reason in ("has no forward-mode AD formula", "over the 60 s budget", "out of memory", "vmap: inplace"):
        assert reason in failures


def test_winner_table_excludes_auto_and_gives_the_margin(tmp_path):
    rows = synthetic.cells(models=("transformer",))
    cells = latest(load_frame([synthetic.write(tmp_path / "run.jsonl", rows)]))
    winners = tables.winners(cells)
    assert "auto" not in set(winners.winner)
    jvp = winners[winners.op == "jvp"].iloc[0]  # only double_backward (and auto) run a JVP of the transformer
    assert jvp.winner == "double_backward" and jvp["runner-up"] == ""
    assert "forward_dual" in jvp["did not run"]
    vjp = winners[winners.op == "vjp"].iloc[0]
    assert vjp["runner-up / winner"].endswith("x") and float(vjp["runner-up / winner"][:-1]) >= 1


def test_machines_merge_with_the_device_naming_the_machine(tmp_path):
    rows = synthetic.cells(models=("cnn",))
    first = synthetic.write(tmp_path / "a.jsonl", rows)
    second = synthetic.write(tmp_path / "b.jsonl", rows, machine=dict(synthetic.MACHINE, cpu="Intel Xeon 8480+"))
    frame = load_frame([first, second])
    assert len(latest(frame)) == 2 * len(rows)  # the same cells on two machines are both kept
    environment = tables.environment(frame)
    assert environment.shape[1] == 2 and "Intel Xeon 8480+" in set(environment.loc["cpu"])
    from gvp_bench.report import _with_machine_in_device

    devices = set(_with_machine_in_device(latest(frame)).device)
    assert devices == {"cpu @ AMD EPYC 7763 64-Core Processor (2 cores)", "cpu @ Intel Xeon 8480+ (2 cores)"}


def test_runs_of_one_machine_with_different_threads_are_shown_apart_not_merged(tmp_path, capsys):
    rows = synthetic.cells(models=("cnn",))
    two = synthetic.write(tmp_path / "two.jsonl", rows)
    one = synthetic.write(tmp_path / "one.jsonl", rows, machine=dict(synthetic.MACHINE, threads=1))
    frame = load_frame([two, one])
    assert len(latest(frame)) == 2 * len(rows)
    assert set(frame.machine) == {"AMD EPYC 7763 64-Core Processor (2 cores), threads 1",
                                  "AMD EPYC 7763 64-Core Processor (2 cores), threads 2"}
    assert cli.main(["report", str(two), str(one), "--out", str(tmp_path / "report")]) == 0
    index = (tmp_path / "report" / "index.md").read_text()
    assert "(2 cores), threads 1" in index and "(2 cores), threads 2" in index
    assert set(load_frame([two]).machine) == {"AMD EPYC 7763 64-Core Processor (2 cores)"}  # one set-up: as before


def test_a_file_without_cells_is_an_error(tmp_path):
    empty = synthetic.write(tmp_path / "empty.jsonl", [])
    with pytest.raises(SystemExit, match="no measured cells to report"):
        cli.main(["report", str(empty), "--out", str(tmp_path / "report")])


def test_auto_scores_judge_the_strategy_auto_chose(tmp_path):
    """auto's choice is scored by the chosen strategy's own cell; auto's time by its own."""
    rng = synthetic.np.random.default_rng(0)
    rows = [synthetic.ok_row("jvp", "mlp", "tiny", "forward_dual", 1.0e-3, rng=rng, noise=0.0),
            synthetic.ok_row("jvp", "mlp", "tiny", "func_vmap", 1.5e-3, rng=rng, noise=0.0),
            dict(synthetic.ok_row("jvp", "mlp", "tiny", "auto", 1.05e-3, rng=rng, noise=0.0), choice="forward_dual"),
            synthetic.ok_row("vjp", "mlp", "tiny", "forward_dual", 1.0e-3, rng=rng, noise=0.0),
            synthetic.ok_row("vjp", "mlp", "tiny", "func_vmap", 1.5e-3, rng=rng, noise=0.0),
            dict(synthetic.ok_row("vjp", "mlp", "tiny", "auto", 1.6e-3, rng=rng, noise=0.0), choice="func_vmap")]
    cells = latest(load_frame([synthetic.write(tmp_path / "run.jsonl", rows)]))
    assert tables.auto_scores(cells) == (2, 1, 1)
    winners = tables.winners(cells).set_index("op")
    assert winners.loc["vjp", "auto chose"] == "func_vmap" and winners.loc["vjp", "choice / best"] == "1.5x"
    assert winners.loc["jvp", "auto chose"] == "forward_dual"


def test_a_winner_ahead_by_less_than_the_machines_drift_is_within_noise(tmp_path):
    """Tight samples 1.3x apart are noise when the same forward pass took 1.5x longer after one cell than after
    another; 2x apart they are not."""
    rng = synthetic.np.random.default_rng(0)
    rows = [dict(synthetic.ok_row(op, "mlp", "tiny", name, seconds, rng=rng, noise=0.01), forward_median_s=forward)
            for op, slower in (("jvp", 1.3), ("vjp", 2.0))
            for name, seconds, forward in (("forward_dual", 1e-3, 1e-4), ("func_vmap", slower * 1e-3, 1.5e-4))]
    cells = latest(load_frame([synthetic.write(tmp_path / "run.jsonl", rows)]))
    noise = tables.winners(cells).set_index("op").noise
    assert noise["jvp"] == "within noise" and noise["vjp"] == ""


def test_auto_is_scored_against_the_best_it_chooses_from_by_default(tmp_path):
    """A winner that compiles on its first call is named, with the fastest strategy that does not; auto, which
    leaves compiling strategies out unless configured to, is scored against that one unless it chose one."""
    rng = synthetic.np.random.default_rng(0)
    rows = [synthetic.ok_row(op, "mlp", "tiny", name, seconds, rng=rng, noise=0.0)
            for op in ("jvp", "vjp") for name, seconds in (("compiled", 0.5e-3), ("forward_dual", 1.0e-3))]
    rows += [dict(synthetic.ok_row("jvp", "mlp", "tiny", "auto", 1.05e-3, rng=rng, noise=0.0), choice="forward_dual"),
             dict(synthetic.ok_row("vjp", "mlp", "tiny", "auto", 0.52e-3, rng=rng, noise=0.0), choice="compiled")]
    cells = latest(load_frame([synthetic.write(tmp_path / "run.jsonl", rows)]))
    winners = tables.winners(cells).set_index("op")
    assert (winners.winner == "compiled").all()
    assert winners.loc["jvp", "fastest not compiling"] == "forward_dual (2x)"
    assert winners.loc["jvp", "auto / best"] == "1.05x" and winners.loc["jvp", "choice / best"] == "1x"
    assert winners.loc["vjp", "auto / best"] == "1.04x" and winners.loc["vjp", "choice / best"] == "1x"
    assert tables.auto_scores(cells) == (2, 2, 2)


def test_each_strategy_has_one_colour_in_every_figure():
    from gvp_bench import strategies
    from gvp_bench.bench import raw
    from gvp_bench.report import plots

    known = strategies() + ["jax.jit", "jax.jacfwd", "jax.jacrev"] + list(raw.STRATEGIES)
    colours = [plots.colour(name) for name in known]
    assert len(set(colours)) == len(colours), "two strategies share a colour"
    assert plots.colour("third_party") == plots.colour("third_party") in plots.SPARE_COLOURS
    assert plots._colours(["func_vmap", "auto"])["func_vmap"] == plots._colours(list(reversed(known)))["func_vmap"]


def test_the_overview_has_no_row_for_a_strategy_that_ran_nowhere(tmp_path):
    import pandas as pd
    from matplotlib.figure import Figure

    from gvp_bench.report import plots

    cells = load_frame([synthetic.write(tmp_path / "run.jsonl", synthetic.cells(models=("cnn",)))])
    jvp = cells[cells.op == "jvp"]
    never = jvp.assign(strategy="never_ran", status="unsupported")
    jvp = pd.concat([jvp, never], ignore_index=True)
    axis = Figure().subplots()
    plots._overview_axis(axis, jvp, tables.strategy_order(jvp), "jvp")
    rows = [label.get_text() for label in axis.get_yticklabels()]
    assert "never_ran" not in rows and set(rows) == set(jvp[jvp.status == "ok"].strategy)


def test_a_report_of_instruction_counts_only_says_compare_reads_them(tmp_path):
    rows = [dict(row, median_s=None, samples_s=None, instructions=1e6) for row in synthetic.cells(models=("cnn",))]
    counted = synthetic.write(tmp_path / "counted.jsonl", rows, machine=dict(synthetic.MACHINE, measure="instructions"))
    with pytest.raises(SystemExit, match="instruction counts only .*gvp-bench compare reads the counts"):
        cli.main(["report", str(counted), "--out", str(tmp_path / "report")])
