"""The CUDA paths, tested on the CPU with torch's exact messages and faked readings (issue 18's table).

Each test names the item it covers: the eval-mode cuDNN RNN backward, TF32 in conformance,
dropout under vmap on CUDA, cuda_graphs' recording call, the memory budget, releasing compiled
graphs, OOM detection, the fingerprint, and JAX on CUDA.
"""

import subprocess
import types

import pytest
import torch

import gvp_bench
from gvp_bench import jax_side, memory, precision, registry
from gvp_bench.bench import machine, runner
from gvp_bench.bench.workloads import Workload
from gvp_bench.conformance import case_by_name, checks
from gvp_bench.contract import Strategy
from gvp_bench.errors import UnsupportedError, translate_missing_rules
from gvp_bench.workarounds import WorkaroundWarning, workaround_for
from implementations import func_vmap
from implementations.compiled import Compiled

# aten/src/ATen/native/cudnn/RNN.cpp, _cudnn_rnn_backward_weight: TORCH_CHECK(fn_train, ...)
CUDNN_EVAL_BACKWARD = "cudnn RNN backward can only be called in training mode"
SETTINGS = runner.Settings(threads=1, min_run_time=0.001, max_run_time=0.01, timeout_s=60)


class _Probe(Strategy):
    """A strategy whose products call func and return zeros of the right shapes, through ``hook(call number)``."""

    hook = staticmethod(lambda calls: None)

    def __init__(self):
        self.calls = self.releases = 0

    def _answer(self, func, params, shape_of):
        self.calls += 1
        self.hook(self.calls)
        output = func()
        return shape_of(output)

    def _jvp(self, func, params, tangents, create_graph):
        return self._answer(func, params, torch.zeros_like)

    def _vjp(self, func, params, v, create_graph):
        return self._answer(func, params, lambda output: [torch.zeros_like(p) for p in params])

    def _batch_jvp(self, func, params, tangents, create_graph):
        raise NotImplementedError

    _batch_vjp = _full_jacobian = _batch_jvp

    def release(self):
        self.releases += 1


@pytest.fixture
def probe():
    """A fresh _Probe registered as "probe" (its class is new per test: hooks set on it stay in the test)."""
    cls = type("Probe", (_Probe,), {"name": "probe"})
    gvp_bench.register("probe", cls)
    try:
        yield cls, registry.get_strategy("probe")
    finally:
        gvp_bench.unregister("probe")


def _cell(strategy="probe", op="jvp"):
    return runner.measure_cell(Workload(op, "mlp", "tiny", strategy, "cpu", "float32"), SETTINGS)


# 1. A backward pass through a cuDNN RNN in eval mode


def test_the_cudnn_eval_mode_rnn_message_names_an_operator_that_cudnn_off_avoids():
    with pytest.raises(UnsupportedError) as raised, translate_missing_rules("probe"):
        raise RuntimeError(CUDNN_EVAL_BACKWARD)
    assert raised.value.operator == "_cudnn_rnn_backward"
    assert workaround_for(raised.value.operator).name == "cudnn_off"


def test_a_vjp_that_fails_with_cudnn_in_eval_mode_is_answered_with_cudnn_off(probe):
    cls, strategy = probe

    def fail_while_cudnn_is_on(calls):
        if torch.backends.cudnn.enabled:
            raise RuntimeError(CUDNN_EVAL_BACKWARD)

    cls.hook = staticmethod(fail_while_cudnn_is_on)
    w = torch.ones(3, requires_grad=True)
    with pytest.warns(WorkaroundWarning, match="cudnn_off"):
        result = strategy.vjp(lambda: w * 2, [w], torch.ones(3))
    assert torch.equal(result, torch.zeros(3)) and strategy.last_workarounds == ("cudnn_off",)
    assert torch.backends.cudnn.enabled


# 2. TF32 in conformance, from the CLI and from Python


def _set_legacy(on):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def _set_new(value):
    for backend, operation in (("cuda", "matmul"), ("cudnn", "conv"), ("cudnn", "rnn")):
        getattr(getattr(torch.backends, backend), operation).fp32_precision = value


def _legacy_readings():
    readings = []
    for read in (lambda: torch.backends.cuda.matmul.allow_tf32, lambda: torch.backends.cudnn.allow_tf32):
        try:
            readings.append(read())
        except RuntimeError:
            readings.append("refused")
    return readings


