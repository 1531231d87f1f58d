"""Measurement: time per call with torch.utils.benchmark, and peak memory in a separate pass.

Time: :func:`time_call` runs ``torch.utils.benchmark.Timer.adaptive_autorange``: a warm-up that
also picks how many calls make one sample (a block long enough for the timer's overhead to
vanish), then samples until there are at least four and ``min_run_time`` seconds of them and
their IQR is under 10% of the median, or ``max_run_time`` seconds have passed. The Timer fixes
torch's intra-op threads for the measurement. On CUDA its default timer synchronises the device
around every sample, so asynchronous kernels are counted; on the CPU, where nothing is
asynchronous, the plain clock (``timeit.default_timer``, the Timer's default on machines
without an accelerator) keeps the timer's overhead at tens of nanoseconds, so blocks stay
short and samples many. Each sample is seconds per call (a block's time over its call count);
the median, the IQR and the samples themselves are kept.

First call: :func:`time_first_call` times the one call before any other, synchronised on CUDA;
it includes what a strategy does once per workload (compiling, calibrating), which the median,
taken after it, leaves out.

Peak memory: :func:`peak_bytes` calls once more, outside the timed loop. On CUDA, the peak of
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, above what was allocated
before the call (the model, its inputs and the vectors). On the CPU, torch has no peak counter,
so the call runs under ``torch.profiler`` with ``profile_memory=True``, which records every
allocation and free of torch's CPU allocator: walked in time order, the running sum's highest
point is the peak above the start. Both count what torch allocates for tensors (outputs,
intermediates, saved activations, workspaces); neither counts Python objects.
"""

import contextlib
import gc
import os
import sys
import timeit
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity
from torch.utils import benchmark

STABLE_IQR = 0.1  # adaptive_autorange stops once IQR / median is below this


@dataclass(frozen=True)
class Timing:
    median_s: float
    iqr_s: float
    samples_s: list  # seconds per call, one per measured block of calls

    @property
    def runs(self):
        return len(self.samples_s)


def time_call(call, *, device, threads, min_run_time, max_run_time):
    """Time ``call()``, which computes on ``device``, with torch.utils.benchmark (see the module docstring)."""
    clock = {} if torch.device(device).type == "cuda" else {"timer": timeit.default_timer}
    timer = benchmark.Timer(stmt="call()", globals={"call": call}, num_threads=threads, **clock)
    measurement = timer.adaptive_autorange(STABLE_IQR, min_run_time=min_run_time, max_run_time=max_run_time)
    return Timing(measurement.median, measurement.iqr, list(measurement.times))


def time_first_call(call, device):
    """Seconds of one call, kernels included: the first call of a cell, which pays any one-time set-up
    (torch.compile's compilation, auto's calibration)."""
    synchronize(device)
    start = timeit.default_timer()
    call()
    synchronize(device)
    return timeit.default_timer() - start


def time_and_peak(call, device):
    """(seconds, peak bytes) of one call, both measured on that call (see :func:`time_first_call` and
    :func:`peak_bytes`): for the call that records a CUDA graph, which only happens once."""
    seconds = []

    def timed_call():
        start = timeit.default_timer()
        call()
        synchronize(device)
        seconds.append(timeit.default_timer() - start)

    peak = peak_bytes(timed_call, device)
    return seconds[0], peak


def synchronize(device):
    """Wait until the kernels queued on ``device`` have run (nothing to wait for on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def peak_bytes(call, device):
    """The most memory ``call()`` holds at once above what was allocated when it started, in bytes.

    Python's cyclic garbage collector is paused for the call: a collection in the middle would
    free older tensors and hide part of the call's own peak.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return _cuda_peak(call, device) if torch.device(device).type == "cuda" else _cpu_peak(call)
    finally:
        if paused:
            gc.enable()


def _cuda_peak(call, device):
    synchronize(device)
    start = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    call()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - start


def _cpu_peak(call):
    profiler = torch.profiler.profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _native_stderr_silenced():
        profiler.start()
    try:
        call()
    finally:
        with _native_stderr_silenced():
            profiler.stop()
    events = [event for event in profiler.profiler.kineto_results.events()
              if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU]
    held = peak = 0
    for event in sorted(events, key=lambda event: event.start_ns()):
        held += event.nbytes()  # negative for a free
        peak = max(peak, held)
    return peak


@contextlib.contextmanager
def _native_stderr_silenced():
    """Kineto writes a log line to the process's stderr whenever a profiler starts or stops; hide
    those lines (only around start and stop, not around the measured call)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
