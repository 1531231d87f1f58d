"""Measured auto: the choice per workload signature, results lookup, calibration, memory budget, opt-out.

No timing assertions: where a test needs a known winner it replaces calibration by a fake.
"""

import importlib
import warnings

import pytest
import torch

import gvp_bench
from gvp_bench import cli, memory, zoo
from gvp_bench.autotune import candidates, measured
from gvp_bench.autotune.calibration import Calibration, calibrate
from gvp_bench.signature import Workload, signature
from gvp_bench.conformance import case_by_name, run_cell
from gvp_bench.conformance.cases import CubeBackwardOnly
from gvp_bench.results import ResultsWriter, new_header, read
from gvp_bench.workarounds import WorkaroundWarning

auto_module = importlib.import_module("gvp_bench.implementations.auto")
AUTO = gvp_bench.get_strategy("auto")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def no_shipped_results(monkeypatch, tmp_path):
    """Each test starts from auto's defaults and sees only the results files it writes; afterwards
    auto is as the environment sets it (conftest: the rule)."""
    for variable in ("GVP_BENCH_AUTO", "GVP_BENCH_RESULTS", "GVP_BENCH_AUTO_MEMORY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(measured, "SHIPPED", tmp_path / "no-shipped-results")
    yield
    monkeypatch.undo()  # the environment back first: configure_auto reads it
    gvp_bench.configure_auto()


@pytest.fixture
def calibrations(monkeypatch):
    """The calibrations auto runs: (candidate names, outcome) for each."""
    seen = []

    def recording(strategies, *args):
        outcome = calibrate(strategies, *args)
        seen.append((list(strategies), outcome))
        return outcome

    monkeypatch.setattr(auto_module, "calibrate", recording)
    return seen


def winning(monkeypatch, name):
    """Make calibration name ``name`` the fastest without timing anything."""
    monkeypatch.setattr(auto_module, "calibrate", lambda strategies, *args: Calibration(times={name: 1e-3}))


def sine_of(x):
    return lambda: torch.sin(x) * 2


def write_results(path, rows, machine=None):
    machine = machine or {**measured.this_machine(CPU), "torch": torch.__version__, "cpu_cores": 2}
    with ResultsWriter(path, new_header(machine, "test")) as writer:
        for row in rows:
            writer.write(dict(dict(op="jvp", model="m", size="small", device="cpu", dtype="float32", k=None,
                                   status="ok"), **row))
    return path


def measured_row(strategy, median_s, parameters=5, outputs=5, **fields):
    return dict(strategy=strategy, median_s=median_s, parameters=parameters, outputs=outputs, **fields)


# The choice per signature.

def test_the_second_call_with_a_signature_does_not_calibrate(calibrations):
    gvp_bench.configure_auto(mode="calibrate")
    x = torch.randn(5, requires_grad=True)
    gvp_bench.jvp(sine_of(x), [x], torch.ones(5))
    assert len(calibrations) == 1 and AUTO.last_reason.startswith("calibrated: ")
    reason = AUTO.last_reason
    gvp_bench.jvp(sine_of(torch.randn(5, requires_grad=True)), [x], torch.randn(5))  # a new closure, same code
    assert len(calibrations) == 1 and AUTO.last_reason == reason
    y = torch.randn(7, requires_grad=True)
    gvp_bench.jvp(sine_of(y), [y], torch.ones(7))  # other shapes
    gvp_bench.vjp(sine_of(x), [x], torch.ones(5))  # another product
    gvp_bench.jvp(sine_of(x), [x], torch.ones(5), create_graph=True)
    assert len(calibrations) == 4


def test_signature_tells_models_and_inputs_apart():
    def jvp_signature(model, x):
        params = tuple(model.parameters())
        return signature("jvp", gvp_bench.model_call.model_closure(model, x), params, (params, False))

    linear, tanh_net = torch.nn.Linear(3, 2), torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh())
    x = torch.randn(4, 3)
    assert jvp_signature(linear, x) == jvp_signature(torch.nn.Linear(3, 2), torch.randn(4, 3))
    assert jvp_signature(linear, x) != jvp_signature(tanh_net, x)
    assert jvp_signature(linear, x) != jvp_signature(linear, torch.randn(8, 3))
    assert jvp_signature(linear, x) != jvp_signature(linear.train(False), x)  # eval and train differ
    batch = torch.ones(3, 5)
    assert signature("batch_jvp", sine_of(x), (x,), ((batch,), False)) != \
        signature("batch_jvp", sine_of(x), (x,), ((torch.ones(4, 5),), False))


