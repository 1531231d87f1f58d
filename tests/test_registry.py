"""The registry: entry points, in-process registration, and plug-ins getting the same conformance."""

import pathlib
import sys
import textwrap
from importlib.metadata import entry_points

import pytest
import torch

import gvp_bench
from gvp_bench import registry
from gvp_bench.bench import runner, workloads
from gvp_bench.conformance import CASES, case_by_name, cells, pivot, run_cell, support_matrix
from implementations.func_vmap import FuncVmap


def test_built_in_strategies_join_through_the_entry_point_group():
    names = {ep.name for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert {"double_backward", "forward_dual", "func_vmap", "jacrev_chunked", "reference_loop",
            "autograd_functional", "auto"} <= names
    assert names <= set(gvp_bench.strategies())


def test_get_strategy_has_the_seven_functions():
    for name in gvp_bench.strategies():
        strategy = gvp_bench.get_strategy(name)
        for function in ("jvp", "vjp", "model_jvp", "model_vjp", "batch_jvp", "batch_vjp", "full_jacobian"):
            assert callable(getattr(strategy, function))
        assert strategy.name == name
        assert type(strategy).__doc__ or sys.modules[type(strategy).__module__].__doc__


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(registry, "_factories", {})
    monkeypatch.setattr(registry, "_default_instances", {})
    monkeypatch.setattr(registry, "_entry_points_loaded", False)


def _install(tmp_path, monkeypatch, package, entry_point, source=None):
    """A package installed beside gvp-bench in tmp_path: its module (when ``source`` is given) and a dist-info
    declaring ``entry_point`` ("name = module:Class") in the strategies group, on sys.path."""
    if source is not None:
        (tmp_path / f"{package}.py").write_text(textwrap.dedent(source))
    dist_info = tmp_path / f"{package}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package.replace('_', '-')}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{entry_point}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_third_party_package_plugs_in_through_its_entry_point(tmp_path, monkeypatch, fresh_registry):
    """A package installed beside gvp-bench, declaring a strategy in its metadata only."""
    _install(tmp_path, monkeypatch, "thirdparty_strategy", "plugged = thirdparty_strategy:Plugged", '''
        from implementations.func_vmap import FuncVmap

        class Plugged(FuncVmap):
            """A third party's strategy (func_vmap under another name)."""
            name = "plugged"
    ''')
    assert "plugged" in gvp_bench.strategies()
    for case in CASES[:3]:
        for function in case.functions:
            assert run_cell("plugged", case, function, torch.float64, "cpu").status == "pass"


def test_a_strategy_from_a_temporary_package_is_in_the_conformance_matrix_and_the_benchmark(
        tmp_path, monkeypatch, fresh_registry):
    """One file and its entry point: the strategy, with its own unsupported data, is checked by the conformance
    matrix (its declared refusals marked as such) and measured by the benchmark engine."""
    _install(tmp_path, monkeypatch, "one_file_strategy", "reverse_only = one_file_strategy:ReverseOnly", '''
        from gvp_bench.kit import Strategy, Unsupported, UnsupportedError, get_strategy

        class ReverseOnly(Strategy):
            """vᵀJ by another strategy's reverse mode; no J v."""
            unsupported = (Unsupported(("jvp", "model_jvp", "batch_jvp"), "reverse mode only", "no J v here"),)

            def _vjp(self, func, params, v, create_graph):
                return get_strategy("double_backward").implementation("vjp")(func, params, v, create_graph)

            def _batch_vjp(self, func, params, vs, create_graph):
                return get_strategy("double_backward").implementation("batch_vjp")(func, params, vs, create_graph)

            def _full_jacobian(self, func, params, create_graph):
                return get_strategy("double_backward").implementation("full_jacobian")(func, params, create_graph)

            def _jvp(self, func, params, tangents, create_graph):
                raise UnsupportedError(self.name, "reverse mode only")

            _batch_jvp = _jvp
    ''')
    assert "reverse_only" in gvp_bench.strategies()

    frame = support_matrix(cells(["reverse_only"], [case_by_name("vector_output")], ("float64",), ("cpu",)))
    marks = pivot(frame)["reverse_only"].droplevel(["device", "dtype", "case"])
    assert {function: marks[function] for function in ("jvp", "batch_jvp", "vjp", "batch_vjp", "full_jacobian")} == {
        "jvp": "unsupported", "batch_jvp": "unsupported", "vjp": "pass", "batch_vjp": "pass", "full_jacobian": "pass"}

    suite = workloads.get_suite("quick")
    measured = [w for w in workloads.expand(suite, models=["mlp"], ops=["vjp", "jvp"], strategy_names=["reverse_only"])
                if w.size == "tiny"]
    assert sorted((w.op, w.strategy) for w in measured) == [("jvp", "reverse_only"), ("vjp", "reverse_only")]
    assert "reverse_only" in {w.strategy for w in workloads.expand(suite, models=["mlp"], ops=["vjp"])}
    settings = runner.Settings(threads=1, min_run_time=0.001, max_run_time=0.01, timeout_s=60)
    rows = {w.op: runner.measure_cell(w, settings) for w in measured}
    assert rows["vjp"]["status"] == "ok" and rows["jvp"]["status"] == "unsupported"


def test_an_undeclared_refusal_is_marked_in_the_matrix(monkeypatch):
    """A strategy that refuses what it did not declare: the matrix marks the cell UNDECLARED."""
    monkeypatch.setattr(FuncVmap, "unsupported", ())
    broken = case_by_name("custom_function_backward_only")
    frame = support_matrix(cells(["func_vmap"], [broken], ("float64",), ("cpu",)))
    assert (pivot(frame)["func_vmap"] == "UNDECLARED").any()


def test_a_broken_plug_in_warns_and_the_others_still_load(tmp_path, monkeypatch, fresh_registry):
    _install(tmp_path, monkeypatch, "broken_strategy", "broken = no_such_module:Nothing")
    with pytest.warns(RuntimeWarning, match="broken"):
        names = gvp_bench.strategies()
    assert "broken" not in names and "func_vmap" in names


class _Wrong(FuncVmap):
    """J v off by a factor of two: the harness must catch it."""

    def _jvp(self, func, params, tangents, create_graph):
        return 2 * super()._jvp(func, params, tangents, create_graph)


def test_registered_strategy_is_checked_and_a_wrong_one_fails(monkeypatch):
    gvp_bench.register("wrong", _Wrong)
    try:
        assert "wrong" in gvp_bench.strategies()
        outcome = run_cell("wrong", CASES[0], "jvp", torch.float64, "cpu")
        assert outcome.status == "fail" and "not close" in outcome.detail
        assert run_cell("wrong", CASES[0], "vjp", torch.float64, "cpu").status == "fail"  # the adjoint identity
        with pytest.raises(ValueError, match="already registered"):
            gvp_bench.register("wrong", _Wrong)
    finally:
        gvp_bench.unregister("wrong")
    assert "wrong" not in gvp_bench.strategies()


def test_the_strategies_page_lists_what_each_built_in_strategy_declares_it_refuses():
    """docs/strategies.md holds the refusals table of the strategies this distribution's entry points declare."""
    from importlib.metadata import distribution

    from gvp_bench import support

    built_in = sorted(ep.name for ep in distribution("gvp-bench").entry_points if ep.group == registry.ENTRY_POINT_GROUP)
    table = support.refusals_table({name: gvp_bench.get_strategy(name) for name in built_in})
    page = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "strategies.md").read_text()
    assert table in page, "docs/strategies.md's refusals table is out of date: paste support.refusals_table's output"
