"""Your own workload: gvp_bench.Workload from a file, a module or an entry point, through run, conformance,
recommend and gvp_bench.benchmark; the one-line errors of a bad --workload; dict params; gvp_bench.testing."""

import importlib.metadata
import re
import textwrap

import pytest
import torch

import gvp_bench
from gvp_bench import cli, workload_specs
from gvp_bench.errors import UnsupportedError
from gvp_bench.results import CELL_FIELDS, load
from gvp_bench.testing import assert_strategies_agree, check_conformance
from implementations.reference_loop import ReferenceLoop

MODEL_FILE = textwrap.dedent("""
    import torch
    from torch import nn


    class TinyConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 2, 3, padding=1)
            self.norm = nn.LayerNorm(4)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(nn.functional.gelu(self.norm(self.conv(x))).flatten(1))


    def tiny_conv():
        torch.manual_seed(0)
        return TinyConv().eval(), torch.randn(2, 2, 4)


    def tiny_closure():
        w = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        return (lambda: torch.tanh(w @ torch.ones(2, dtype=torch.float64))), [w]


    def not_a_workload():
        return 3


    NOT_CALLABLE = 3
""")
FAST = ["--min-run-time", "0.001", "--max-run-time", "0.002", "--quiet"]
TWO = "func_vmap,forward_dual"


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "user_models.py"
    path.write_text(MODEL_FILE)
    return path


