"""``gvp-bench run --isolate``: each cell in a fresh Python process, so that a crash ends only that cell.

In one process a failed cell is recorded and its state put back (gvp_bench.bench.runner), but a
crash (a segfault, an abort inside a kernel, the process killed for memory) ends the process and
with it the run. With ``--isolate`` each cell runs in a child process of its own, started fresh
(``multiprocessing``'s spawn, as asv runs each benchmark): the child measures the cell as the
runner does in-process and sends back its row. A child that dies without a row gives its cell an
``error`` row naming the signal ("the cell's process crashed: killed by SIGSEGV"), and the run
goes on with the next cell. A child that hangs past the cell's time limit plus
:data:`START_ALLOWANCE_S` (a kernel the in-process alarm cannot interrupt) is killed and recorded
as ``timeout``.

One process per cell, rather than per workload (model and size): a crash then costs only its own
cell, and no cell's measurement depends on what ran before it in the process (every first call,
``first_call_s``, is a process's first, including one-time set-up such as inductor's start). The
cost is a Python interpreter and ``import torch`` per cell (see docs/robustness.md for the measured
figure); use it for suites where a crash must not end the run, not by default.

Strategies registered in-process (``gvp_bench.register``) are registered again in the child when
their factory can be pickled (a class importable by its name); the entry-point strategies load
there as everywhere.
"""

import multiprocessing
import pickle
import signal

import torch

from ..registry import _factories, register
from . import runner

START_ALLOWANCE_S = 120.0  # seconds for the child to start, import torch and build the cell, beyond its time limit

_SPAWN = multiprocessing.get_context("spawn")


def _measure_in_child(connection, workload, settings, factory):
    """The child process: measure the cell as the runner does in-process and send the row back."""
    if factory is not None:
        register(workload.strategy, factory, replace=True)
    torch.set_num_threads(settings.threads)
    connection.send(runner.measure_cell(workload, settings))
    connection.close()


def _picklable_factory(name):
    factory = _factories.get(name)
    try:
        pickle.dumps(factory)
    except (pickle.PicklingError, AttributeError, TypeError):
        return None
    return factory


def _how_it_ended(exitcode):
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"the cell's process crashed: killed by {name} (signal {number})"
    return f"the cell's process exited with code {exitcode} without a result"


def measure_cell_in_a_process(workload, settings):
    """One results row for ``workload``, measured in a fresh process; a crash or hang is the cell's row."""
    receiver, sender = _SPAWN.Pipe(duplex=False)
    child = _SPAWN.Process(target=_measure_in_child, name=f"gvp-bench cell {workload}", daemon=True,
                           args=(sender, workload, settings, _picklable_factory(workload.strategy)))
    child.start()
    sender.close()  # the child holds the only writing end: its death ends the pipe
    deadline = (settings.timeout_s or 0) + START_ALLOWANCE_S if settings.timeout_s else None
    row, killed = None, False
    try:
        if receiver.poll(deadline):
            row = receiver.recv()
    except EOFError:  # the child died before sending its row
        pass
    finally:
        if row is None and child.is_alive():  # hung past the deadline, or interrupted (KeyboardInterrupt)
            child.kill()
            killed = True
        child.join()
        receiver.close()
    if row is not None:
        return row
    row = runner.cell_row(workload, settings)
    if killed:
        return dict(row, status="timeout",
                    error=f"the cell's process did not finish within {deadline:g} s (its time limit and "
                          f"{START_ALLOWANCE_S:g} s to start); killed")
    return dict(row, status="error", error=_how_it_ended(child.exitcode))
