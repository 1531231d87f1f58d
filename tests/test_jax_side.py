"""JAX side by side: the JAX models compute what the torch zoo models compute, their products agree
with a gvp-bench strategy's on the same weights and vectors, gvp-bench run measures them as rows of
their own, and the report, recommend and auto show them without ever choosing one.

The tests that run JAX skip cleanly without it (``pip install -e ".[jax]"``); those on results
files (synthetic JAX rows) run everywhere. Tiny sizes only: each JAX product compiles once.
"""

import numpy as np
import pytest
import synthetic_results as synthetic
import torch

import gvp_bench
from gvp_bench import cli, jax_side, zoo
from gvp_bench.bench import workloads
from gvp_bench.measurements import load_cells
from gvp_bench.recommend import recommend
from gvp_bench.report import tables
from gvp_bench.results import read

requires_jax = pytest.mark.skipif(not jax_side.available(), reason="JAX is not installed (pip install -e '.[jax]')")
QUICK = workloads.SUITES["quick"]
JAX_CELLS = [(strategy, op) for strategy, ops in jax_side.STRATEGIES.items() for op in ops]


def _leaves(result):
    """The arrays of a torch or JAX result (a tensor, or a list of them), as numpy arrays."""
    if isinstance(result, (list, tuple)):
        return [leaf for item in result for leaf in _leaves(item)]
    return [result.numpy() if isinstance(result, torch.Tensor) else np.asarray(result)]


@requires_jax
@pytest.mark.parametrize("model", jax_side.MODELS)
def test_the_jax_model_computes_the_torch_model_with_its_weights(model):
    from gvp_bench.jax_side.models import convert

    entry = zoo.build(model, "tiny", dtype=torch.float64)
    jax_model = convert(entry, "cpu")
    with torch.no_grad():
        expected = entry.model(entry.x).numpy()
    (output,) = _leaves(jax_model.apply(jax_model.params, jax_model.x))
    assert output.dtype == expected.dtype and output.shape == expected.shape
    np.testing.assert_allclose(output, expected, rtol=1e-12, atol=1e-12)


@requires_jax
@pytest.mark.parametrize("strategy, op", JAX_CELLS)
@pytest.mark.parametrize("model", jax_side.MODELS)
def test_jax_products_agree_with_a_gvp_bench_strategy_on_the_same_vectors(model, strategy, op):
    k = 3 if op in workloads.BATCH_OPS else None
    jax_cell = workloads.prepare(workloads.Workload(op, model, "tiny", strategy, "cpu", "float64", k))
    torch_cell = workloads.prepare(workloads.Workload(op, model, "tiny", "func_vmap", "cpu", "float64", k))
    assert jax_cell.framework == "jax" and jax_cell.workarounds() == []
    got, expected = _leaves(jax_cell.product()), _leaves(torch_cell.product())
    if op.startswith("model_"):  # the forward pass included: the model's output first
        expected = _leaves(torch_cell.forward()) + expected
    assert [a.shape for a in got] == [e.shape for e in expected]
    for actual, wanted in zip(got, expected):
        np.testing.assert_allclose(actual, wanted, rtol=1e-10, atol=1e-12)


def test_every_jax_cell_has_a_product():
    pytest.importorskip("jax")
    from gvp_bench.jax_side.products import PRODUCTS

    assert set(PRODUCTS) == set(JAX_CELLS)


@requires_jax
def test_jax_cells_exist_only_for_the_models_ops_and_devices_jax_has():
    cells = workloads.expand(QUICK, devices=["cpu", "cuda"], jax=True)
    jax = {(c.strategy, c.op, c.model, c.device) for c in cells if workloads.framework(c.strategy) == "jax"}
    quick_models = {model for model, _ in QUICK.models} & set(jax_side.MODELS)
    devices = {"cpu", "cuda"} & set(jax_side.devices())
    assert jax == {(s, op, m, d) for s, op in JAX_CELLS for m in quick_models for d in devices}
    assert not any(workloads.framework(c.strategy) == "jax" for c in workloads.expand(QUICK))


def test_without_jax_no_jax_cell_is_made_and_asking_for_them_is_an_error(monkeypatch):
    monkeypatch.setattr(jax_side, "available", lambda: False)
    monkeypatch.setattr(jax_side, "devices", lambda: ())
    assert not any(workloads.framework(c.strategy) == "jax" for c in workloads.expand(QUICK, jax=True))
    with pytest.raises(SystemExit, match="--jax: JAX is not installed"):
        cli.main(["run", "--jax", "--models", "mlp"])


@requires_jax
def test_no_jax_turns_the_jax_rows_off():
    with pytest.raises(SystemExit, match="unknown strategy 'jax.jit'"):
        cli.main(["run", "--no-jax", "--strategies", "jax.jit"])


