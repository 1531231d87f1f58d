"""What ``auto`` has been told (its settings) and what it has learnt (one choice per workload).

Settings come from the environment, read on first use, or from :func:`configure_auto`:

- ``GVP_BENCH_AUTO`` / ``mode``: ``measured`` (the default: results for this machine when some
  are near the workload, their close calls settled by calibration, else calibration), ``calibrate`` (always calibrate, ignore results),
  ``results`` (results, else the fixed rule: never times anything) or ``rule`` (the fixed rule
  only: no timing, deterministic; the opt-out).
- ``GVP_BENCH_RESULTS`` / ``results``: the user's own results files or folders of them
  (``os.pathsep``-separated in the variable), searched before the reference results shipped in
  the repository's ``results/``.
- ``GVP_BENCH_AUTO_MEMORY`` / ``memory_budget``: the memory a candidate may take (estimated from
  the sizes, beyond its inputs and result; on CUDA also its measured peak), as bytes (an int) or
  as a fraction of the memory free on the device (a float in (0, 1]; default 0.5).
- ``GVP_BENCH_AUTO_COMPILE`` / ``compile``: also consider the strategies whose first call per
  workload compiles (``costly_first_call``: compiled, cuda_graphs), in calibration and in results
  (default off: their first call takes seconds; worth it only for a product repeated many times).

The choices are a process-wide cache, from workload signature to the strategy chosen and why;
configuring auto empties it.
"""

import os
from dataclasses import dataclass

from ..memory import DEFAULT_MEMORY_FRACTION, check_memory_budget

MODES = ("measured", "calibrate", "results", "rule")
MAX_CHOICES = 4096  # workload signatures remembered; the oldest is forgotten first


@dataclass(frozen=True)
class AutoSettings:
    mode: str
    results: tuple        # the user's results files and folders, searched before the shipped ones
    memory_budget: float  # bytes (an int) or a fraction of free device memory (a float <= 1)
    compile: bool = False  # also consider the strategies whose first call per workload compiles

    @property
    def uses_results(self):
        return self.mode in ("measured", "results")

    @property
    def calibrates(self):
        return self.mode in ("measured", "calibrate")


@dataclass(frozen=True)
class Choice:
    name: str    # the strategy that answers calls with this signature
    reason: str  # why, as auto.last_reason reports it


_settings = None
_choices = {}


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"auto mode must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def _budget_from_environment(text):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"GVP_BENCH_AUTO_MEMORY must be bytes (an int) or a fraction (a float <= 1); "
                             f"got {text!r}") from None


_SWITCH = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False,
           "": False}


def _switch_from_environment(variable):
    text = os.environ.get(variable, "").strip().lower()
    if text not in _SWITCH:
        raise ValueError(f"{variable} must be 1 or 0 (true/false, yes/no, on/off); got {os.environ[variable]!r}")
    return _SWITCH[text]


def configure_auto(*, mode=None, results=None, memory_budget=None, compile=None):
    """Set how ``strategy="auto"`` chooses, and forget the choices made so far.

    Each argument left None comes from its environment variable, else its default:
    ``mode`` from ``GVP_BENCH_AUTO`` (``"measured"``), ``results`` from ``GVP_BENCH_RESULTS``
    (none), ``memory_budget`` from ``GVP_BENCH_AUTO_MEMORY`` (0.5), ``compile`` from
    ``GVP_BENCH_AUTO_COMPILE`` (off). Returns the settings now in force.
    """
    global _settings
    environment = os.environ
    if mode is None:
        mode = environment.get("GVP_BENCH_AUTO", "").strip() or MODES[0]
    if results is None:
        results = [path for path in environment.get("GVP_BENCH_RESULTS", "").split(os.pathsep) if path.strip()]
    elif isinstance(results, (str, os.PathLike)):
        results = [results]
    if memory_budget is None:
        text = environment.get("GVP_BENCH_AUTO_MEMORY", "").strip()
        memory_budget = _budget_from_environment(text) if text else DEFAULT_MEMORY_FRACTION
    if compile is None:
        compile = _switch_from_environment("GVP_BENCH_AUTO_COMPILE")
    elif not isinstance(compile, bool):
        raise ValueError(f"compile must be True or False; got {compile!r}")
    _settings = AutoSettings(_check_mode(mode), tuple(os.fspath(path) for path in results),
                             check_memory_budget(memory_budget), compile)
    _choices.clear()
    return _settings


def settings():
    """The settings in force (from the environment until :func:`configure_auto` is called)."""
    return _settings or configure_auto()


def known_choice(signature):
    """The choice made for this workload signature in this process, or None."""
    return _choices.get(signature)


def remember(signature, choice):
    if len(_choices) >= MAX_CHOICES:
        del _choices[next(iter(_choices))]
    _choices[signature] = choice


def forget(signature):
    _choices.pop(signature, None)
