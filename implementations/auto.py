"""``auto``: chooses the strategy by measurement: results for this machine, else a brief calibration.

On the first call with a workload signature (product, params' shapes and dtypes, device,
vector shapes, create_graph, and what func is: its code and the shapes and module classes it
captures; see gvp_bench.signature), auto decides, then caches the choice for the rest
of the process (like cudnn.benchmark); later calls with that signature go straight to it.

Deciding:

1. The candidates: the fixed rule's strategies first (below), then every other registered
   strategy but reference_loop, linearize (it traces on every call) and, unless configured with
   ``compile=True`` (``GVP_BENCH_AUTO_COMPILE=1``), those whose first call compiles
   (``costly_first_call``); those that need far more products than the least demanding one, or
   more memory than the budget, are left out (gvp_bench.autotune.candidates).
2. Results: when results files for this machine (the user's, ``GVP_BENCH_RESULTS``, then the
   reference results in ``results/``) hold a workload near this one (same product, device and
   dtype; parameter count, output size and k each within a factor 4), auto takes the
   candidates in the order of their measured medians there (gvp_bench.autotune.measured);
   when several were measured close to the best (``CLOSE``), a calibration among those alone
   settles the close call (in mode ``results``, which never times, the measured best answers).
3. Otherwise it calibrates: it times the candidates on this very call, briefly (a warm-up
   each, then a few rounds of one run each, within a small time budget per candidate), drops those
   that are slow, over the memory budget or unsupported, and answers with one ordinary call of
   the fastest (gvp_bench.autotune.calibration).

``GVP_BENCH_AUTO=rule`` (or ``gvp_bench.configure_auto(mode="rule")``) opts out: the fixed
rule only, no timing, deterministic. The fixed rule (from the reference measurements):

- J v: forward_dual (fastest single JVP measured on MLP and CNN, CPU and GPU), then func_vmap,
  then double_backward (reverse-mode formulas only).
- vᵀJ: double_backward (one backward pass), then func_vmap.
- batches of J v: on CUDA func_vmap (one batched kernel instead of k launches), on the CPU the
  forward_dual loop (vmap gained nothing there and costs memory); the other next.
- batches of vᵀJ: on CUDA func_vmap, on the CPU forward_dual (one forward, a backward per row,
  which beat vmap(vjp) on the CPU); then double_backward.
- the full Jacobian: reverse mode (func_vmap, then jacrev_chunked) when the output has no more
  elements than the params, else forward mode (forward_dual) first.

Whatever the way, a strategy that fails hands the call to the next one: one that raises
UnsupportedError (after its own workarounds), and one that raises anything else (a failed
compilation, an error of the strategy's own, running out of memory), which auto also names in
``last_reason`` and warns of (:class:`HandoverWarning`). Each attempt leaves the process state
as it found it (gvp_bench.process_state), so a failed candidate cannot change the answer of the
next. A strategy that failed is never remembered as the choice, and a remembered choice that
fails is decided again. When every candidate fails, the first exception other than
UnsupportedError propagates unchanged (when func itself raises, that is func's exception, which
every strategy raises alike); when all were unsupported, auto raises UnsupportedError listing
every reason. ``last_choice`` names the strategy that answered the latest call,
``last_workarounds`` what it needed, ``last_reason`` why auto chose it ("rule", "measured: ...",
"calibrated: ...").
"""

import warnings


import torch

from gvp_bench.autotune import config, measured
from gvp_bench.autotune.calibration import calibrate
from gvp_bench.autotune.candidates import select
from gvp_bench.signature import measure, signature
from gvp_bench.kit import Delegating, UnsupportedError, call_with, get_strategy
from gvp_bench.errors import one_line
from gvp_bench.memory import budget_bytes
from gvp_bench.registry import strategies

_BATCH_JVP = {"cuda": ("func_vmap", "forward_dual", "double_backward"),
              "cpu": ("forward_dual", "func_vmap", "double_backward")}
_BATCH_VJP = {"cuda": ("func_vmap", "double_backward", "forward_dual"),
              "cpu": ("forward_dual", "double_backward", "func_vmap")}
_REVERSE_JACOBIAN = ("func_vmap", "jacrev_chunked", "double_backward", "forward_dual")
_FORWARD_JACOBIAN = ("forward_dual", "func_vmap", "jacrev_chunked", "double_backward")
# reference_loop: the slow baseline by construction; linearize: its tracing on every call lost to func_vmap at
# every k measured, and timing it would make every calibration much longer.
_NEVER_CANDIDATES = ("reference_loop", "linearize")


class HandoverWarning(UserWarning):
    """A candidate of auto failed with an error other than UnsupportedError, and the next one answered."""


def _rule(op, device_type, outputs, parameters):
    """The strategy names the fixed rule tries for ``op``, in order (outputs: for the Jacobian)."""
    if op == "jvp":
        return ("forward_dual", "func_vmap", "double_backward")
    if op == "vjp":
        return ("double_backward", "func_vmap")
    if op == "batch_jvp":
        return _BATCH_JVP[device_type]
    if op == "batch_vjp":
        return _BATCH_VJP[device_type]
    return _REVERSE_JACOBIAN if outputs <= parameters else _FORWARD_JACOBIAN


