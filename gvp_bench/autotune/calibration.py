"""Calibration: time the candidates briefly on the call itself and name the fastest.

First every candidate runs once, in the order given (the fixed rule's first), to warm up: one
that raises UnsupportedError is skipped with its reason, one that raises any other exception
is skipped with the exception (the strategy's own failure, or the caller's that every candidate
raises: auto tells them apart); on CUDA its peak memory is measured, and one over the memory
budget or out of memory is left out. A candidate that fails in a later round leaves the race the
same way. Then the candidates run in rounds,
one run each per round, so that a burst of load from elsewhere on a shared machine slows them
all alike, until the rounds have taken :data:`TARGET_S` per candidate or :data:`MAX_ROUNDS`
rounds (at least one round). A candidate's time is its fastest run, the warm-up included (a run
is slowed by whatever else runs, never sped up). A candidate stops once it cannot win: after
:data:`RUNS_TO_TELL` runs, when its fastest is over :data:`ABORT_RATIO` times the best plus
:data:`NOISE_S`; before that only when it is over :data:`SLOW_RATIO` times the best plus
:data:`SLOW_S`. The first two calls of a strategy in a process can take hundreds of
milliseconds, then a few more, of one-time set-up, and on a machine shared with other jobs
three runs were not enough to get one undisturbed. So a slow candidate costs five runs, an expensive hopeless one its warm-up.

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
from ..process_state import cuda_devices

TARGET_S = 0.03
MAX_ROUNDS = 20
RUNS_TO_TELL = 5
ABORT_RATIO = 2.0
NOISE_S = 0.002
SLOW_RATIO = 10.0
SLOW_S = 1.0


@dataclass
class Calibration:
    times: dict = field(default_factory=dict)        # name -> fastest run, seconds
    left_out: dict = field(default_factory=dict)     # name -> why it was left out (memory)
    unsupported: dict = field(default_factory=dict)  # name -> UnsupportedError reason
    failed: dict = field(default_factory=dict)       # name -> the exception it raised (any other)

    @property
    def winner(self):
        return min(self.times, key=self.times.get) if self.times else None

    def summary(self):
        """The times, fastest first: "<name> <time> ms vs <name> <time> ms ..."."""
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


class _Candidate:
    """One strategy's runs of the product: timed, CUDA synchronised, without a trace."""

    def __init__(self, strategy, product, func, params, args):
        self.strategy, self.product, self.func, self.params, self.args = strategy, product, func, params, args
        self.device = params[0].device
        self.devices = cuda_devices(params)

    def _synchronize(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self):
        """Seconds one run takes."""
        with _no_trace(self.strategy, self.devices):
            self._synchronize()
            start = time.perf_counter()
            self.strategy.compute(self.product, self.func, self.params, *self.args)
            self._synchronize()
            return time.perf_counter() - start

    def warm_up(self):
        """Seconds and peak bytes (above what was allocated before; 0 on the CPU) of a first run."""
        if self.device.type != "cuda":
            return self.run(), 0
        self._synchronize()
        before = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        seconds = self.run()
        return seconds, torch.cuda.max_memory_allocated(self.device) - before


def _cannot_win(fastest, best, runs):
    """Whether a candidate whose fastest of ``runs`` runs took ``fastest`` seconds should stop."""
    if runs >= RUNS_TO_TELL:
        return fastest > ABORT_RATIO * best + NOISE_S
    return fastest > SLOW_RATIO * best + SLOW_S


@contextlib.contextmanager
def _failure_recorded(outcome, name):
    """Record a candidate that fails (out of CUDA memory: left out; UnsupportedError: unsupported; any other
    exception: failed) and take it out of the race, instead of failing the call."""
    try:
        yield
        return
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        outcome.left_out[name] = "out of memory"
    except UnsupportedError as error:
        outcome.unsupported[name] = error.reason
    except Exception as error:  # noqa: BLE001 - auto hands over on any failure of a candidate
        outcome.failed[name] = error
    outcome.times.pop(name, None)


def calibrate(strategies, product, func, params, args, budget):
    """Time ``strategies`` (name -> Strategy, in trial order) on the product; a :class:`Calibration`."""
    outcome = Calibration()
    racing = {}
    for name, strategy in strategies.items():
        candidate = _Candidate(strategy, product, func, params, args)
        with _failure_recorded(outcome, name):
            seconds, peak = candidate.warm_up()
            if peak > budget:
                outcome.left_out[name] = f"peak {peak / 2 ** 30:.3g} GiB, over the memory budget"
                continue
            outcome.times[name] = seconds
            racing[name] = candidate
    spent, rounds = 0.0, 0
    while racing and rounds < MAX_ROUNDS and (rounds == 0 or spent < TARGET_S * len(racing)):
        best = min(outcome.times.values())
        for name, candidate in list(racing.items()):
            if _cannot_win(outcome.times[name], best, runs=1 + rounds):
                del racing[name]
                continue
            with _failure_recorded(outcome, name):
                seconds = candidate.run()
                spent += seconds
                outcome.times[name] = min(outcome.times[name], seconds)
            if name not in outcome.times:
                del racing[name]
        rounds += 1
    return outcome