@pytest.mark.parametrize("set_up", [lambda: None, lambda: _set_legacy(True), lambda: _set_legacy(False),
                                    lambda: _set_new("ieee"), lambda: _set_new("tf32"),
                                    lambda: torch.set_float32_matmul_precision("high")],
                         ids=["default", "legacy_on", "legacy_off", "new_ieee", "new_tf32", "matmul_high"])
def test_strict_fp32_turns_tf32_off_and_restores_every_setting(set_up):
    before_all = precision.fp32_state(), _legacy_readings()
    with precision.strict_fp32():  # the state this test started in (conftest's), restored at the end
        set_up()
        before = precision.fp32_state(), _legacy_readings()
        with precision.strict_fp32():
            inside = precision.fp32_state()
            assert not inside["tf32"] and _legacy_readings() == [False, False]
            assert {inside[name] for name in ("cuda.matmul", "cudnn.conv", "cudnn.rnn")} == {"ieee"}
        assert (precision.fp32_state(), _legacy_readings()) == before
    assert (precision.fp32_state(), _legacy_readings()) == before_all


def test_a_conformance_cell_runs_with_tf32_off_whatever_the_caller_set(monkeypatch):
    seen = []
    monkeypatch.setattr(checks, "_check_cell", lambda *args: seen.append(precision.fp32_state()))
    with precision.strict_fp32():
        _set_legacy(True)
        assert precision.fp32_state()["tf32"]
        assert checks.run_cell("func_vmap", case_by_name("zoo_cnn_eval"), "model_jvp", torch.float32, "cpu").status \
            == "pass"
        assert precision.fp32_state()["tf32"]  # the caller's setting, back
    assert len(seen) == 1 and not seen[0]["tf32"]


# 3. Dropout under vmap on CUDA


def _native_dropout_func():
    w = torch.randn(3, 4, requires_grad=True)
    x = torch.randn(4)
    return (lambda: torch.native_dropout(w @ x, 0.5, True)[0]), [w]


def test_func_vmap_refuses_a_batch_of_jvps_through_the_fused_dropout_kernel(monkeypatch):
    monkeypatch.setattr(func_vmap, "FUSED_DROPOUT_DEVICES", ("cpu",))  # as on CUDA, where eager dropout is fused
    strategy = func_vmap.FuncVmap()
    func, params = _native_dropout_func()
    with pytest.raises(UnsupportedError, match="native_dropout"):
        strategy.batch_jvp(func, params, torch.randn(2, 12))
    strategy.jvp(func, params, torch.randn(12))  # a single J v runs eagerly: the same kernel, the same mask
    w = params[0]
    strategy.batch_jvp(lambda: torch.tanh(w.sum(1)), params, torch.randn(2, 12))  # no dropout: computed


def test_func_vmap_keeps_batches_of_jvps_through_dropout_on_the_cpu():
    func, params = _native_dropout_func()
    assert func_vmap.FuncVmap().batch_jvp(func, params, torch.randn(2, 12)).shape == (2, 3)


# 4 and 5. cuda_graphs records on its second call: timed alone, with the peak of the recording


def test_a_strategy_that_records_on_its_second_call_has_it_timed_alone_with_its_peak(probe):
    cls, strategy = probe
    cls.records_on_second_call = True
    recording = 8 * 2 ** 20
    cls.hook = staticmethod(lambda calls: torch.ones(recording // 4) if calls == 2 else None)
    row = _cell()
    assert row["status"] == "ok" and row["capture_s"] > 0
    assert row["peak_bytes"] >= recording  # replays allocate nothing: the peak is the recording's


def test_other_strategies_have_no_capture_time():
    row = _cell("forward_dual")
    assert row["status"] == "ok" and row["capture_s"] is None and row["peak_bytes"] is not None


def test_cuda_graphs_records_on_its_second_call_and_compiled_does_not():
    assert registry.get_strategy("cuda_graphs").records_on_second_call
    assert not registry.get_strategy("compiled").records_on_second_call


# 6. The memory budget on CUDA: free, plus what the caching allocator holds unallocated


def test_the_cuda_budget_counts_the_cached_blocks_as_free(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 10_000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 700)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 200)
    monkeypatch.setattr(memory, "_recent_free", {})
    assert memory.free_memory(torch.device("cuda")) == 1000 + 700 - 200
    assert memory.budget_bytes(0.5, torch.device("cuda")) == 750
    # the same budget whatever the allocator caches: blocks freed into its cache leave the driver's reading
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (500, 10_000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 1200)
    assert memory.budget_bytes(0.5, torch.device("cuda")) == 750


# 7. Compiled graphs are released after each cell


def test_the_runner_releases_the_strategy_after_each_cell(probe):
    cls, strategy = probe
    _cell()
    cls.hook = staticmethod(lambda calls: (_ for _ in ()).throw(RuntimeError("broken")))
    assert _cell()["status"] == "error"
    assert strategy.releases == 2


def test_compiled_release_drops_its_graphs_and_resets_dynamo(monkeypatch):
    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(True))
    strategy = Compiled()
    strategy.release()
    assert resets == []  # nothing compiled, nothing reset
    strategy._compiled["signature"] = object()
    strategy.release()
    assert strategy._compiled == {} and resets == [True]


