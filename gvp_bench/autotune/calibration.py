"""Calibration: time the candidates briefly on the call itself and name the fastest.

Each candidate runs once to warm up (on CUDA its peak memory is measured), then again until
its timed runs add up to :data:`TARGET_S` or number :data:`MAX_RUNS` (at least one); its time
is its fastest run, the warm-up included (on a shared machine a run is slowed by whatever else
runs, never sped up). A candidate stops as soon as its fastest run took over
:data:`ABORT_RATIO` times the best time so far plus :data:`NOISE_S` (a preempted run on a shared
machine takes milliseconds more): it cannot win. A candidate over the memory budget or out of
memory is left out; one that raises UnsupportedError is skipped with its reason. Candidates are
tried in the order given (the fixed rule's first), so a good time is known early and a slow
candidate costs one call.

Calibration leaves no trace: every run starts from the caller's random state and restores it
afterwards, warnings are silenced, and each strategy's ``last_workarounds`` is put back. The
answer the caller gets comes from one ordinary call of the winner, made by auto afterwards.
"""

import contextlib
import time
import warnings
from dataclasses import dataclass, field

import torch

from ..errors import UnsupportedError

TARGET_S = 0.01
MAX_RUNS = 10
ABORT_RATIO = 4.0
NOISE_S = 0.01


@dataclass
class Calibration:
    times: dict = field(default_factory=dict)        # name -> fastest run, seconds
    left_out: dict = field(default_factory=dict)     # name -> why it was left out (memory)
    unsupported: dict = field(default_factory=dict)  # name -> UnsupportedError reason

    @property
    def winner(self):
        return min(self.times, key=self.times.get) if self.times else None

    def summary(self):
        """"forward_dual 1.2 ms vs func_vmap 1.9 ms, ..." (fastest first)."""
        ranked = sorted(self.times.items(), key=lambda item: item[1])
        return " vs ".join(f"{name} {seconds * 1e3:.3g} ms" for name, seconds in ranked)


@contextlib.contextmanager
def _no_trace(strategy, devices):
    previous = strategy.__dict__.get("last_workarounds")
    try:
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if previous is None:
            strategy.__dict__.pop("last_workarounds", None)
        else:
            strategy.last_workarounds = previous


def _timed(run, device):
    """Seconds one run takes (CUDA synchronised)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _warm_up(run, device):
    """Seconds and peak bytes (above what was allocated before; 0 on the CPU) of the first run."""
    if device.type != "cuda":
        return _timed(run, device), 0
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    seconds = _timed(run, device)
    return seconds, torch.cuda.max_memory_allocated(device) - before


def _out_of_memory(error):
    return isinstance(error, torch.cuda.OutOfMemoryError)


def calibrate(strategies, product, func, params, args, budget):
    """Time ``strategies`` (name -> Strategy, in trial order) on the product; a :class:`Calibration`."""
    device = params[0].device
    devices = sorted({p.device.index or 0 for p in params if p.is_cuda})
    outcome = Calibration()
    best = float("inf")
    for name, strategy in strategies.items():
        def run():
            strategy.compute(product, func, params, *args)
        with _no_trace(strategy, devices):
            try:
                seconds, peak = _warm_up(run, device)
                if peak > budget:
                    outcome.left_out[name] = f"peak {peak / 2 ** 30:.3g} GiB, over the memory budget"
                    continue
                samples = [seconds]
                while (min(samples) <= ABORT_RATIO * best + NOISE_S and sum(samples[1:]) < TARGET_S
                       and len(samples) <= MAX_RUNS):
                    samples.append(_timed(run, device))
            except UnsupportedError as error:
                outcome.unsupported[name] = error.reason
                continue
            except RuntimeError as error:
                if not _out_of_memory(error):
                    raise
                torch.cuda.empty_cache()
                outcome.left_out[name] = "out of memory"
                continue
        outcome.times[name] = min(samples)
        best = min(best, outcome.times[name])
    return outcome
