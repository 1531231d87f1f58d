"""The benchmark loop: measure each cell, give it a status, write it at once, and go on.

A cell is measured in this order, all under its time limit: set-up (:func:`~.workloads.prepare`),
one warm-up call (timed alone as ``first_call_s``: compilation, calibration and one-time set-up
are kept out of the median; it also tells which workarounds the strategy needed), the timed
calls, one call for peak memory (torch's allocations: not for JAX side-by-side cells), and the
timed plain forward pass of the same workload (JAX's own for a JAX cell), right after the product
so that both see the machine in the same state. A cell's status:

- ``ok``: measured; ``forward_ratio`` = median / forward median.
- ``unsupported``: the strategy raised :class:`gvp_bench.UnsupportedError`.
- ``oom``: out of memory (``torch.OutOfMemoryError``, or the CPU allocator's failure); the
  memory is given back (``torch.cuda.empty_cache()``) before the next cell.
- ``timeout``: the cell ran past its time limit (``SIGALRM``, in the main thread; a single
  long kernel finishes before the limit takes effect).
- ``error``: anything else.

Every status but ``ok`` carries a one-line reason in ``error``. Each row is written (and
fsynced) by the :class:`~gvp_bench.results.ResultsWriter` before the next cell starts, so a run
stopped at any point keeps every finished cell; Ctrl-C stops the loop between two writes.
"""

import contextlib
import gc
import signal
import sys
import threading
import warnings
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .. import jax_side
from ..errors import UnsupportedError
from ..results import CELL_KEY
from . import measure
from .workloads import framework, prepare, sizes

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


@contextlib.contextmanager
def time_limit(seconds):
    """Raise :class:`CellTimeout` in the block after ``seconds``; no limit when falsy, or off the main thread."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise CellTimeout(f"over the time limit of {seconds:g} s per cell")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _one_line(error, with_type=True):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if with_type:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 3] + "..."


def _is_out_of_memory(error):
    return (isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError))
            or "can't allocate memory" in str(error))  # the CPU allocator's RuntimeError


def _measure(workload, settings):
    """The measured fields of an ok row."""
    def time_call(call):
        return measure.time_call(call, device=workload.device, threads=settings.threads,
                                 min_run_time=settings.min_run_time, max_run_time=settings.max_run_time)

    cell = prepare(workload)
    first_call_s = measure.time_first_call(cell.product, workload.device)  # an unsupported product fails here
    workarounds = cell.workarounds()
    chunking = cell.chunking()
    timing = time_call(cell.product)
    # torch's allocator counters do not see JAX's buffers: a jax row's peak is left unmeasured
    peak = measure.peak_bytes(cell.product, workload.device) if cell.framework != jax_side.FRAMEWORK else None
    forward = time_call(cell.forward)
    return dict(median_s=timing.median_s, iqr_s=timing.iqr_s, runs=timing.runs, samples_s=timing.samples_s,
                first_call_s=first_call_s, peak_bytes=peak, forward_median_s=forward.median_s,
                forward_ratio=timing.median_s / forward.median_s, workarounds=workarounds,
                choice=getattr(cell.strategy, "last_choice", None), **chunking)


def measure_cell(workload, settings):
    """One results row for ``workload``: measured, or with the status and reason of why not."""
    kind = framework(workload.strategy)
    threads = jax_side.pool_threads() if kind == jax_side.FRAMEWORK else settings.threads
    row = dict(zip(CELL_KEY, workload.key()), framework=kind, threads=threads, **sizes(workload.model, workload.size))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # workarounds are recorded in the row, not warned per call
            with time_limit(settings.timeout_s):
                measured = _measure(workload, settings)
        row.update(measured, status="ok")  # only once the time limit is off: a late alarm cannot leave half a row
    except CellTimeout as error:
        row.update(status="timeout", error=str(error))
    except UnsupportedError as error:
        row.update(status="unsupported", error=_one_line(error, with_type=False))
    except Exception as error:  # a failing cell is recorded, and the run goes on
        row.update(status="oom" if _is_out_of_memory(error) else "error", error=_one_line(error))
    if row["status"] != "ok":
        gc.collect()  # the failed cell's tensors, before the next cell (and before CUDA's cache is emptied)
        if torch.device(workload.device).type == "cuda":
            torch.cuda.empty_cache()
    return row


def run(workloads, writer, settings, *, progress=True):
    """Measure the ``workloads`` the writer does not have yet, writing each row as it is measured.

    Returns the rows measured. A KeyboardInterrupt propagates after the rows written so far.
    """
    todo = [workload for workload in workloads if workload.key() not in writer.done]
    rows = []
    with tqdm(todo, desc="gvp-bench", unit="cell", file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
        for workload in bar:
            bar.set_postfix_str(str(workload), refresh=False)
            row = measure_cell(workload, settings)
            writer.write(row)
            rows.append(row)
    return rows