@pytest.fixture
def model_module(tmp_path, monkeypatch):
    """The model file importable as the module ``gvp_user_models`` (a name no other test uses)."""
    (tmp_path / "gvp_user_models.py").write_text(MODEL_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "gvp_user_models"


def test_run_measures_a_workload_from_a_file_outside_the_repository(model_file, tmp_path):
    out = tmp_path / "results.jsonl"
    code = cli.main(["run", "--workload", f"{model_file}:tiny_conv", "--ops", "jvp,model_vjp,batch_jvp",
                     "--strategies", TWO, "--k", "2", "--device", "cpu", "--out", str(out), *FAST])
    assert code == 0
    rows = load(out)
    assert list(rows.columns[:len(CELL_FIELDS)]) == list(CELL_FIELDS)
    assert set(rows.model) == {"tiny_conv"} and set(rows["size"]) == {"user"} and set(rows.suite) == {"workload"}
    assert sorted(set(rows.op)) == ["batch_jvp", "jvp", "model_vjp"] and set(rows.strategy) == set(TWO.split(","))
    assert (rows.status == "ok").all() and (rows.forward_ratio > 0).all()
    assert set(rows.k.dropna()) == {2} and set(rows.parameters) == {2 * 2 * 3 + 2 + 4 + 4 + 8 * 2 + 2}


def test_a_workload_file_imports_the_modules_beside_it(tmp_path):
    (tmp_path / "gvp_sibling_helper.py").write_text("WIDTH = 3\n")
    (tmp_path / "uses_sibling.py").write_text(textwrap.dedent("""
        import torch
        from gvp_sibling_helper import WIDTH

        def model():
            return torch.nn.Linear(WIDTH, 2), torch.ones(1, WIDTH)
    """))
    assert workload_specs.load(f"{tmp_path / 'uses_sibling.py'}:model").parameter_count == 3 * 2 + 2


def test_a_workload_from_a_module_path_is_checked_by_conformance(model_module, capsys):
    workload = workload_specs.load(f"{model_module}:tiny_conv")
    assert workload.name == "tiny_conv" and workload.model is not None
    code = cli.main(["conformance", "--workload", f"{model_module}:tiny_conv", "--strategies", TWO,
                     "--dtypes", "float64", "--devices", "cpu", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0 and "14 pass, 0 fail, 0 unsupported of 14 cells" in printed and "tiny_conv" in printed


def test_conformance_of_a_workload_reports_why_a_strategy_cannot(model_module, capsys):
    code = cli.main(["conformance", "--workload", f"{model_module}:tiny_conv", "--strategies", "linearize",
                     "--dtypes", "float64", "--devices", "cpu", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0 and "linearize / tiny_conv (batch_vjp, model_vjp, vjp in float64): " in printed


def test_an_installed_workload_is_recommended_on_measured_on_the_spot(model_module, monkeypatch, capsys):
    installed = [importlib.metadata.EntryPoint("tinyzoo", f"{model_module}:tiny_conv", workload_specs.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(workload_specs, "entry_points", lambda group: installed if group == "gvp_bench.workloads" else [])
    code = cli.main(["recommend", "--workload", "tinyzoo", "--op", "jvp", "--strategies", TWO, "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == 0 and "jvp on tinyzoo" in printed and "Use " in printed


def test_the_zoo_lists_installed_workloads(model_module, monkeypatch, capsys):
    installed = [importlib.metadata.EntryPoint("tinyzoo", f"{model_module}:tiny_conv", workload_specs.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(workload_specs, "entry_points", lambda group: installed if group == "gvp_bench.workloads" else [])
    assert cli.main(["zoo", "--models", "mlp,tinyzoo", "--sizes", "tiny"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"tinyzoo\s+user\s+40\s+4\s", printed) and f"installed workload ({model_module}:tiny_conv)" in printed


def test_recommend_reads_a_workloads_results_when_given(model_file, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    spec = f"{model_file}:tiny_conv"
    cli.main(["run", "--workload", spec, "--ops", "vjp", "--strategies", TWO, "--device", "cpu", "--out", str(out),
              *FAST])
    capsys.readouterr()
    assert cli.main(["recommend", "--workload", spec, "--op", "vjp", "--results", str(out)]) == 0
    assert "Measured workload: vjp tiny_conv/user cpu float32" in capsys.readouterr().out


@pytest.mark.parametrize("spec, expected", [
    ("{file}:missing", "has no function 'missing'"),
    ("{file}:NOT_CALLABLE", "NOT_CALLABLE is a int, not a function"),
    ("{file}:not_a_workload", "expected (model, x), (func, params) or a gvp_bench.Workload, got int"),
    ("{dir}/absent.py:tiny_conv", "no such file"),
    ("gvp_no_such_module:tiny_conv", "no module named 'gvp_no_such_module'"),
    ("gvp_no_such_workload", "installed workloads:"),
])
def test_a_bad_workload_is_one_line_naming_the_argument_with_exit_status_2(model_file, spec, expected, capsys):
    spec = spec.format(file=model_file, dir=model_file.parent)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["run", "--workload", spec, "--quiet"])
    printed = capsys.readouterr().err
    ours = [line for line in printed.splitlines() if line.startswith("gvp-bench")]  # not torch's own log lines
    assert stopped.value.code == 2 and "Traceback" not in printed and len(ours) == 1
    assert ours[0].startswith("gvp-bench: --workload: ") and expected in ours[0]


def test_benchmark_from_python_returns_the_results_and_can_keep_the_file(tmp_path):
    w = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    params = {"w": w}
    frame = gvp_bench.benchmark(lambda: torch.tanh(params["w"]).sum(0), params, name="mine", ops=["vjp", "jvp"],
                                strategies=["func_vmap"], min_run_time=0.001, max_run_time=0.002,
                                out=tmp_path / "mine.jsonl")
    assert list(frame.columns[:len(CELL_FIELDS)]) == list(CELL_FIELDS)
    assert set(frame.model) == {"mine"} and set(frame.dtype) == {"float64"} and (frame.status == "ok").all()
    assert len(load(tmp_path / "mine.jsonl")) == 2


def test_a_closure_is_measured_in_its_own_dtype_only(model_file):
    workload = workload_specs.load(f"{model_file}:tiny_closure")
    assert workload.ops == ("jvp", "vjp", "batch_jvp", "batch_vjp", "full_jacobian")
    with pytest.raises(ValueError, match="--dtype float32: workload 'tiny_closure' is a closure over float64"):
        gvp_bench.benchmark(workload, dtype="float32")
    with pytest.raises(ValueError, match="--ops model_jvp: workload 'tiny_closure' is a closure"):
        gvp_bench.benchmark(workload, ops=["model_jvp"])


def test_a_closure_workload_passes_conformance_against_float64_copies_of_its_params():
    w = torch.randn(3, 2, requires_grad=True)
    x = torch.randn(2)
    frame = check_conformance(lambda: torch.sin(w @ x.to(w)), [w], strategies=["func_vmap", "double_backward"])
    assert (frame.status == "pass").all() and set(frame.dtype) == {"float32"} and len(frame) == 10
    assert w.dtype == torch.float32


def test_a_closure_that_cannot_compute_in_float64_is_refused_not_failed():
    w, x = torch.randn(3, 2, requires_grad=True), torch.randn(2)
    with pytest.raises(ValueError, match="workload 'closure': its closure fails when its params are float64"):
        check_conformance(lambda: w @ x, [w], strategies=["func_vmap"])
    with pytest.raises(ValueError, match="its closure returns torch.float32 when its params are float64"):
        check_conformance(lambda: (w @ x.double()).float(), [w], strategies=["func_vmap"])


# dict params, as torch.func users pass them: the same results as a list, keyed the same way

def _dict_problem():
    generator = torch.Generator().manual_seed(0)
    params = {"weight": torch.randn(3, 2, generator=generator, dtype=torch.float64, requires_grad=True),
              "bias": torch.randn(3, generator=generator, dtype=torch.float64, requires_grad=True)}
    x = torch.randn(4, 2, generator=generator, dtype=torch.float64)
    return (lambda: torch.tanh(x @ params["weight"].T + params["bias"])), params, generator


@pytest.mark.parametrize("strategy", sorted(set(gvp_bench.strategies()) - {"compiled"}))
def test_dict_params_give_results_keyed_like_them(strategy):
    # compiled: the same contract code path, at seconds of compilation per product (tests/test_compiled.py)
    func, params, generator = _dict_problem()
    as_list = list(params.values())
    v = {name: torch.randn(p.shape, generator=generator, dtype=torch.float64) for name, p in params.items()}
    vs = {name: torch.randn((2,) + p.shape, generator=generator, dtype=torch.float64) for name, p in params.items()}
    u, us = torch.randn(4, 3, generator=generator, dtype=torch.float64), torch.randn(2, 4, 3, generator=generator, dtype=torch.float64)
    calls = {"jvp": ((v,), (list(v.values()),)), "batch_jvp": ((vs,), (list(vs.values()),)),
             "vjp": ((u,), (u,)), "batch_vjp": ((us,), (us,)), "full_jacobian": ((), ())}
    ran = 0
    for op, (keyed_args, list_args) in calls.items():
        function = getattr(gvp_bench, op)
        try:
            expected = function(func, as_list, *list_args, strategy="reference_loop")
            result = function(func, params, *keyed_args, strategy=strategy)
        except UnsupportedError:
            continue
        ran += 1
        if isinstance(expected, torch.Tensor):
            torch.testing.assert_close(result, expected)
        else:
            assert isinstance(result, dict) and list(result) == ["weight", "bias"]
            for got, want in zip(result.values(), expected):
                torch.testing.assert_close(got, want)
    assert ran >= 2 or strategy == "cuda_graphs"


def test_dict_params_errors_name_the_key():
    func, params, _ = _dict_problem()
    with pytest.raises(ValueError, match=r"v\['bias'\] must have shape \(3,\), got \(2,\)"):
        gvp_bench.jvp(func, params, {"weight": torch.zeros(3, 2, dtype=torch.float64),
                                     "bias": torch.zeros(2, dtype=torch.float64)}, strategy="func_vmap")
    with pytest.raises(ValueError, match=r"v must have the keys of params; missing \['bias'\]"):
        gvp_bench.jvp(func, params, {"weight": torch.zeros(3, 2, dtype=torch.float64)}, strategy="forward_dual")
    with pytest.raises(TypeError, match=r"params\['n'\] must be a floating-point tensor"):
        gvp_bench.vjp(func, {**params, "n": torch.ones(2, dtype=torch.long)}, torch.zeros(4, 3), strategy="func_vmap")
    with pytest.raises(TypeError, match="v is a dict, but params is not"):
        gvp_bench.jvp(func, list(params.values()), {"weight": None}, strategy="func_vmap")


# gvp_bench.testing on a deliberately wrong strategy

class OffByOnePercent(ReferenceLoop):
    """The reference loop with J v scaled by 1.01: every check must catch it."""

    name = "off_by_one_percent"

    def _jvp(self, func, params, tangents, create_graph):
        return super()._jvp(func, params, tangents, create_graph) * 1.01


def test_assert_strategies_agree_passes_right_strategies_and_catches_a_wrong_one():
    func, params, _ = _dict_problem()
    outcomes = assert_strategies_agree(func, params, strategies=["func_vmap", "linearize"])
    assert outcomes["func_vmap", "vjp"] == "pass" and outcomes["linearize", "vjp"].startswith("unsupported: ")
    with pytest.raises(AssertionError, match="off_by_one_percent jvp: AssertionError"):
        assert_strategies_agree(func, params, strategies=[OffByOnePercent()], ops=["jvp", "vjp"])
    with pytest.raises(AssertionError, match="linearize vjp: unsupported"):
        assert_strategies_agree(func, params, strategies=["linearize"], ops=["vjp"], allow_unsupported=False)


def test_check_conformance_catches_a_wrong_strategy(model_file):
    gvp_bench.register("off_by_one_percent", OffByOnePercent)
    try:
        workload = workload_specs.load(f"{model_file}:tiny_conv")
        model, x = workload.model, workload.x
        with pytest.raises(AssertionError, match="off_by_one_percent model_jvp float64 cpu: fail"):
            check_conformance(model, x, strategies=["off_by_one_percent"], dtypes=["float64"], devices=["cpu"])
        assert (check_conformance(model, x, strategies=["reference_loop"], dtypes=["float64"]).status == "pass").all()
    finally:
        gvp_bench.unregister("off_by_one_percent")
