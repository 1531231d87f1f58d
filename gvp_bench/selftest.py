"""``gvp-bench selftest``: every CUDA path of gvp-bench exercised once, in minutes, one line per check.

Run it first on a new GPU machine (``gvp-bench selftest --device cuda``): each check prints ``ok``,
``FAIL`` or ``skip`` with what it found, and the command exits 1 on any FAIL. On the CPU it runs the
same checks there, so CI exercises the command itself; a check that needs CUDA prints ``skip`` with
the reason, never ok. ``--quick`` checks fewer strategies per case and runs fewer ops.

The checks:

- conformance (gvp_bench.conformance: against the float64 oracle, TF32 off) of the cases where
  CUDA takes other paths than the CPU: cuDNN convolutions (cnn), the backward pass of a cuDNN LSTM
  in eval mode, forward AD through a cuDNN GRU in train mode, scaled_dot_product_attention
  (transformer), a Jacobian through BatchNorm in train mode (resnet), dropout in a batch of J v,
  and the compiled and cuda_graphs strategies. A strategy may be unsupported only where it says
  so by design (func_vmap's batch of J v through CUDA's fused dropout); any other unsupported or
  failing cell fails the check;
- cuda_graphs against eager forward_dual over its warm-up, recording and replays, with new vectors
  on every call and the params updated in place between rounds;
- a cell that runs out of memory (on CUDA by asking for more than any device has; on the CPU, where
  the allocator's failure cannot be provoked safely, a strategy raises ``torch.OutOfMemoryError``)
  is recorded as ``oom``, and the memory it held is given back;
- a batch of J v under a memory budget of a quarter of its unchunked peak is computed in chunks,
  with the unchunked result and a lower peak;
- a tiny ``gvp-bench run`` over the mlp and the lstm (and cuda_graphs on CUDA, whose rows must
  carry ``capture_s``): no cell ends in error, oom or timeout.
"""

import contextlib
import io
import os
import sys
import tempfile
import time
import warnings
import weakref
from dataclasses import dataclass, field

import torch

from . import registry, zoo
from .bench import measure, runner
from .bench.machine import gpus
from .bench.workloads import Workload
from .chunking import MemoryBudgetWarning
from .conformance import case_by_name, run_cell
from .contract import Strategy
from .precision import fp32_state, strict_fp32
from .results import load

FLOAT32 = dict(rtol=1e-4, atol=1e-5)  # the conformance tolerances of float32
OOM_HELD_BYTES = 64 * 2 ** 20  # what the out-of-memory cell holds before it runs out


class Skip(Exception):
    """The check makes no sense on this device; the message says why."""


@dataclass(frozen=True)
class Conformance:
    """Conformance cells of one case: every strategy (``quick`` with --quick) on every function."""

    label: str
    case: str
    functions: tuple
    strategies: tuple
    quick: tuple
    may_refuse: dict = field(default_factory=dict)  # strategy -> the device type where it is unsupported by design
    needs_cuda: bool = False


CONFORMANCE = (
    Conformance("cnn (cuDNN convolutions)", "zoo_cnn_eval", ("model_jvp", "model_vjp"),
                ("forward_dual", "double_backward", "func_vmap"), ("func_vmap",)),
    Conformance("lstm eval VJP (cuDNN RNN backward in eval mode)", "zoo_lstm_eval", ("model_vjp",),
                ("double_backward", "func_vmap"), ("double_backward",)),
    Conformance("gru train JVP (forward AD through a cuDNN RNN)", "zoo_gru_train", ("model_jvp",),
                ("forward_dual", "func_vmap"), ("forward_dual",)),
    Conformance("transformer (scaled_dot_product_attention)", "zoo_transformer_eval", ("model_jvp", "model_vjp"),
                ("forward_dual", "double_backward", "func_vmap"), ("forward_dual",)),
    Conformance("resnet train Jacobian (BatchNorm batch statistics)", "zoo_resnet_train", ("full_jacobian",),
                ("func_vmap", "jacrev_chunked"), ("func_vmap",)),
    Conformance("dropout batch_jvp (one mask per call)", "dropout_train", ("batch_jvp",),
                ("auto", "forward_dual", "func_vmap"), ("auto", "func_vmap"), may_refuse={"func_vmap": "cuda"}),
    Conformance("compiled (torch.compile)", "zoo_mlp_eval", ("model_jvp",), ("compiled",), ("compiled",)),
    Conformance("cuda_graphs (CUDA graphs)", "zoo_mlp_eval", ("model_jvp", "model_vjp"), ("cuda_graphs",),
                ("cuda_graphs",), needs_cuda=True),
)


