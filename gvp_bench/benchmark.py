"""``gvp_bench.benchmark``: measure the strategies on your own model or closure, from Python.

The same measurement as ``gvp-bench run --workload``: each cell by torch.utils.benchmark, with its
status (ok, unsupported, ...), median time, peak memory and ``forward_ratio`` (its cost in
forward passes of the same workload), written row by row to a results file; the rows come back
as the DataFrame :func:`gvp_bench.results.load` gives, so report, compare and recommend read the
file as any other.
"""

import os
import tempfile

import torch

from .bench.machine import fingerprint
from .bench.own import SUITE, cells
from .bench.runner import Settings, run
from .results import ResultsWriter, load, new_header
from .workload import Workload


def measure(workloads, path, *, devices=("cpu",), dtypes=None, ops=None, strategies=None, ks=(8,),
            threads=None, min_run_time=0.05, max_run_time=0.15, timeout_s=60, progress=False):
    """Measure the cells of ``workloads`` (Workload objects) into the results file ``path``; its rows."""
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
    dtypes = [dtype] if isinstance(dtype, str) else dtype
    devices = [device] if isinstance(device, str) else device
    if out is not None:
        return measure([workload], out, devices=devices, dtypes=dtypes, ops=ops, strategies=strategies, ks=ks,
                       **settings)
    with tempfile.TemporaryDirectory(prefix="gvp-bench-") as folder:
        return measure([workload], os.path.join(folder, "results.jsonl"), devices=devices, dtypes=dtypes, ops=ops,
                       strategies=strategies, ks=ks, **settings)
