"""Measured choices: the best strategy of the nearest workload in results files for this machine.

Results files (gvp_bench.results; ``gvp-bench run`` writes them) are used when their header's
machine fingerprint matches this machine for the call's device: ``machine["cpu"]`` equal to
this CPU's model name for CPU calls, ``machine["gpu"]`` equal to the device's name for CUDA
calls, and ``machine["torch"]`` with the same major.minor version as the torch running.

Among their ``ok`` rows of the same product (``model_jvp`` rows count as ``jvp``, ``model_vjp``
as ``vjp``), device type and dtype, a measured workload is near when its parameter count,
output size and k are each within a factor :data:`TOLERANCE` of the call's; the nearest (the
least sum of |log ratio|) gives the ranking: its strategies by median time. The user's files
are searched first; the shipped reference results only when none of them is near.

Strategies measured within :data:`CLOSE` times the best are close calls: on a shared machine two
strategies running the very same code (vjp by double_backward and by forward_dual) can differ by
that much within one run, and the nearest workload is not always the call's own;
auto times the close calls on the call to settle them (see implementations/auto.py).
"""

import functools
import math
import os
import pathlib
import warnings
from dataclasses import dataclass

import torch

from ..bench.machine import cpu_model
from ..results import ResultsError, read

SHIPPED = pathlib.Path(__file__).resolve().parents[2] / "results"
TOLERANCE = 4.0
CLOSE = 1.3
_PRODUCT_OF_OP = {"model_jvp": "jvp", "model_vjp": "vjp"}


@dataclass(frozen=True)
class Ranking:
    names: tuple   # strategies by median time on the nearest measured workload, fastest first
    medians: tuple  # their median times, seconds
    reason: str    # what was measured, for auto.last_reason

    def close_calls(self):
        """The strategies measured within :data:`CLOSE` times the best, fastest first."""
        return tuple(name for name, median in zip(self.names, self.medians) if median <= CLOSE * self.medians[0])


def _minor_version(version):
    return ".".join(str(version).split("+")[0].split(".")[:2])


def this_machine(device):
    """The fingerprint fields a results file must match for this device."""
    if device.type == "cuda":
        return {"gpu": torch.cuda.get_device_name(device), "torch": _minor_version(torch.__version__)}
    return {"cpu": cpu_model(), "torch": _minor_version(torch.__version__)}


def _matches(machine, wanted):
    machine = dict(machine or {})
    if "torch" in machine:
        machine["torch"] = _minor_version(machine["torch"])
    return all(machine.get(name) == value for name, value in wanted.items())


def _files(location):
    path = pathlib.Path(location)
    return sorted(path.glob("*.jsonl")) if path.is_dir() else [path]


@functools.lru_cache(maxsize=64)
def _read(path, modified, size):
    """(machine, ok rows) of one results file; the file's time and size key the cache."""
    header, rows, _ = read(path)
    return header.get("machine"), tuple(row for row in rows if row["status"] == "ok")


def _rows(locations, wanted):
    """The ok rows of every results file under ``locations`` measured on this machine."""
    found = []
    for location in locations:
        for path in _files(location):
            try:
                status = os.stat(path)
                machine, rows = _read(os.fspath(path), status.st_mtime_ns, status.st_size)
            except (OSError, ResultsError) as error:
                warnings.warn(f"gvp_bench auto: results file {path} skipped: {error}", RuntimeWarning, stacklevel=2)
                continue
            if _matches(machine, wanted):
                found.extend((path, row) for row in rows)
    return found


def _distance(row, workload):
    """Sum of |log ratio| of P, M and k, or None when one ratio is beyond the tolerance."""
    pairs = ((row.get("parameters"), workload.parameters), (row.get("outputs"), workload.outputs),
             (row.get("k") or 1, workload.batch))
    if any(not measured or not wanted for measured, wanted in pairs):
        return None
    logs = [abs(math.log(measured / wanted)) for measured, wanted in pairs]
    return sum(logs) if max(logs) <= math.log(TOLERANCE) else None


def _nearest(found, workload, usable):
    dtype = str(workload.dtype).removeprefix("torch.")
    groups = {}
    for path, row in found:
        if (_PRODUCT_OF_OP.get(row["op"], row["op"]) != workload.product or row["strategy"] not in usable
                or str(row["device"]).split(":")[0] != workload.device.type or row["dtype"] != dtype
                or row.get("median_s") is None):
            continue
        distance = _distance(row, workload)
        if distance is not None:
            key = (distance, os.fspath(path), row["op"], row["model"], row["size"], row.get("k"))
            groups.setdefault(key, []).append(row)
    if not groups:
        return None
    key = min(groups, key=lambda key: key[0])
    rows = sorted(groups[key], key=lambda row: row["median_s"])
    _, path, op, model, size, k = key
    times = " vs ".join(f"{row['strategy']} {row['median_s'] * 1e3:.3g} ms" for row in rows[:3])
    where = f"{os.path.basename(path)} {op} {model}/{size}" + (f" k={k}" if k else "")
    return Ranking(tuple(row["strategy"] for row in rows), tuple(row["median_s"] for row in rows),
                   f"measured: {where}: {times}")


def ranking(workload, user_locations, usable):
    """The measured ranking of ``usable`` strategies for the workload, or None if nothing is near."""
    wanted = this_machine(workload.device)
    for locations in (user_locations, [SHIPPED] if SHIPPED.is_dir() else []):
        found = _nearest(_rows(locations, wanted), workload, usable)
        if found:
            return found
    return None