def _first_line(text):
    return str(text).strip().splitlines()[0] if str(text).strip() else ""


def _conformance(entry):
    def check(device, quick):
        if entry.needs_cuda and device != "cuda":
            raise Skip("CUDA graphs record CUDA kernels; this run has no CUDA device")
        case = case_by_name(entry.case)
        cells = [(strategy, function) for strategy in (entry.quick if quick else entry.strategies)
                 for function in entry.functions]
        passed, refused, failed = 0, [], []
        for strategy, function in cells:
            outcome = run_cell(strategy, case, function, torch.float32, device)
            if outcome.status == "pass":
                passed += 1
            elif outcome.status == "unsupported" and entry.may_refuse.get(strategy) == device:
                refused.append(f"{strategy} refuses it as documented ({_first_line(outcome.detail)})")
            else:
                failed.append(f"{strategy} {function}: {outcome.status}: {_first_line(outcome.detail)}")
        assert not failed, "; ".join(failed)
        return f"{passed} of {len(cells)} cells pass" + "".join(f"; {why}" for why in refused)
    return check


def _cuda_graphs_replays(device, quick):
    if device != "cuda":
        raise Skip("CUDA graphs record CUDA kernels; this run has no CUDA device")
    entry = zoo.build("mlp", "tiny", device=device)
    graphs, eager = registry.get_strategy("cuda_graphs"), registry.get_strategy("forward_dual")
    generator = torch.Generator().manual_seed(0)
    output_shape = entry.func()().shape
    calls = 0
    try:
        with strict_fp32():
            for _ in range(2):
                for _ in range(3):  # cudagraph trees: the first call warms up, the second records, then replays
                    v = torch.randn(entry.parameter_count, generator=generator).to(device)
                    u = torch.randn(output_shape, generator=generator).to(device)
                    torch.testing.assert_close(graphs.model_jvp(entry.model, entry.x, v),
                                               eager.model_jvp(entry.model, entry.x, v), **FLOAT32)
                    for got, expected in zip(graphs.model_vjp(entry.model, entry.x, u),
                                             eager.model_vjp(entry.model, entry.x, u)):
                        torch.testing.assert_close(got, expected, **FLOAT32)
                    calls += 2
                with torch.no_grad():
                    for param in entry.params:
                        param.mul_(1.5)  # in place: the recorded graph must read the params' new values
    finally:
        graphs.release()
    return f"{calls} calls (warm-up, recording, replays) with new vectors and params updated in place match eager"


class _OutOfMemory(Strategy):
    """Holds a block of memory, then runs out: on CUDA by asking for more than any device has; on the CPU,
    where the allocator's failure cannot be provoked safely, by raising torch.OutOfMemoryError."""

    name = "selftest_out_of_memory"
    held = None  # a weak reference to the block the latest call held

    def _run_out(self, func, params, *args):
        block = torch.empty(OOM_HELD_BYTES, dtype=torch.uint8, device=params[0].device)
        type(self).held = weakref.ref(block)
        if block.is_cuda:
            torch.empty(2 ** 62, dtype=torch.uint8, device=block.device)
        raise torch.OutOfMemoryError("out of memory, simulated by gvp-bench selftest on the CPU")

    _jvp = _vjp = _batch_jvp = _batch_vjp = _full_jacobian = _run_out


def _out_of_memory_cell(device, quick):
    registry.register(_OutOfMemory.name, _OutOfMemory, replace=True)
    try:
        allocated = torch.cuda.memory_allocated(device) if device == "cuda" else None
        settings = runner.Settings(threads=torch.get_num_threads(), min_run_time=0.01, max_run_time=0.05, timeout_s=60)
        row = runner.measure_cell(Workload("jvp", "mlp", "tiny", _OutOfMemory.name, device, "float32"), settings)
    finally:
        registry.unregister(_OutOfMemory.name)
    assert row["status"] == "oom", f"recorded as {row['status']}: {row.get('error')}"
    assert _OutOfMemory.held is not None and _OutOfMemory.held() is None, "the block the cell held is still alive"
    given_back = "the block it held was freed"
    if device == "cuda":
        now = torch.cuda.memory_allocated(device)
        assert now <= allocated, f"{now - allocated} bytes more allocated after the cell than before"
        given_back += f", {torch.cuda.memory_allocated(device)} bytes allocated as before the cell"
    return f"recorded as oom ({row['error']}); {given_back}"