class Auto(Delegating):
    name = "auto"

    def __init__(self):
        self.last_choice = None
        self.last_reason = None

    def choose(self, op, func, params):
        """The strategy names the fixed rule tries for ``op``, in order."""
        outputs = None
        if op == "full_jacobian":
            with torch.no_grad():
                outputs = call_with(func, params, params).numel()
        return _rule(op, "cuda" if params[0].is_cuda else "cpu", outputs, sum(p.numel() for p in params))

    def _answer(self, name, reason, op, func, params, args):
        strategy = get_strategy(name)
        result = strategy.compute(op, func, params, *args)
        self.last_choice, self.last_workarounds, self.last_reason = name, strategy.last_workarounds, reason
        return result

    def _first_that_can(self, names, reason, op, func, params, args, failed=None):
        """The answer of the first of ``names`` that does not fail; ``failed``: name -> exception of the
        candidates that failed already (in calibration), whose first error propagates when all fail."""
        reasons, errors = [], dict(failed or {})
        for name in names:
            try:
                result = self._answer(name, reason, op, func, params, args)
            except UnsupportedError as error:
                reasons.append(f"{name}: {error.reason}")
            except Exception as error:  # noqa: BLE001 - any failure of a candidate hands the call over
                errors.setdefault(name, error)
            else:
                if errors:
                    handed = ", ".join(f"{failed_name} ({one_line(failure)})" for failed_name, failure in errors.items())
                    self.last_reason = f"{self.last_reason}; handed over from {handed}"
                    warnings.warn(f"gvp_bench: auto: {handed} failed; {name} answered", HandoverWarning, stacklevel=2)
                return result
        if errors:
            raise next(iter(errors.values()))  # func's own exception, unchanged, when func raised it
        raise UnsupportedError(self.name, "no strategy could compute it; " + "; ".join(reasons))

    def compute(self, op, func, params, *args):
        """Hand the product to the chosen strategy's own compute, which translates torch's errors and
        applies workarounds: auto adds no layer of its own, so ``last_workarounds`` stays the chosen one's."""
        settings = config.settings()
        if settings.mode == "rule":
            return self._first_that_can(self.choose(op, func, params), "rule", op, func, params, args)
        key = signature(op, func, params, args)
        choice = config.known_choice(key)
        if choice is not None:
            try:
                return self._answer(choice.name, choice.reason, op, func, params, args)
            except Exception:  # noqa: BLE001 - another workload with the same signature, or a failure: decide again
                config.forget(key)
        result = self._decide(settings, op, func, params, args)
        config.remember(key, config.Choice(self.last_choice, self.last_reason))
        return result

    def _candidates(self, rule, settings):
        others = [name for name in strategies() if name not in rule and name not in _NEVER_CANDIDATES
                  and not isinstance(get_strategy(name), Auto)
                  and (settings.compile or not get_strategy(name).costly_first_call)]
        return list(rule) + others

    def _decide(self, settings, op, func, params, args):
        workload = measure(op, func, params, args)
        rule = _rule(op, workload.device.type, workload.outputs, workload.parameters)
        budget = budget_bytes(settings.memory_budget, workload.device)
        names, left_out = select(self._candidates(rule, settings), workload, budget)
        if settings.uses_results:
            ranking = measured.ranking(workload, settings.results, names)
            if ranking is not None:
                close = ranking.close_calls()
                order = list(ranking.names) + [name for name in names if name not in ranking.names]
                if settings.calibrates and len(close) > 1:
                    outcome = calibrate({name: get_strategy(name) for name in close}, op, func, params, args, budget)
                    if outcome.winner is not None:
                        timed = sorted(outcome.times, key=outcome.times.get)
                        return self._first_that_can(timed + [name for name in order if name not in close],
                                                    f"{ranking.reason}; calibrated: {outcome.summary()}",
                                                    op, func, params, args)
                return self._first_that_can(order, ranking.reason, op, func, params, args)
        if not settings.calibrates:
            return self._first_that_can(rule, "rule: no measured workload near this one", op, func, params, args)
        outcome = calibrate({name: get_strategy(name) for name in names}, op, func, params, args, budget)
        left_out = {**left_out, **outcome.left_out, **{name: "unsupported" for name in outcome.unsupported},
                    **{name: f"failed: {one_line(error)}" for name, error in outcome.failed.items()}}
        not_timed = "; not timed: " + ", ".join(f"{name} ({why})" for name, why in left_out.items()) if left_out else ""
        if outcome.winner is not None:
            timed = sorted(outcome.times, key=outcome.times.get)
            return self._first_that_can(timed, f"calibrated: {outcome.summary()}{not_timed}", op, func, params, args)
        fallback = [name for name in rule if name not in outcome.unsupported and name not in outcome.failed]
        if not fallback and not outcome.failed:
            reasons = "; ".join(f"{name}: {reason}" for name, reason in outcome.unsupported.items())
            raise UnsupportedError(self.name, "no strategy could compute it; " + reasons)
        return self._first_that_can(fallback, f"rule: no candidate finished calibration{not_timed}",
                                    op, func, params, args, failed=outcome.failed)

    def delegate(self, product, func, params, *args):
        """A product asked for directly (``implementation``) decides as a call does: through compute."""
        return self.compute(product, func, params, *args)
