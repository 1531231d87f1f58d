"""``gvp-bench run --isolate``: each cell in a fresh Python process, so that a crash ends only that cell.

In one process a failed cell is recorded and its state put back (gvp_bench.bench.runner), but a
crash (a segfault, an abort inside a kernel, the process killed for memory) ends the process and
with it the run. With ``--isolate`` each cell runs in a child process of its own, a fresh
interpreter (``python -m gvp_bench.bench.isolate``, as asv runs each benchmark in its own
process): the child measures the cell as the runner does in-process and writes back its row. A
child that dies without a row gives its cell an ``error`` row naming the signal ("the cell's
process crashed: killed by SIGSEGV (signal 11)") and the last line it wrote to stderr, and the run
goes on with the next cell. A child that hangs past the cell's time limit plus
:data:`START_ALLOWANCE_S` (a kernel the in-process alarm cannot interrupt) is killed and recorded
as ``timeout``.

One process per cell, rather than per workload (model and size): a crash then costs only its own
cell, and no cell's measurement depends on what ran before it in the process (every first call,
``first_call_s``, is a process's first, one-time set-up such as inductor's start included). The
cost is a Python interpreter and ``import torch`` per cell (docs/robustness.md has the measured
figure); use it for suites where a crash must not end the run, not by default.

The child gets the parent's ``sys.path``, and strategies registered in-process
(``gvp_bench.register``) are registered again in the child when their factory can be pickled (a
class importable by its name); the entry-point strategies load there as everywhere.
"""

import os
import pickle
import signal
import subprocess
import sys

from ..registry import _factories, register
from . import runner

START_ALLOWANCE_S = 120.0  # seconds for the child to start, import torch and build the cell, beyond its time limit


def _picklable_factory(name):
    factory = _factories.get(name)
    try:
        pickle.dumps(factory)
    except (pickle.PicklingError, AttributeError, TypeError):
        return None
    return factory


def _last_words(stderr):
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return f"; its last words: {lines[-1][:200]}" if lines else ""


def measure_cell_in_a_process(workload, settings):
    """One results row for ``workload``, measured in a fresh process; a crash or hang is the cell's row."""
    # sys.path first, in a pickle of its own: the child needs it to unpickle a factory defined outside gvp_bench
    job = pickle.dumps(sys.path) + pickle.dumps(dict(workload=workload, settings=settings,
                                                     factory=_picklable_factory(workload.strategy)))
    deadline = settings.timeout_s + START_ALLOWANCE_S if settings.timeout_s else None
    row = runner.cell_row(workload, settings)
    try:
        child = subprocess.run([sys.executable, "-m", __name__], input=job, capture_output=True, timeout=deadline)
    except subprocess.TimeoutExpired:  # subprocess.run killed it
        return dict(row, status="timeout", error=f"the cell's process did not finish within {deadline:g} s "
                                                 f"(its time limit and {START_ALLOWANCE_S:g} s to start); killed")
    if child.returncode == 0 and child.stdout:
        return pickle.loads(child.stdout)
    if child.returncode < 0:
        number = -child.returncode
        name = signal.Signals(number).name if number in signal.valid_signals() else "a signal"
        reason = f"the cell's process crashed: killed by {name} (signal {number})"
    else:
        reason = f"the cell's process exited with code {child.returncode} without a result"
    return dict(row, status="error", error=reason + _last_words(child.stderr))


def _measure_here():
    """The child: read the job from stdin, measure the cell, write the row to stdout (anything the cell
    itself prints goes to stderr, so that stdout carries the row alone)."""
    sys.path[:] = pickle.load(sys.stdin.buffer)
    job = pickle.load(sys.stdin.buffer)
    row_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    if job["factory"] is not None:
        register(job["workload"].strategy, job["factory"], replace=True)
    import torch

    torch.set_num_threads(job["settings"].threads)
    row = runner.measure_cell(job["workload"], job["settings"])
    pickle.dump(row, row_out)
    row_out.close()


if __name__ == "__main__":
    _measure_here()
