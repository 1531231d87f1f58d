"""The registry: entry points, in-process registration, and plug-ins getting the same conformance."""

import sys
import textwrap
from importlib.metadata import entry_points

import pytest
import torch

import gvp_bench
from gvp_bench import registry
from gvp_bench.conformance import CASES, run_cell
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


def test_a_third_party_package_plugs_in_through_its_entry_point(tmp_path, monkeypatch, fresh_registry):
    """A package installed beside gvp-bench, declaring a strategy in its metadata only."""
    (tmp_path / "thirdparty_strategy.py").write_text(textwrap.dedent('''
        from implementations.func_vmap import FuncVmap

        class Plugged(FuncVmap):
            """A third party's strategy (func_vmap under another name)."""
            name = "plugged"
    '''))
    dist_info = tmp_path / "thirdparty_strategy-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-strategy\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[gvp_bench.strategies]\nplugged = thirdparty_strategy:Plugged\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plugged" in gvp_bench.strategies()
    for case in CASES[:3]:
        for function in case.functions:
            assert run_cell("plugged", case, function, torch.float64, "cpu").status == "pass"


def test_a_broken_plug_in_warns_and_the_others_still_load(tmp_path, monkeypatch, fresh_registry):
    dist_info = tmp_path / "broken_strategy-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-strategy\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[gvp_bench.strategies]\nbroken = no_such_module:Nothing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
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