def test_a_cached_choice_that_cannot_do_the_call_is_decided_again(monkeypatch):
    gvp_bench.configure_auto(mode="calibrate")
    winning(monkeypatch, "forward_dual")
    x = torch.randn(4, requires_grad=True)
    operations = {"f": torch.sin}  # the closure captures a dict: its signature cannot see the change
    func = lambda: operations["f"](x)  # noqa: E731
    gvp_bench.jvp(func, [x], torch.ones(4))
    assert AUTO.last_choice == "forward_dual"
    operations["f"] = lambda t: CubeBackwardOnly.apply(t)
    winning(monkeypatch, "double_backward")
    result = gvp_bench.jvp(func, [x], torch.ones(4))
    torch.testing.assert_close(result, 3 * x.detach() ** 2)
    assert AUTO.last_choice == "double_backward"


# Opt-out.

def test_rule_mode_times_nothing_and_follows_the_rule(calibrations):
    gvp_bench.configure_auto(mode="rule")
    x = torch.randn(5, requires_grad=True)
    gvp_bench.jvp(sine_of(x), [x], torch.ones(5))
    assert (AUTO.last_choice, AUTO.last_reason) == ("forward_dual", "rule")
    gvp_bench.vjp(sine_of(x), [x], torch.ones(5))
    assert (AUTO.last_choice, AUTO.last_reason) == ("double_backward", "rule")
    assert calibrations == []


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GVP_BENCH_AUTO", "rule")
    monkeypatch.setenv("GVP_BENCH_RESULTS", f"{tmp_path / 'a.jsonl'}:{tmp_path / 'runs'}")
    monkeypatch.setenv("GVP_BENCH_AUTO_MEMORY", "1000000")
    settings = gvp_bench.configure_auto()
    assert settings.mode == "rule" and not settings.calibrates and not settings.uses_results
    assert settings.results == (str(tmp_path / "a.jsonl"), str(tmp_path / "runs"))
    assert settings.memory_budget == 1_000_000
    monkeypatch.setenv("GVP_BENCH_AUTO_MEMORY", "0.25")
    assert gvp_bench.configure_auto(mode="results").memory_budget == 0.25
    assert not settings.compile
    monkeypatch.setenv("GVP_BENCH_AUTO_COMPILE", "1")
    assert gvp_bench.configure_auto().compile and not gvp_bench.configure_auto(compile=False).compile
    monkeypatch.setenv("GVP_BENCH_AUTO_COMPILE", "maybe")
    with pytest.raises(ValueError, match="GVP_BENCH_AUTO_COMPILE must be 1 or 0"):
        gvp_bench.configure_auto()


