"""Your own workloads (:class:`gvp_bench.Workload`) measured: their cells, as ``gvp-bench run --workload``
measures them, and :func:`benchmark` (``gvp_bench.benchmark``), the same from Python.

A cell of a user's workload is keyed like a zoo cell, with the workload's name in ``model`` and
``user`` in ``size``, so report, compare and recommend read its rows unchanged. A module
workload is measured in every dtype and on every device asked (a cast copy each); a closure in
its own dtype, on its own device only, and asking it for another is an error, not a cell
silently left out.
"""

import itertools
import os
import tempfile

import torch

from ..registry import strategies
from ..results import ResultsWriter, load, new_header
from ..workload import SIZE, Workload
from .machine import fingerprint
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


def measure(workloads, path, *, devices=("cpu",), dtypes=None, ops=None, strategies=None, ks=(8,),
            threads=None, min_run_time=0.05, max_run_time=0.15, timeout_s=60, progress=False):
    """Measure the cells of ``workloads`` (Workload objects) into the results file ``path``; its rows."""
    from .runner import Settings, run  # torch.utils.benchmark only when measuring

    selected = cells(workloads, devices=devices, dtypes=dtypes, ops=ops, strategy_names=strategies, ks=ks)
    threads = threads or torch.get_num_threads()
    settings = Settings(threads=threads, min_run_time=min_run_time, max_run_time=max_run_time, timeout_s=timeout_s)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with ResultsWriter(path, new_header(fingerprint(threads), SUITE)) as writer:
            run(selected, writer, settings, progress=progress)
    finally:
        torch.set_num_threads(threads_before)
    return load(path)


def benchmark(target, inputs=None, *, name=None, ops=None, strategies=None, k=8, dtype=None, device="cpu",
              out=None, **settings):
    """Measure ``strategies`` (default: every registered one) on ``ops`` (default: every op that applies).

    ``benchmark(model, x)`` for a module and its input, ``benchmark(func, params)`` for a closure and
    its params (a list or a dict), or ``benchmark(workload)``. ``k``: vectors per call of the batch
    ops (an int or a sequence of them); ``dtype``: a name or a list of names (default: the
    workload's own); ``device``: "cpu" or "cuda". ``out``: also keep the results file there
    (it must not exist yet). ``settings``: ``threads``, ``min_run_time``, ``max_run_time``,
    ``timeout_s`` (per cell) and ``progress``, as for ``gvp-bench run``.

    Returns the results DataFrame, one row per cell.
    """
    workload = target if isinstance(target, Workload) else Workload(target, inputs, name=name)
    if isinstance(target, Workload) and inputs is not None:
        raise TypeError("inputs must be None when target is a gvp_bench.Workload (it holds its own)")
    ks = (k,) if isinstance(k, int) else tuple(k)
    if not ks or not all(isinstance(value, int) and value >= 1 for value in ks):
        raise ValueError(f"k must be a positive int or a sequence of them, got {k!r}")
    devices = [device] if isinstance(device, str) else device
    if "cuda" in devices and not torch.cuda.is_available():
        raise ValueError("device 'cuda': no CUDA device on this machine")
    options = dict(devices=devices, dtypes=[dtype] if isinstance(dtype, str) else dtype, ops=ops,
                   strategies=strategies, ks=ks, **settings)
    if out is not None:
        return measure([workload], out, **options)
    with tempfile.TemporaryDirectory(prefix="gvp-bench-") as folder:
        return measure([workload], os.path.join(folder, "results.jsonl"), **options)