# 8. Out of memory: through the chain of causes, and the libraries' allocation failures


def _raised_while_handling(first, second):
    try:
        try:
            raise first
        except Exception:
            raise second
    except Exception as error:
        return error


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB."),
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] err == 0. DefaultCPUAllocator: can't allocate memory"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED"),
    RuntimeError("cuFFT error: CUFFT_ALLOC_FAILED"),
    RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"),
    _raised_while_handling(torch.OutOfMemoryError("CUDA out of memory."), RuntimeError("CUDA graph capture failed")),
], ids=["torch", "python", "cpu", "cublas", "cudnn", "cudnn9", "cufft", "cuda_runtime", "in_context"])
def test_out_of_memory_is_recognised(error):
    assert runner._is_out_of_memory(error)


@pytest.mark.parametrize("error", [RuntimeError("cudnn RNN backward can only be called in training mode"),
                                   ValueError("v has 3 elements; expected 4"),
                                   _raised_while_handling(KeyError("x"), RuntimeError("capture failed"))])
def test_other_errors_are_not_out_of_memory(error):
    assert not runner._is_out_of_memory(error)


def test_an_oom_raised_from_during_capture_is_recorded_as_oom(probe):
    cls, strategy = probe

    def capture_fails(calls):
        try:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        except torch.OutOfMemoryError as error:
            raise RuntimeError("CUDA graph capture failed") from error

    cls.hook = staticmethod(capture_fails)
    row = _cell()
    assert row["status"] == "oom" and "capture failed" in row["error"]


# 9. The fingerprint: TF32 state, every GPU, the driver


def test_the_fingerprint_records_the_float32_precision():
    with precision.strict_fp32():
        strict = machine.fingerprint(1)
        _set_legacy(True)
        relaxed = machine.fingerprint(1)
    assert strict["tf32"] is False and relaxed["tf32"] is True
    assert "cudnn.conv=ieee" in strict["fp32_precision"] and "cudnn.conv=tf32" in relaxed["fp32_precision"]


def test_the_fingerprint_describes_every_gpu_and_the_driver(monkeypatch):
    devices = [types.SimpleNamespace(name="NVIDIA H200", major=9, minor=0, total_memory=141 * 2 ** 30),
               types.SimpleNamespace(name="NVIDIA A100", major=8, minor=0, total_memory=80 * 2 ** 30)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: devices[index])
    monkeypatch.setattr(machine.subprocess, "run", lambda *args, **kwargs: subprocess.CompletedProcess(
        args, 0, stdout="580.65.06\n580.65.06\n"))
    assert machine.gpus() == "NVIDIA H200 (sm 9.0, 141.0 GiB); NVIDIA A100 (sm 8.0, 80.0 GiB)"
    assert machine.gpu_driver() == "580.65.06"


# 10. JAX on a CUDA run


def test_jax_preallocation_is_off_before_jax_is_imported():
    import os

    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"


def test_a_cuda_run_with_a_cpu_jaxlib_says_so(monkeypatch):
    monkeypatch.setattr(jax_side, "available", lambda: True)
    monkeypatch.setattr(jax_side, "devices", lambda: ("cpu",))
    assert "jax-cuda" in jax_side.missing_cuda_backend(["cpu", "cuda"])
    assert jax_side.missing_cuda_backend(["cpu"]) is None
    monkeypatch.setattr(jax_side, "devices", lambda: ("cpu", "cuda"))
    assert jax_side.missing_cuda_backend(["cpu", "cuda"]) is None