@pytest.mark.parametrize("settings, message", [
    (dict(mode="fastest"), "mode must be one of measured, calibrate, results, rule"),
    (dict(memory_budget=-1), "memory_budget must be a positive"),
    (dict(memory_budget=1.5), "fraction of free memory and must be <= 1"),
    (dict(memory_budget=True), "memory_budget must be a positive"),
    (dict(compile="yes"), "compile must be True or False"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        gvp_bench.configure_auto(**settings)


def test_strategies_that_compile_are_candidates_only_when_configured(calibrations):
    x = torch.randn(5, requires_grad=True)
    gvp_bench.configure_auto(mode="calibrate")
    gvp_bench.jvp(sine_of(x), [x], torch.ones(5))
    assert "compiled" not in calibrations[-1][0]
    gvp_bench.configure_auto(mode="calibrate", compile=True)
    result = gvp_bench.jvp(sine_of(x), [x], torch.ones(5))
    assert "compiled" in calibrations[-1][0] and "cuda_graphs" in calibrations[-1][0]
    assert "cuda_graphs" in calibrations[-1][1].unsupported  # the params are on the CPU
    torch.testing.assert_close(result, 2 * torch.cos(x.detach()))


# Results.

def test_results_give_the_measured_best_without_timing(calibrations, tmp_path):
    path = write_results(tmp_path / "mine.jsonl", [
        measured_row("forward_dual", 2e-3, op="model_jvp"),
        measured_row("func_vmap", 1e-3, op="model_jvp"),
        measured_row("reference_loop", 1e-4, op="model_jvp"),  # never a candidate
        measured_row("auto", 1e-4, op="model_jvp"),
        measured_row("double_backward", 1e-5, op="model_jvp", status="error"),
    ])
    gvp_bench.configure_auto(results=[path])
    x = torch.randn(5, requires_grad=True)
    result = gvp_bench.jvp(sine_of(x), [x], torch.ones(5))
    torch.testing.assert_close(result, 2 * torch.cos(x.detach()))
    assert AUTO.last_choice == "func_vmap"
    assert AUTO.last_reason.startswith("measured: mine.jsonl model_jvp m/small: func_vmap 1 ms vs forward_dual 2 ms")
    assert calibrations == []


def test_a_benchmark_run_is_what_auto_reads(calibrations, tmp_path):
    path = tmp_path / "run.jsonl"
    assert cli.main(["run", "--quiet", "--threads", "1", "--min-run-time", "0.001", "--max-run-time", "0.01",
                     "--models", "mlp", "--ops", "model_jvp", "--strategies", "double_backward,forward_dual",
                     "--out", str(path)]) == 0
    entry = zoo.build("mlp", "tiny")
    rows = [row for row in read(path)[1] if row["size"] == "tiny"]  # the quick suite's mlp is tiny and small
    assert {(row["parameters"], row["outputs"]) for row in rows} == {(entry.parameter_count, entry.output_size)}
    gvp_bench.configure_auto(mode="results", results=[path])
    gvp_bench.model_jvp(entry.model, entry.x, [torch.ones_like(p) for p in entry.params])
    fastest = min(rows, key=lambda row: row["median_s"])["strategy"]
    assert AUTO.last_choice == fastest and AUTO.last_reason.startswith("measured: run.jsonl model_jvp mlp/tiny: ")
    assert calibrations == []


def test_close_calls_in_the_results_are_settled_by_calibrating_them_alone(calibrations, tmp_path):
    path = write_results(tmp_path / "mine.jsonl", [measured_row("func_vmap", 1.0e-3), measured_row("forward_dual", 1.2e-3),
                                                   measured_row("double_backward", 2e-3)])
    gvp_bench.configure_auto(results=[path])
    x = torch.randn(5, requires_grad=True)
    gvp_bench.jvp(sine_of(x), [x], torch.ones(5))
    (names, outcome), = calibrations
    assert names == ["func_vmap", "forward_dual"] and AUTO.last_choice in names
    assert AUTO.last_reason.startswith("measured: mine.jsonl jvp m/small: func_vmap 1 ms vs forward_dual 1.2 ms")
    assert "; calibrated: " in AUTO.last_reason


def test_a_folder_of_results_is_searched(calibrations, tmp_path):
    write_results(tmp_path / "runs" / "quick.jsonl", [measured_row("double_backward", 1e-3)])
    gvp_bench.configure_auto(results=tmp_path / "runs")
    x = torch.randn(5, requires_grad=True)
    gvp_bench.jvp(sine_of(x), [x], torch.ones(5))
    assert AUTO.last_choice == "double_backward" and calibrations == []


def test_shipped_results_count_after_the_users(calibrations, monkeypatch, tmp_path):
    monkeypatch.setattr(measured, "SHIPPED", tmp_path / "shipped")
    write_results(tmp_path / "shipped" / "reference.jsonl", [measured_row("double_backward", 1e-3)])
    gvp_bench.configure_auto()
    x = torch.randn(5, requires_grad=True)
    gvp_bench.jvp(sine_of(x), [x], torch.ones(5))
    assert AUTO.last_choice == "double_backward" and "reference.jsonl" in AUTO.last_reason
    mine = write_results(tmp_path / "mine.jsonl", [measured_row("func_vmap", 1e-3)])
    gvp_bench.configure_auto(results=[mine])
    gvp_bench.jvp(sine_of(x), [x], torch.ones(5))
    assert AUTO.last_choice == "func_vmap" and calibrations == []


@pytest.mark.parametrize("machine", [{"cpu": "Another CPU"}, {"torch": "1.13.1"}], ids=["cpu", "torch"])
def test_results_of_another_machine_are_not_used(calibrations, tmp_path, machine):
    this = {**measured.this_machine(CPU), "torch": torch.__version__}
    path = write_results(tmp_path / "theirs.jsonl", [measured_row("func_vmap", 1e-3)], machine={**this, **machine})
    gvp_bench.configure_auto(results=[path])
    x = torch.randn(5, requires_grad=True)
    gvp_bench.jvp(sine_of(x), [x], torch.ones(5))
    assert AUTO.last_reason.startswith("calibrated: ") and len(calibrations) == 1


def test_the_nearest_measured_workload_decides(tmp_path):
    path = write_results(tmp_path / "runs.jsonl", [
        measured_row("double_backward", 1e-3, parameters=10, model="near"),
        measured_row("forward_dual", 2e-3, parameters=10, model="near"),
        measured_row("func_vmap", 1e-3, parameters=15, model="farther"),
        measured_row("forward_dual", 2e-3, parameters=15, model="farther"),
        measured_row("forward_dual", 1e-3, parameters=5, outputs=5, dtype="float64", model="other dtype"),
        measured_row("forward_dual", 1e-3, parameters=5, outputs=5, op="vjp", model="other product"),
        measured_row("forward_dual", 1e-3, parameters=5, outputs=5, device="cuda:0", model="other device"),
    ])
    gvp_bench.configure_auto(mode="results", results=[path])
    x = torch.randn(5, requires_grad=True)
    gvp_bench.jvp(sine_of(x), [x], torch.ones(5))
    assert AUTO.last_choice == "double_backward" and " near/small" in AUTO.last_reason


def test_batches_match_on_k(tmp_path):
    path = write_results(tmp_path / "runs.jsonl", [
        measured_row("func_vmap", 1e-3, op="batch_jvp", k=32, model="many"),
        measured_row("forward_dual", 2e-3, op="batch_jvp", k=32, model="many"),
        measured_row("forward_dual", 1e-3, op="batch_jvp", k=8, model="few"),
        measured_row("func_vmap", 2e-3, op="batch_jvp", k=8, model="few"),
    ])
    gvp_bench.configure_auto(mode="results", results=[path])
    x = torch.randn(5, requires_grad=True)
    gvp_bench.batch_jvp(sine_of(x), [x], torch.ones(10, 5))
    assert AUTO.last_choice == "forward_dual" and "few/small k=8" in AUTO.last_reason
    gvp_bench.batch_jvp(sine_of(x), [x], torch.ones(30, 5))
    assert AUTO.last_choice == "func_vmap" and "many/small k=32" in AUTO.last_reason


def test_a_workload_beyond_the_tolerance_is_not_near(tmp_path):
    path = write_results(tmp_path / "runs.jsonl", [measured_row("func_vmap", 1e-3, parameters=5 * 5)])
    gvp_bench.configure_auto(mode="results", results=[path])
    x = torch.randn(5, requires_grad=True)
    gvp_bench.jvp(sine_of(x), [x], torch.ones(5))
    assert (AUTO.last_choice, AUTO.last_reason) == ("forward_dual", "rule: no measured workload near this one")


def test_an_unreadable_results_file_is_skipped_with_a_warning(calibrations, tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text("not json\n")
    gvp_bench.configure_auto(results=[path])
    x = torch.randn(5, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="broken.jsonl skipped"):
        gvp_bench.jvp(sine_of(x), [x], torch.ones(5))
    assert len(calibrations) == 1


# Candidates and memory.

def test_the_memory_budget_leaves_out_a_candidate(calibrations):
    x = torch.randn(50, requires_grad=True)
    func = lambda: x[:10].sin()  # noqa: E731  # J is 10 x 50: jacrev_chunked materialises 2000 bytes
    gvp_bench.configure_auto(mode="calibrate")
    gvp_bench.batch_jvp(func, [x], torch.ones(8, 50))
    assert "jacrev_chunked" in calibrations[-1][0]
    gvp_bench.configure_auto(mode="calibrate", memory_budget=1999)
    gvp_bench.batch_jvp(func, [x], torch.ones(8, 50))
    assert "jacrev_chunked" not in calibrations[-1][0] and calibrations[-1][0]


def test_candidates_leave_out_the_hopeless_and_the_too_big():
    tall = Workload("full_jacobian", CPU, torch.float32, parameters=10, outputs=100_000, batch=1)
    kept, left_out = candidates.select(["func_vmap", "forward_dual", "jacrev_chunked", "my_strategy"], tall,
                                       budget=2 ** 30)
    assert kept == ["forward_dual", "my_strategy"]
    assert "100000 products against 10" in left_out["func_vmap"]
    wide = Workload("full_jacobian", CPU, torch.float32, parameters=100_000, outputs=1000, batch=1)
    kept, left_out = candidates.select(["autograd_functional", "double_backward", "func_vmap", "forward_dual",
                                        "jacrev_chunked"], wide, budget=1e6)
    # autograd_functional's identity needs 4 MB; double_backward's and func_vmap's come in chunks of their budget;
    # forward_dual 100000 passes
    assert kept == ["double_backward", "func_vmap", "jacrev_chunked"]
    assert "over the memory budget" in left_out["autograd_functional"] and "100000 products" in left_out["forward_dual"]
    one = Workload("jvp", CPU, torch.float64, parameters=1000, outputs=1000, batch=1)
    assert candidates.extra_memory("jacrev_chunked", one) == 8 * 1000 * 1000
    assert memory.budget_bytes(0.5, CPU) > 0 and memory.budget_bytes(123, CPU) == 123


def test_unsupported_candidates_are_skipped(calibrations):
    gvp_bench.configure_auto(mode="calibrate")
    x = torch.randn(3, requires_grad=True)
    result = gvp_bench.jvp(lambda: CubeBackwardOnly.apply(x), [x], torch.ones(3))
    torch.testing.assert_close(result, 3 * x.detach() ** 2)
    (names, outcome), = calibrations
    assert {"forward_dual", "func_vmap"} <= set(outcome.unsupported) <= set(names)
    assert "defines no jvp" in outcome.unsupported["forward_dual"]
    assert AUTO.last_choice in outcome.times and AUTO.last_choice not in outcome.unsupported


def test_when_no_candidate_can_auto_says_why():
    class Opaque(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            raise NotImplementedError("the derivative for opaque is not implemented")

    gvp_bench.configure_auto(mode="calibrate")
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(gvp_bench.UnsupportedError, match="no strategy could compute it; .*forward_dual: "):
        gvp_bench.jvp(lambda: Opaque.apply(x), [x], torch.ones(3))


# Correctness and no side effects.

@pytest.mark.parametrize("mode", ["calibrate", "measured"])
def test_every_product_equals_the_chosen_strategys_and_leaves_the_random_state_as_it_would(mode):
    gvp_bench.configure_auto(mode=mode)
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    func = lambda: torch.nn.functional.dropout(torch.sin(x), 0.5, training=True)[:4]  # noqa: E731
    calls = {
        "jvp": lambda strategy: gvp_bench.jvp(func, [x], torch.ones(6, dtype=torch.float64), strategy=strategy),
        "vjp": lambda strategy: gvp_bench.vjp(func, [x], torch.ones(4, dtype=torch.float64), strategy=strategy),
        "batch_jvp": lambda strategy: gvp_bench.batch_jvp(func, [x], torch.eye(6, dtype=torch.float64),
                                                          strategy=strategy),
        "batch_vjp": lambda strategy: gvp_bench.batch_vjp(func, [x], torch.eye(4, dtype=torch.float64),
                                                          strategy=strategy),
        "full_jacobian": lambda strategy: gvp_bench.full_jacobian(func, [x], strategy=strategy),
    }
    for product, call in calls.items():
        torch.manual_seed(3)
        by_auto = call("auto")
        after_auto = torch.rand(4)
        torch.manual_seed(3)
        direct = call(AUTO.last_choice)
        after_direct = torch.rand(4)
        torch.testing.assert_close(by_auto, direct, msg=product)
        torch.testing.assert_close(after_auto, after_direct, msg=product)


def test_calibration_leaves_the_strategies_as_they_were_and_warns_for_the_answer_only():
    gvp_bench.configure_auto(mode="calibrate")
    entry = zoo.build("transformer", "tiny", mode="eval")
    names = [name for name in gvp_bench.strategies() if name != "auto"]
    before = {name: gvp_bench.get_strategy(name).last_workarounds for name in names}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gvp_bench.model_jvp(entry.model, entry.x, [torch.ones_like(p) for p in entry.params])
    chosen = gvp_bench.get_strategy(AUTO.last_choice)
    assert AUTO.last_workarounds == chosen.last_workarounds
    assert {name: gvp_bench.get_strategy(name).last_workarounds for name in names if name != AUTO.last_choice} == \
        {name: workarounds for name, workarounds in before.items() if name != AUTO.last_choice}
    workaround_warnings = [w for w in caught if issubclass(w.category, WorkaroundWarning)]
    assert len(workaround_warnings) == len(AUTO.last_workarounds)
    assert all(AUTO.last_choice in str(w.message) for w in workaround_warnings)


CALIBRATED_CASES = ["documented_example", "second_order", "custom_function_backward_only", "batchnorm_train",
                    "dropout_train", "zoo_transformer_eval", "zoo_lstm_train"]


@pytest.mark.parametrize("case", CALIBRATED_CASES)
def test_calibrated_auto_passes_conformance(case):
    """The conformance cells of auto, calibrating (the suite runs auto by the rule; see conftest)."""
    gvp_bench.configure_auto(mode="calibrate")
    case = case_by_name(case)
    for function in case.functions:
        outcome = run_cell("auto", case, function, torch.float64, "cpu")
        assert outcome.status == "pass", f"{function}: {outcome.detail}"
