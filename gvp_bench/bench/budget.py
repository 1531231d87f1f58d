"""A cell's time budget: a cell that cannot be measured within it is recorded ``skipped``, with why.

Measuring a cell calls its product :data:`CALLS` times at the least: the first call, the timer's
estimate of its block size, one timed block (a call longer than the suite's ``max_run_time`` is
timed in one block of one call) and the memory pass. Where one call takes longer than the budget
over CALLS, the cell cannot be measured within its budget: it is recorded with status ``skipped``
and the reason (how long one call takes, measured or counted), and the run goes on. A skipped
cell is no verdict on the strategy: on a faster machine, or with a larger ``--budget``, it is
measured; compare counts it neither as a regression nor as a win.

Three checks, the cheapest first, so that a hopeless cell costs little of the run:

1. Counting, before any call: the built-in loop strategies make passes one after another
   (:func:`sequential_passes`: forward_dual's Jacobian is one forward-mode pass per parameter,
   reference_loop's J v one backward pass per output element), each at least the work of the
   plain forward pass; their number times the forward pass's fastest time (of a few calls) is a
   lower bound of one call.
2. The first call runs under an alarm of the whole budget (it may pay what a process does once:
   the first cell of a run imports and initialises more than its own call). Not where the first
   call sets up what later calls reuse: compiling (``costly_first_call``, and the JAX rows' jit)
   and auto's calibration are part of what the cell measures (its ``first_call_s``), and only the
   cell's time limit bounds them.
3. Where the first call took longer than the budget over CALLS, a second call, which pays no
   set-up, under an alarm of the budget over CALLS, decides.
"""

import math
import timeit

from .. import units
from ..measurements import AUTO, JAX
from .workloads import BATCH_OPS

CALLS = 4  # calls of the product a cell's measurement makes at the least (see the module docstring)
FORWARD_CALLS = 5  # calls of the plain forward pass whose fastest is the unit of counting


class OverBudget(BaseException):
    """A cell that cannot be measured within its budget. A BaseException, as it may be raised by an
    alarm inside the code being measured, which no ``except Exception`` there may swallow."""

    def __init__(self, reason, first_call_s=None):
        super().__init__(reason)
        self.first_call_s = first_call_s  # seconds of the first call, where one was made


def sequential_passes(strategy, op, parameters, outputs, k):
    """The passes (forward, forward-mode or backward) one call of ``op`` makes one after another, for
    the built-in strategies that loop in Python; 1 for every other strategy and product."""
    k = k or 1
    if strategy == "forward_dual":
        return parameters if op == "full_jacobian" else k  # a Jacobian column per parameter; a pass per vector
    if strategy == "reference_loop":
        if op == "full_jacobian":
            return outputs  # a backward pass per row
        return k * (outputs if op.endswith("jvp") else 1)  # J v: a backward pass per output element
    if strategy == "autograd_functional" and op in BATCH_OPS:
        return k  # a Python loop over the vectors
    return 1


def sets_up(cell):
    """Whether the first call of the prepared ``cell`` sets up what later calls reuse: compiling
    (torch.compile, JAX's jit) or auto's calibration."""
    return (cell.framework == JAX or cell.workload.strategy == AUTO
            or getattr(cell.strategy, "costly_first_call", False))  # no strategy object: an HVP or hand-written call


class Budget:
    """The checks of one cell against ``seconds`` (None or 0: no budget, every check passes)."""

    def __init__(self, seconds):
        self.seconds = seconds if seconds and math.isfinite(seconds) else None

    @property
    def per_call(self):
        """The longest one call may take for the cell to be measured within the budget."""
        return self.seconds / CALLS if self.seconds else None

    def _past(self):
        return f"measuring it takes {CALLS} calls at the least, past the cell budget of {self.seconds:g} s"

    def check_counted(self, cell, parameters, outputs):
        """Raise OverBudget where counting alone puts one call of ``cell`` past :attr:`per_call`."""
        workload = cell.workload
        if not self.seconds or parameters is None or outputs is None:
            return
        passes = sequential_passes(workload.strategy, workload.op, parameters, outputs, workload.k)
        if passes <= 1:
            return
        forward = min(timeit.repeat(cell.forward, number=1, repeat=FORWARD_CALLS))
        if passes * forward > self.per_call:
            raise OverBudget(f"one call takes at least {units.seconds(passes * forward)} by counting ({passes:,} "
                             f"passes one after another, each at least a forward pass of {units.seconds(forward)}): "
                             + self._past())

    def first_call_limit(self, cell):
        """The alarm for the first call: the budget, unless that call sets up (then none but the cell's)."""
        return None if sets_up(cell) else self.seconds

    def first_call_expired(self):
        return OverBudget(f"its first call did not end within the cell budget of {self.seconds:g} s")

    def needs_another_call(self, first_call_s):
        """Whether the first call was too long, so that a second call must decide (check 3)."""
        return self.seconds is not None and first_call_s > self.per_call

    def call_expired(self, first_call_s):
        """The OverBudget of a second call that ran past :attr:`per_call`."""
        return lambda: OverBudget(f"one call takes more than {units.seconds(self.per_call)} (its first took "
                                  f"{units.seconds(first_call_s)}): " + self._past(), first_call_s)

    def check_call(self, call_s, first_call_s):
        """Raise OverBudget where one call (not the first) took longer than :attr:`per_call`."""
        if self.seconds is not None and call_s > self.per_call:
            raise OverBudget(f"one call takes {units.seconds(call_s)} (its first took {units.seconds(first_call_s)}): "
                             + self._past(), first_call_s)