@requires_jax
def test_a_run_measures_jax_rows_with_the_compilation_apart(tmp_path):
    path = tmp_path / "run.jsonl"
    assert cli.main(["run", "--quiet", "--threads", "1", "--min-run-time", "0.001", "--max-run-time", "0.01",
                     "--models", "scalar5", "--ops", "model_jvp,full_jacobian",
                     "--strategies", "forward_dual,jax.jit,jax.jacrev", "--out", str(path)]) == 0
    rows = {(row["op"], row["strategy"]): row for row in read(path)[1]}
    assert set(rows) == {("model_jvp", "forward_dual"), ("model_jvp", "jax.jit"), ("full_jacobian", "forward_dual"),
                         ("full_jacobian", "jax.jacrev")}
    for (op, strategy), row in rows.items():
        assert row["status"] == "ok" and row["first_call_s"] > 0 and row["forward_median_s"] > 0
        assert row["framework"] == ("jax" if strategy.startswith("jax") else "torch")
        assert row["forward_ratio"] == pytest.approx(row["median_s"] / row["forward_median_s"])
        assert (row["peak_bytes"] is None) == (row["framework"] == "jax")


# Results with JAX rows: shown next to the strategies, never chosen among them.

@pytest.fixture
def jax_fastest(tmp_path):
    """A run of the mlp where a JAX row is ten times faster than every PyTorch strategy."""
    rng = np.random.default_rng(0)
    rows = []
    for op, k, jax_strategy in (("jvp", None, "jax.jit"), ("full_jacobian", None, "jax.jacrev")):
        for strategy, median in (("forward_dual", 1e-3), ("func_vmap", 2e-3), ("auto", 1.1e-3), (jax_strategy, 1e-4)):
            jax = strategy.startswith("jax")
            row = synthetic.ok_row(op, "mlp", "small", strategy, median, rng=rng, noise=0.0, k=k,
                                   forward_s=1e-4 if jax else 5e-4)
            if jax:
                row.update(framework="jax", peak_bytes=None, first_call_s=0.2)
            rows.append(row)
    return synthetic.write(tmp_path / "run.jsonl", rows)


def test_recommend_shows_jax_rows_but_never_recommends_them(jax_fastest, capsys):
    assert cli.main(["recommend", "--op", "jvp", "--model", "mlp", "--device", "cpu",
                     "--results", str(jax_fastest)]) == 0
    out = capsys.readouterr().out
    assert "Use forward_dual" in out
    ranking = [line.split()[:2] for line in out.splitlines() if line.split()[:1] in (["1"], ["2"], ["-"])]
    assert ranking == [["1", "forward_dual"], ["2", "func_vmap"], ["-", "auto"], ["-", "jax.jit"]]
    assert "JAX side by side (not a PyTorch strategy): jax.jit takes " in out and "0.1x the time of forward_dual" in out
    assert list(recommend(load_cells([jax_fastest]), "jvp", "mlp").ranked.strategy) == ["forward_dual", "func_vmap"]


def test_auto_never_chooses_a_jax_row(jax_fastest, tmp_path, monkeypatch):
    from gvp_bench.autotune import measured
    from gvp_bench.bench.machine import cpu_model

    rows = read(jax_fastest)[1]
    machine = dict(synthetic.MACHINE, cpu=cpu_model(), torch=torch.__version__)
    mine = synthetic.write(tmp_path / "mine.jsonl", [dict(row, parameters=5, outputs=5) for row in rows],
                           machine=machine)
    monkeypatch.setattr(measured, "SHIPPED", tmp_path / "no-shipped-results")
    gvp_bench.configure_auto(mode="results", results=[mine])
    try:
        x = torch.randn(5, requires_grad=True)
        gvp_bench.jvp(lambda: torch.sin(x), [x], torch.ones(5))
        auto = gvp_bench.get_strategy("auto")
        assert auto.last_choice == "forward_dual" and "jax" not in auto.last_reason
    finally:
        gvp_bench.configure_auto()


def test_the_report_shows_jax_rows_as_their_own_and_never_as_the_winner(jax_fastest, tmp_path):
    out = tmp_path / "report"
    assert cli.main(["report", str(jax_fastest), "--out", str(out)]) == 0
    markdown = (out / "index.md").read_text()
    winners = markdown.split("## Winners")[1].split("##")[0]
    assert "| forward_dual" in winners and "0.1x (jax.jit)" in winners and "0.1x (jax.jacrev)" in winners
    assert "auto's own time, its choosing and dispatch included, was within 15% of the best's in 2 of 2" in winners
    side = markdown.split("## JAX side by side")[1].split("##")[0]
    assert "| jax.jit " in side and "| jax.jacrev " in side and "| 10x " in side and "200 ms" in side
    counts = markdown.split("## Cells per strategy and status")[1].split("##")[0]
    assert counts.index("| auto") < counts.index("| jax.jacrev") < counts.index("| jax.jit")


def test_results_without_jax_rows_have_no_jax_column_or_section(tmp_path):
    cells = load_cells([synthetic.write(tmp_path / "run.jsonl", synthetic.cells(models=("mlp",)))])
    assert "JAX / winner" not in tables.winners(cells) and not len(tables.jax_side_by_side(cells))
