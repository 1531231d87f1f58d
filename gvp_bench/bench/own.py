"""The cells of your own workloads (:class:`gvp_bench.Workload`), as ``gvp-bench run --workload`` and
:func:`gvp_bench.benchmark` measure them.

A cell of a user's workload is keyed like a zoo cell, with the workload's name in ``model`` and
``user`` in ``size``, so report, compare and recommend read its rows unchanged. A module
workload is measured in every dtype and on every device asked (a cast copy each); a closure in
its own dtype, on its own device only, and asking it for another is an error, not a cell
silently left out.
"""

import itertools

from ..registry import strategies
from ..workload import SIZE, Workload
from .workloads import BATCH_OPS, DEVICES, DTYPES, OPS, Workload as Cell, _choose

SUITE = "workload"  # the suite a results file of your own workloads names in its header


def _dtypes(workload, dtypes):
    own = str(workload.dtype).removeprefix("torch.")
    if dtypes is None:
        return [own]
    dtypes = _choose("dtype", dtypes, DTYPES)
    if workload.model is None and dtypes != [own]:
        raise ValueError(f"--dtype {','.join(dtypes)}: workload {workload.name!r} is a closure over {own} params and "
                         "is measured in its own dtype only; give it as (model, x) to cast it")
    return dtypes


def _devices(workload, devices):
    devices = _choose("device", devices, DEVICES)
    if workload.model is not None:
        return devices
    if workload.device.type not in devices:
        raise ValueError(f"--device {','.join(devices)}: workload {workload.name!r} is a closure on "
                         f"{workload.device.type} and is measured there only; give it as (model, x) to move it")
    return [workload.device.type]


def _ops(workload, ops):
    if ops is None:
        return list(workload.ops)
    ops = _choose("op", ops, OPS)
    missing = [op for op in ops if op not in workload.ops]
    if missing:
        raise ValueError(f"--ops {','.join(missing)}: workload {workload.name!r} is a closure; model_jvp and "
                         "model_vjp need it as (model, x)")
    return ops


def cells(workloads, *, devices=("cpu",), dtypes=None, ops=None, strategy_names=None, ks=(8,)):
    """The cells measuring ``workloads`` (Workload objects) with the strategies (default: every registered one):
    every op that applies (or ``ops``), each batch op once per k in ``ks``; dtype default: each workload's own."""
    names = [workload.name for workload in workloads]
    if len(set(names)) != len(names):
        raise ValueError(f"--workload: two workloads are named alike ({', '.join(names)}); give them distinct names")
    strategy_names = _choose("strategy", strategy_names, strategies())
    selected = []
    for workload in workloads:
        if not isinstance(workload, Workload):
            raise TypeError(f"workloads must hold gvp_bench.Workload objects, got {type(workload).__name__}")
        for device, dtype, op in itertools.product(_devices(workload, devices), _dtypes(workload, dtypes),
                                                   [op for op in OPS if op in _ops(workload, ops)]):
            for k in ks if op in BATCH_OPS else (None,):
                selected += [Cell(op, workload.name, SIZE, name, device, dtype, k, source=workload)
                             for name in strategy_names]
    return selected
