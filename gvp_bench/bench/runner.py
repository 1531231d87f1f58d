"""The benchmark loop: measure each cell, give it a status, write it at once, and go on.

A cell is measured in this order, all under its time limit: set-up (:func:`~.workloads.prepare`),
one warm-up call (timed alone as ``first_call_s``: compilation, calibration and one-time set-up
are kept out of the median; it also tells which workarounds the strategy needed), for a strategy
that records a CUDA graph on its second call (cuda_graphs) that call too, timed alone as
``capture_s`` with its peak memory (the graph's pool is allocated then: a replay allocates
nothing), the timed calls, one call for peak memory (torch's allocations: not for JAX side-by-side
cells; not for a recording strategy, whose peak is its recording's), and the
timed plain forward pass of the same workload (JAX's own for a JAX cell), right after the product
so that both see the machine in the same state. A cell's status:

- ``ok``: measured; ``forward_ratio`` = median / forward median. With ``measure="instructions"``
  (inside a run under callgrind), instructions per call replace the times and the peak
  (:func:`~.callgrind.count_cell`), and ``forward_ratio`` is their ratio.
- ``unsupported``: the strategy raised :class:`gvp_bench.UnsupportedError`.
- ``oom``: out of memory (``torch.OutOfMemoryError`` or ``MemoryError`` anywhere in the chain of
  causes, as when capturing a CUDA graph fails for want of memory; an allocation that failed inside
  cuBLAS, cuDNN, cuFFT or cuSOLVER, ``*_ALLOC_FAILED``; or the CPU allocator's failure); the
  memory is given back (``torch.cuda.empty_cache()``) before the next cell.
- ``timeout``: the cell ran past its time limit (``SIGALRM``, in the main thread; a single
  long kernel finishes before the limit takes effect).
- ``skipped``: one call would not fit the cell's time budget, by counting or as measured
  (:mod:`~gvp_bench.bench.budget`); its first call's time is kept where one was made.
- ``error``: anything else.

After every cell the strategies release what they keep per workload (``Strategy.release``: compiled
graphs, CUDA graphs and their pools), so a cell's memory is not held through the rest of the run.
Every status but ``ok`` carries a one-line reason in ``error``. A cell that leaves the process state
changed (gvp_bench.process_state: a mode, level or flag a failure left entered) has it put back
before the next cell, and says so in ``error`` (an ``ok`` cell that did becomes ``error``: the
cells after it would have run in the wrong mode). Each row is written (and
fsynced) by the :class:`~gvp_bench.results.ResultsWriter` before the next cell starts, so a run
stopped at any point keeps every finished cell; Ctrl-C stops the loop between two writes.
"""

import contextlib
import gc
import re
import signal
import statistics
import sys
import threading
import time
import warnings
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .. import jax_side, process_state
from ..errors import UnsupportedError, one_line
from ..registry import release_all
from ..results import CELL_KEY
from . import callgrind, measure
from .budget import Budget, OverBudget
from .workloads import framework, measured_sizes, prepare

MAX_REASON = 300  # characters of an error message kept in a row


class CellTimeout(BaseException):
    """A cell ran past its time limit. A BaseException, so that no ``except Exception`` in the
    code being measured can swallow it."""


@dataclass(frozen=True)
class Settings:
    threads: int          # torch intra-op threads while measuring
    min_run_time: float   # see measure.time_call
    max_run_time: float
    timeout_s: float      # per cell; 0 or None: no limit
    budget_s: float | None = None  # per cell, past which it is skipped (gvp_bench.bench.budget); None: no budget
    measure: str = "time"  # or "instructions": counted under callgrind (gvp_bench.bench.callgrind)


@contextlib.contextmanager
def time_limit(seconds, expired=None):
    """Raise ``expired()`` (by default :class:`CellTimeout`) in the block after ``seconds``; no limit when
    falsy, or off the main thread. Inside a limit that ends sooner, that one alone acts; inside a
    later one, the outer limit's remaining time runs on after the block."""
    outer = signal.getitimer(signal.ITIMER_REAL)[0] if seconds else 0.0
    if not seconds or threading.current_thread() is not threading.main_thread() or 0 < outer <= seconds:
        yield
        return

    def expire(signum, frame):
        raise expired() if expired else CellTimeout(f"over the time limit of {seconds:g} s per cell")

    previous = signal.signal(signal.SIGALRM, expire)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-6))


def _one_line(error, with_type=True):
    text = one_line(error, with_type)
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 3] + "..."


# The messages of a failed allocation: the CPU allocator's, the CUDA runtime's, and the *_ALLOC_FAILED statuses
# of cuBLAS, cuDNN, cuFFT and cuSOLVER (cuDNN 9 also says *_ALLOCATION_FAILED)
_OUT_OF_MEMORY = re.compile(r"can't allocate memory|CUDA out of memory|CUDA error: out of memory|_ALLOC_FAILED"
                            r"|_ALLOCATION_FAILED|RESOURCE_EXHAUSTED")  # the last: XLA's, for a JAX row


