"""The benchmark engine: workloads and shards, measurement, statuses, and what a run guarantees
(killed and resumed, damaged files, schema versions, concurrent writers). No timing is asserted."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch

import gvp_bench
from gvp_bench import cli
from gvp_bench.bench import measure, raw, workloads
from gvp_bench.bench.machine import fingerprint
from gvp_bench.bench.runner import CellTimeout, time_limit
from gvp_bench.results import CELL_FIELDS, ResultsError, ResultsWarning, ResultsWriter, cell_key, load, read
from gvp_bench.workarounds import WorkaroundWarning

QUICK = workloads.SUITES["quick"]
# A few tiny cells of the quick suite, measured briefly: the CLI end to end in well under a second per cell.
SELECTION = ["--models", "cnn", "--ops", "jvp,batch_vjp,full_jacobian", "--strategies", "double_backward,auto"]
# No time budget (tests/test_budget.py tests it): on a loaded machine it may skip a cell these tests measure.
BRIEF = ["--quiet", "--threads", "1", "--min-run-time", "0.001", "--max-run-time", "0.01", "--budget", "inf"]


def run_cli(*args):
    return cli.main(["run", *BRIEF, *args])


def keys(path):
    return [cell_key(row) for row in read(path)[1]]


def test_the_quick_suite_covers_every_strategy_and_op_on_at_least_four_models():
    cells = workloads.expand(QUICK)
    assert {cell.strategy for cell in cells} == set(gvp_bench.strategies()) | set(raw.STRATEGIES)
    assert {(cell.strategy, cell.op) for cell in cells if cell.strategy in raw.STRATEGIES} == {
        (name, op) for name, ops in raw.STRATEGIES.items() for op in ops}
    assert {cell.op for cell in cells} == set(workloads.OPS)
    assert len({cell.model for cell in cells}) >= 4
    assert all((cell.k is not None) == (cell.op in workloads.BATCH_OPS) for cell in cells)
    assert len({cell.key() for cell in cells}) == len(cells)


def test_the_full_suite_has_more_sizes_on_cuda_and_every_batch_size():
    cpu = workloads.expand(workloads.SUITES["full"], ops=["batch_jvp"], strategy_names=["auto"])
    both = workloads.expand(workloads.SUITES["full"], devices=["cpu", "cuda"], ops=["batch_jvp"],
                            strategy_names=["auto"])
    assert {cell.size for cell in cpu} == {"small", "medium"}
    assert {cell.size for cell in both if cell.device == "cuda"} == {"small", "medium", "large"}
    assert {cell.k for cell in cpu} == {1, 8, 32} and {cell.dtype for cell in cpu} == {"float32", "float64"}


def test_the_targets_suite_measures_the_targets_ops_on_the_mlp_with_64_and_4_inputs():
    cells = workloads.expand(workloads.SUITES["targets"], strategy_names=["auto"])
    assert {(cell.op, cell.size, cell.k) for cell in cells} == {
        (op, size, 16 if op == "batch_jvp" else None) for op in ("jvp", "model_jvp", "batch_jvp")
        for size in ("medium", "medium-b4")}
    assert workloads.sizes("mlp", "medium-b4") == dict(workloads.sizes("mlp", "medium"), outputs=40)


def test_filters_narrow_the_cells_and_unknown_names_are_refused_with_the_valid_ones():
    cells = workloads.expand(QUICK, models=["mlp"], ops=["jvp", "batch_jvp"], strategy_names=["forward_dual"])
    assert [(c.op, c.model, c.size, c.k) for c in cells] == [
        ("jvp", "mlp", "tiny", None), ("batch_jvp", "mlp", "tiny", 8), ("jvp", "mlp", "small", None),
        ("batch_jvp", "mlp", "small", 8)]
    for option, value in [("models", ["nope"]), ("ops", ["hessian"]), ("strategy_names", ["fast"]), ("dtypes", ["f16"]),
                          ("devices", ["tpu"])]:
        with pytest.raises(ValueError, match="valid: "):
            workloads.expand(QUICK, **{option: value})


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_partition_the_cells_whatever_else_is_selected(count):
    cells = workloads.expand(QUICK)
    shards = [workloads.shard(cells, index, count) for index in range(1, count + 1)]
    assert sorted(c.key() for part in shards for c in part) == sorted(c.key() for c in cells)
    fewer = cells[::3]  # another selection (another machine, other filters): each cell stays in its shard
    assert workloads.shard(fewer, 1, count) == [c for c in shards[0] if c in fewer]
    with pytest.raises(ValueError, match="between 1 and"):
        workloads.shard(cells, count + 1, count)


@pytest.mark.parametrize("op", workloads.OPS)
def test_prepare_gives_the_product_and_the_plain_forward_of_the_same_workload(op):
    cell = workloads.prepare(workloads.Workload(op, "mlp", "tiny", "double_backward", "cpu", "float64", 3))
    forward = cell.forward()
    assert forward.dtype == torch.float64 and not forward.requires_grad
    result = cell.product()
    shapes = {"jvp": forward.shape, "model_jvp": forward.shape, "batch_jvp": (3, *forward.shape)}
    if op in shapes:
        assert result.shape == shapes[op]
    again = workloads.prepare(workloads.Workload(op, "mlp", "tiny", "double_backward", "cpu", "float64", 3)).product()
    assert all(torch.equal(a, b) for a, b in zip(torch.utils._pytree.tree_leaves(result),
                                                 torch.utils._pytree.tree_leaves(again)))  # vectors from one seed


def test_cpu_peak_memory_sees_a_known_temporary_allocation():
    held = torch.ones(4 * 2 ** 20)  # 16 MiB allocated before: not part of the peak

    def allocates_64_mib():
        temporary = torch.empty(16 * 2 ** 20)
        temporary.fill_(1.0)
        return held.sum() + temporary.sum()

    peak = measure.peak_bytes(allocates_64_mib, "cpu")
    assert 64 * 2 ** 20 <= peak < 65 * 2 ** 20
    assert measure.peak_bytes(lambda: held.sum(), "cpu") < 2 ** 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_peak_memory_sees_a_known_temporary_allocation():
    held = torch.ones(4 * 2 ** 20, device="cuda")
    peak = measure.peak_bytes(lambda: torch.empty(16 * 2 ** 20, device="cuda").fill_(1.0).sum() + held.sum(), "cuda")
    assert 64 * 2 ** 20 <= peak < 66 * 2 ** 20


def test_timing_keeps_the_samples_of_its_median():
    timing = measure.time_call(lambda: torch.ones(100).sum(), device="cpu", threads=1, min_run_time=0.001, max_run_time=0.05)
    assert timing.runs == len(timing.samples_s) >= 1 and min(timing.samples_s) <= timing.median_s <= max(timing.samples_s)


def test_the_machine_fingerprint_names_hardware_software_and_threads():
    machine = fingerprint(threads=3)
    for field in ("cpu", "cpu_cores", "gpu", "cuda", "torch", "python", "git_commit", "date"):
        assert field in machine
    assert machine["threads"] == 3 and machine["torch"] == torch.__version__


def test_a_cli_run_in_shards_writes_files_that_load_into_one_frame(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(*SELECTION, "--shard", "1/2") == 0
    assert run_cli(*SELECTION, "--shard", "2/2", "--out", "second.jsonl") == 0
    (first,) = (tmp_path / "results").iterdir()  # the default: a new file under results/
    assert first.name.startswith("quick-") and first.name.endswith("-shard1of2.jsonl")
    frame = load([first, tmp_path / "second.jsonl"])
    expected = workloads.expand(QUICK, models=["cnn"], ops=["jvp", "batch_vjp", "full_jacobian"],
                                strategy_names=["double_backward", "auto"])
    assert sorted(map(cell_key, frame.to_dict("records"))) == sorted(w.key() for w in expected)
    for column in ("op", "model", "size", "strategy", "device", "dtype", "k", "status", "first_call_s", "median_s", "iqr_s", "runs",
                   "peak_bytes", "forward_median_s", "forward_ratio", "error", "workarounds", "samples_s",
                   "machine_cpu", "machine_torch", "machine_git_commit", "machine_threads"):
        assert column in frame.columns
    assert (frame.status == "ok").all() and frame.error.isna().all()
    assert (frame.forward_ratio == frame.median_s / frame.forward_median_s).all()
    assert (frame.runs == frame.samples_s.map(len)).all() and (frame.peak_bytes > 0).all()
    assert (frame.first_call_s > 0).all()
    assert set(frame.k.dropna()) == {8} and (frame.threads == 1).all()
    summary = capsys.readouterr().out
    assert "cost in forward passes" in summary and "ok" in summary


def test_a_strategy_needing_a_workaround_has_it_recorded_also_through_auto(tmp_path):
    path = tmp_path / "run.jsonl"
    assert run_cli("--models", "transformer", "--ops", "jvp", "--strategies", "forward_dual,auto", "--out",
                   str(path)) == 0
    rows = {row["strategy"]: row for row in read(path)[1]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkaroundWarning)
        gvp_bench.get_strategy("forward_dual").jvp(*_transformer_jvp_arguments())
    expected = list(gvp_bench.get_strategy("forward_dual").last_workarounds)
    assert rows["forward_dual"]["workarounds"] == rows["auto"]["workarounds"] == expected  # auto chose forward_dual


def _transformer_jvp_arguments():
    entry = gvp_bench.zoo.build("transformer")
    return entry.func(), entry.params, [torch.ones_like(p) for p in entry.params]


class _Failing(gvp_bench.Strategy):
    """Every product does what ``behave`` does (raise, or take too long)."""

    def __init__(self, behave):
        self.behave = behave

    def _jvp(self, *args):
        self.behave(self)

    _vjp = _batch_jvp = _batch_vjp = _full_jacobian = _jvp


def _unsupported(strategy):
    raise gvp_bench.UnsupportedError(strategy.name, "operator aten::nothing has no rule (on purpose)")


def _out_of_memory(strategy):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def _too_slow(strategy):
    time.sleep(30)


def _broken(strategy):
    raise ZeroDivisionError("division by zero\nin a second line")


def _interrupted(strategy):
    raise KeyboardInterrupt


FAILING = {"test_unsupported": _unsupported, "test_oom": _out_of_memory, "test_too_slow": _too_slow,
           "test_broken": _broken, "test_interrupted": _interrupted}


@pytest.fixture
def failing_strategies():
    for name, behave in FAILING.items():
        gvp_bench.register(name, lambda behave=behave: _Failing(behave))
    yield
    for name in FAILING:
        gvp_bench.unregister(name)


def test_each_failure_is_recorded_with_its_status_and_reason_and_the_run_goes_on(tmp_path, failing_strategies):
    path = tmp_path / "run.jsonl"
    order = "test_unsupported,test_oom,test_too_slow,test_broken,double_backward"
    assert run_cli("--models", "mlp", "--ops", "jvp", "--strategies", order, "--timeout", "0.5", "--out",
                   str(path)) == 0
    rows = {row["strategy"]: row for row in read(path)[1]}
    assert {name: row["status"] for name, row in rows.items()} == {
        "test_unsupported": "unsupported", "test_oom": "oom", "test_too_slow": "timeout", "test_broken": "error",
        "double_backward": "ok"}
    assert "aten::nothing has no rule" in rows["test_unsupported"]["error"]
    assert rows["test_oom"]["error"] == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert "time limit of 0.5 s" in rows["test_too_slow"]["error"]
    assert rows["test_broken"]["error"] == "ZeroDivisionError: division by zero"  # one line
    assert all(row["median_s"] is None for name, row in rows.items() if name != "double_backward")


def test_ctrl_c_keeps_the_rows_measured_and_exits_130(tmp_path, failing_strategies, capsys):
    path = tmp_path / "run.jsonl"
    code = run_cli("--models", "mlp", "--ops", "jvp", "--strategies", "double_backward,test_interrupted",
                   "--out", str(path))
    assert code == 130 and keys(path) == [("jvp", "mlp", "tiny", "double_backward", "cpu", "float32", None)]
    assert "--resume --out" in capsys.readouterr().err


def test_the_time_limit_interrupts_python_and_restores_the_previous_handler():
    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(CellTimeout), time_limit(0.05):
        time.sleep(5)
    assert signal.getsignal(signal.SIGALRM) is before
    with time_limit(None):
        pass


def _cells_written(path):
    try:
        return path.read_text().count('"record": "cell"')
    except FileNotFoundError:
        return 0


def test_a_run_killed_mid_run_and_resumed_has_exactly_the_cells_of_an_uninterrupted_run(tmp_path):
    selection = ["--models", "cnn", "--ops", "jvp,vjp,batch_jvp", "--strategies", "double_backward,forward_dual"]
    reference = tmp_path / "reference.jsonl"
    assert run_cli(*selection, "--out", str(reference)) == 0
    killed = tmp_path / "killed.jsonl"
    slow = ["--quiet", "--threads", "1", "--min-run-time", "0.3", "--max-run-time", "0.3"]  # about 1 s a cell
    process = subprocess.Popen([sys.executable, "-m", "gvp_bench.cli", "run", *selection, *slow, "--out", str(killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _cells_written(killed) < 2:
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before it was killed"
            time.sleep(0.02)
        with pytest.raises(SystemExit, match="another gvp-bench run is writing this file"):
            run_cli(*selection, "--resume", "--out", str(killed))  # two writers on one file: refused
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert 2 <= _cells_written(killed) < 6
    assert run_cli(*selection, "--resume", "--out", str(killed)) == 0
    resumed = keys(killed)
    assert len(resumed) == len(set(resumed)) == 6 and set(resumed) == set(keys(reference))


@pytest.fixture
def measured(tmp_path):
    """A results file of three cells."""
    path = tmp_path / "run.jsonl"
    assert run_cli("--models", "scalar5", "--ops", "jvp,vjp,full_jacobian", "--strategies", "double_backward",
                   "--out", str(path)) == 0
    return path


def test_a_file_cut_short_loads_its_intact_rows_with_a_warning_and_resumes(measured, capsys):
    content = measured.read_bytes()
    measured.write_bytes(content[:-40])  # the last cell's line cut in the middle, as by a kill
    with pytest.warns(ResultsWarning, match=r"dropped 1 unreadable line\(s\), kept 2 row\(s\) \(line 4: cut short\)"):
        assert len(load(measured)) == 2
    assert run_cli("--models", "scalar5", "--ops", "jvp,vjp,full_jacobian", "--strategies", "double_backward",
                   "--resume", "--out", str(measured)) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load(measured)) == 3


def test_a_corrupt_line_is_one_warning_line_and_its_cell_is_measured_again(measured, capsys):
    lines = measured.read_text().splitlines(keepends=True)
    lines[2] = '{"record": "cell", "op": "jvp", garbage\n'
    measured.write_text("".join(lines))
    capsys.readouterr()
    assert run_cli("--models", "scalar5", "--ops", "jvp,vjp,full_jacobian", "--strategies", "double_backward",
                   "--resume", "--out", str(measured)) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warned == [  # when the file is reopened, and when it is loaded for the summary
        f"gvp-bench: warning: {measured}: 1 unreadable line(s) kept as they are; their cells will be measured again",
        f"gvp-bench: warning: {measured}: dropped 1 unreadable line(s), kept 3 row(s) (line 3: not valid JSON)"]
    with pytest.warns(ResultsWarning, match="line 3: not valid JSON"):
        assert len(load(measured)) == 3


@pytest.mark.parametrize("first_line, problem", [
    ("", "empty results file"),
    ("this is not json", "not a gvp-bench results file (its first line is not JSON)"),
    ('{"record": "cell"}', "not a gvp-bench results file (its first line is not a results header)"),
    ('{"record": "header", "schema_version": 99, "suite": "quick"}', "results schema version 99 is not supported"),
    ('{"record": "header", "schema_version": 0, "suite": "quick"}', "results schema version 0 is not supported"),
])
def test_an_unreadable_file_is_a_one_line_error_naming_the_file_and_the_problem(tmp_path, first_line, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text(first_line + ("\n" if first_line else ""))
    with pytest.raises(ResultsError) as error:
        load(path)
    assert str(error.value).startswith(f"{path}: ") and problem in str(error.value)
    if first_line:  # an empty file is a new one to the writer
        with pytest.raises(SystemExit) as stop:
            run_cli(*SELECTION, "--resume", "--out", str(path))
        assert stop.value.code == f"gvp-bench: {error.value}" and "\n" not in stop.value.code


def test_a_file_is_never_written_by_two_runs_or_overwritten(measured):
    with ResultsWriter(measured, {}, resume=True):
        with pytest.raises(SystemExit, match="another gvp-bench run is writing this file"):
            run_cli(*SELECTION, "--resume", "--out", str(measured))
    with pytest.raises(SystemExit, match="results file exists; pass --resume"):
        run_cli(*SELECTION, "--out", str(measured))


def test_a_resumed_file_must_be_of_the_same_suite_and_machine(measured):
    with pytest.raises(SystemExit, match="holds the 'quick' suite, not 'full'; resume it with --suite quick"):
        run_cli("--suite", "full", "--models", "scalar5", "--resume", "--out", str(measured))
    header, *rows = measured.read_text().splitlines(keepends=True)
    header = json.loads(header)
    header["machine"]["torch"] = "1.0"
    measured.write_text(json.dumps(header) + "\n" + "".join(rows))
    with pytest.raises(SystemExit, match=r"measured on another machine \(torch 1.0 there, .* here\)"):
        run_cli("--models", "scalar5", "--resume", "--out", str(measured))


def test_cli_option_errors_are_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    for args, message in [(["--resume"], "--resume needs --out PATH"),
                          (["--out", str(tmp_path / "file" / "run.jsonl")], "cannot write the results file"),
                          (["--models", "wide"], "no cells selected"),
                          (["--models", "nope"], "unknown model 'nope'")]:
        with pytest.raises(SystemExit) as stop:
            run_cli(*args)
        assert message in stop.value.code and "\n" not in stop.value.code
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device on this machine"):
            run_cli("--device", "cuda")


def test_results_rows_have_every_field():
    assert {"median_s", "iqr_s", "samples_s", "peak_bytes", "forward_ratio", "workarounds"} <= set(CELL_FIELDS)


def test_the_asv_and_pytest_benchmark_suites_measure_the_same_workloads(monkeypatch):
    monkeypatch.syspath_prepend(str(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from suites import bench_products, test_bench_pytest

    ops, models, strategy_names, devices = bench_products.Products.params
    assert (ops, strategy_names, devices) == (list(workloads.OPS), gvp_bench.strategies(), ["cpu", "cuda"])
    assert models == [f"{model}/{size}" for model, size in QUICK.models]
    benchmark = bench_products.Products()
    params = ("batch_jvp", "mlp/tiny", "forward_dual", "cpu")
    benchmark.setup(*params)
    benchmark.time_product(*params)
    assert benchmark.track_peak_bytes(*params) > 0
    if not torch.cuda.is_available():
        with pytest.raises(NotImplementedError):  # asv's way of skipping
            benchmark.setup("jvp", "mlp/tiny", "auto", "cuda")
    cells = [param.values[1] for param in test_bench_pytest._cells()]
    assert cells == [cell for suite in workloads.SUITES.values()
                     for cell in workloads.expand(suite, devices=["cpu", "cuda"])]


def test_the_fingerprint_gives_the_cpus_the_run_had_before_it_pinned_itself_for_jax(tmp_path, monkeypatch):
    """With JAX rows on fewer threads than CPUs, the run pins itself to as many CPUs as threads while it measures
    (gvp_bench.jax_side.match_threads); its results still say how many the machine let it use."""
    from gvp_bench import jax_side

    pinned = []
    monkeypatch.setattr(jax_side, "available", lambda: True)
    monkeypatch.setattr(jax_side, "match_threads", lambda threads: [0, 1, 2, 3, 4, 5, 6])  # as if pinned from 7
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: pinned.append(cpus))
    out = tmp_path / "run.jsonl"
    assert run_cli("--models", "transformer", "--ops", "vjp", "--strategies", "double_backward", "--device", "cpu",
                   "--out", str(out)) == 0  # no JAX row for the transformer: nothing imports JAX
    assert read(out)[0]["machine"]["cpu_usable"] == 7
    assert pinned == [[0, 1, 2, 3, 4, 5, 6]]  # and the run unpinned itself after