def _memory_budget_chunks(device, quick):
    from implementations.func_vmap import FuncVmap

    entry = zoo.build("mlp", "tiny", device=device)
    func, params, rows = entry.func(), entry.params, 64
    vs = torch.randn(rows, entry.parameter_count, generator=torch.Generator().manual_seed(0)).to(device)
    whole = FuncVmap(chunk_size=None)
    expected = whole.batch_jvp(func, params, vs)
    peak_whole = measure.peak_bytes(lambda: whole.batch_jvp(func, params, vs), device)
    budgeted = FuncVmap(memory_budget=max(peak_whole // 4, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MemoryBudgetWarning)  # one row over the budget: still chunks, row by row
        result = budgeted.batch_jvp(func, params, vs)
        chunk = budgeted.last_chunk_size
        peak_chunked = measure.peak_bytes(lambda: budgeted.batch_jvp(func, params, vs), device)
    assert chunk is not None and chunk < rows, f"{chunk} rows at once of {rows} under a quarter of the peak"
    with strict_fp32():
        torch.testing.assert_close(result, expected, **FLOAT32)
    assert peak_chunked <= peak_whole, f"chunked peak {peak_chunked} bytes over the unchunked {peak_whole}"
    return (f"{chunk} of {rows} rows at once under a budget of {peak_whole // 4} bytes; peak {peak_chunked} "
            f"against {peak_whole} bytes unchunked; the same result")


def _tiny_run(device, quick):
    from . import cli

    names = ["forward_dual", "double_backward", "func_vmap"] + (["cuda_graphs"] if device == "cuda" else [])
    ops = "jvp,vjp" if quick else "jvp,vjp,model_jvp,batch_jvp,full_jacobian"
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "selftest.jsonl")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as errors:
            code = cli.main(["run", "--device", device, "--models", "mlp,lstm", "--ops", ops, "--strategies",
                             ",".join(names), "--no-jax", "--quiet", "--out", out, "--min-run-time", "0.01",
                             "--max-run-time", "0.05"])
        assert code == 0, f"gvp-bench run exited {code}: {_first_line(errors.getvalue())}"
        rows = load(out)
    bad = rows[~rows.status.isin(["ok", "unsupported"])]
    assert bad.empty, "; ".join(f"{r.op} {r.model} {r.strategy}: {r.status}: {_first_line(r.error)}"
                                for r in bad.itertuples())
    recorded = rows[(rows.strategy == "cuda_graphs") & (rows.status == "ok")]
    assert recorded.capture_s.notna().all(), "a cuda_graphs row without its recording time (capture_s)"
    counts = rows.status.value_counts()
    return f"{len(rows)} cells: " + ", ".join(f"{counts[status]} {status}" for status in counts.index)


CHECKS = ([(f"conformance: {entry.label}", _conformance(entry)) for entry in CONFORMANCE]
          + [("cuda_graphs replays", _cuda_graphs_replays), ("out-of-memory cell", _out_of_memory_cell),
             ("memory-budget chunks", _memory_budget_chunks), ("tiny run: mlp, lstm", _tiny_run)])


def run(device, quick=False, out=None):
    """Run every check on ``device``, printing one line each (to ``out``, default stdout); the number of checks
    that failed."""
    out = out or sys.stdout
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device on this machine")
    where = gpus() if device == "cuda" else "the CPU"
    print(f"gvp-bench selftest on {where}, torch {torch.__version__}, TF32 "
          f"{'on' if fp32_state()['tf32'] else 'off'} outside conformance{', quick' if quick else ''}", file=out)
    failures = 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more intra-op threads only add synchronisation
    try:
        for name, check in CHECKS:
            start = time.monotonic()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # workarounds are expected; the checks say what matters
                    status, detail = "ok", check(device, quick)
            except Skip as reason:
                status, detail = "skip", str(reason)
            except Exception as error:  # a check that raises fails, with its reason
                status, detail = "FAIL", f"{type(error).__name__}: {_first_line(error)}"
                failures += 1
            print(f"{status:4} {name} ({time.monotonic() - start:.1f} s): {detail}", file=out, flush=True)
    finally:
        torch.set_num_threads(threads)
    return failures