def _is_out_of_memory(error):
    """Whether ``error``, or any error it was raised from or while handling, says the memory ran out."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (torch.OutOfMemoryError, MemoryError)) or _OUT_OF_MEMORY.search(str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def _measure(workload, settings, parameters, outputs):
    """The measured fields of an ok row."""
    def time_call(call):
        return measure.time_call(call, device=workload.device, threads=settings.threads,
                                 min_run_time=settings.min_run_time, max_run_time=settings.max_run_time)

    cell = prepare(workload)
    budget = Budget(settings.budget_s)
    budget.check_counted(cell, parameters, outputs)
    with time_limit(budget.first_call_limit(cell), budget.first_call_expired):
        first_call_s = measure.time_first_call(cell.product, workload.device)  # an unsupported product fails here
    capture_s = peak = None
    if getattr(cell.strategy, "records_on_second_call", False):
        capture_s, peak = measure.time_and_peak(cell.product, workload.device)
    if budget.needs_another_call(first_call_s):
        with time_limit(budget.per_call, budget.call_expired(first_call_s)):
            budget.check_call(measure.time_first_call(cell.product, workload.device), first_call_s)
    workarounds = cell.workarounds()
    chunking = cell.chunking()
    common = dict(first_call_s=first_call_s, workarounds=workarounds,
                  choice=getattr(cell.strategy, "last_choice", None), **chunking)
    if settings.measure == "instructions":
        return dict(common, **callgrind.count_cell(cell))
    timing = time_call(cell.product)
    # torch's allocator counters do not see JAX's buffers: a jax row's peak is left unmeasured
    if capture_s is None and cell.framework != jax_side.FRAMEWORK:
        peak = measure.peak_bytes(cell.product, workload.device)
    forward = time_call(cell.forward)
    return dict(common, median_s=timing.median_s, iqr_s=timing.iqr_s, runs=timing.runs, samples_s=timing.samples_s,
                thread_cpu_median_s=statistics.median(timing.cpu_samples_s),
                thread_cpu_samples_s=timing.cpu_samples_s, capture_s=capture_s, peak_bytes=peak,
                forward_median_s=forward.median_s, forward_ratio=timing.median_s / forward.median_s)


def cell_row(workload, settings):
    """The fields of ``workload``'s row known before measuring: its key, framework, threads and sizes."""
    kind = framework(workload.strategy)
    threads = jax_side.pool_threads() if kind == jax_side.FRAMEWORK else settings.threads
    return dict(zip(CELL_KEY, workload.key()), framework=kind, threads=threads, **measured_sizes(workload))


def measure_cell(workload, settings):
    """One results row for ``workload``: measured, or with the status and reason of why not."""
    row = cell_row(workload, settings)
    state = process_state.snapshot()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # workarounds are recorded in the row, not warned per call
            with time_limit(settings.timeout_s):
                measured = _measure(workload, settings, row["parameters"], row["outputs"])
        row.update(measured, status="ok")  # only once the time limit is off: a late alarm cannot leave half a row
    except OverBudget as over:
        row.update(status="skipped", error=str(over), first_call_s=over.first_call_s)
    except CellTimeout as error:
        row.update(status="timeout", error=str(error))
    except UnsupportedError as error:
        row.update(status="unsupported", error=_one_line(error, with_type=False))
    except Exception as error:  # a failing cell is recorded, and the run goes on
        row.update(status="oom" if _is_out_of_memory(error) else "error", error=_one_line(error))
    release_all()
    _put_back_state(row, state)
    # unsupported: refused with little allocated, freed with the error; a full collection costs more than such a cell
    if row["status"] not in ("ok", "unsupported"):
        gc.collect()  # the failed cell's tensors, before the next cell (and before CUDA's cache is emptied)
        if torch.device(workload.device).type == "cuda":
            torch.cuda.empty_cache()
    return row


def _put_back_state(row, state):
    """Put back what the cell left changed of the process state, and record it in the row."""
    leaked = process_state.restore(state)
    if not leaked:
        return
    note = f"left the process state changed ({', '.join(leaked)}), put back"
    if row["status"] == "ok":
        row.update(status="error", error=f"measured, but {note}")
    else:
        row["error"] = f"{row['error']}; {note}"


def run(workloads, writer, settings, *, progress=True, isolate=False):
    """Measure the ``workloads`` the writer does not have yet, writing each row as it is measured; with
    ``isolate``, each cell in a fresh process (gvp_bench.bench.isolate).

    Returns the rows measured. A KeyboardInterrupt propagates after the rows written so far.
    """
    if isolate:
        from .isolate import measure_cell_in_a_process as measure_one
    else:
        measure_one = measure_cell
    todo = [workload for workload in workloads if workload.key() not in writer.done]
    rows = []
    with tqdm(todo, desc="gvp-bench", unit="cell", file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
        for workload in bar:
            bar.set_postfix_str(str(workload), refresh=False)
            row = measure_one(workload, settings)
            writer.write(row)
            rows.append(row)
    return rows
