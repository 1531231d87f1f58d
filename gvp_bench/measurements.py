"""Measured cells as report, compare and recommend read them, from results files or folders of them.

:func:`load_cells` reads every results file given (a folder stands for the ``*.jsonl`` files
under it) with :func:`gvp_bench.results.load`, names the machine each row was measured on
(``machine``), and keeps the latest measurement of each cell per machine (:func:`latest`), so a
cell measured again, or shards that overlap, count once.
"""

import os
import pathlib

import numpy as np
import pandas as pd

from . import stats
from .registry import get_strategy, strategies
from .results import CELL_KEY, ResultsError, load

SETTINGS = ("threads", "measure", "torch")  # set-up of a run that makes its figures differ on one machine
AUTO = "auto"  # the strategy that hands each call to one of the others: measured, never ranked against them
JAX = "jax"  # the framework of the JAX side-by-side rows: shown next to the strategies, never ranked among them
RAW = "torch-raw"  # the torch calls written by hand (gvp_bench.bench.raw): shown next to the strategies, never ranked


def is_jax(cells):
    """Which rows are JAX side-by-side rows (files written before the framework field hold torch rows only)."""
    return cells.framework.eq(JAX).fillna(False).astype(bool)


def is_raw(cells):
    """Which rows are the hand-written torch calls (reference rows for the wrapper's cost)."""
    return cells.framework.eq(RAW).fillna(False).astype(bool)


def rankable(cells):
    """The rows of the PyTorch strategies a user can pick: neither auto, nor a JAX row, nor a hand-written call."""
    return cells[(cells.strategy != AUTO) & ~is_jax(cells) & ~is_raw(cells)]


def compiling(cells):
    """Which rows are of a strategy whose first call per workload compiles (``costly_first_call`` of the
    strategy registered here under that name; a name not registered here does not)."""
    registered = set(strategies())
    compiles = {name: name in registered and get_strategy(name).costly_first_call for name in set(cells.strategy)}
    return cells.strategy.map(compiles).astype(bool)


def expand(paths):
    """The results files of ``paths``: files as given, folders as the ``*.jsonl`` files under them."""
    files = []
    for path in map(pathlib.Path, paths):
        if not path.exists():
            raise ResultsError(f"{path}: no such results file or folder")
        if path.is_dir():
            found = sorted(path.rglob("*.jsonl"))
            if not found:
                raise ResultsError(f"{path}: no results files (*.jsonl) in this folder; gvp-bench run writes them")
            files.extend(found)
        else:
            files.append(path)
    if not files:
        raise ResultsError("no results files given")
    return [os.fspath(path) for path in files]


def _machine_name(machine):
    """``'AMD EPYC 7763 (2 cores) + NVIDIA H100 80GB HBM3'`` from a fingerprint, or None without a cpu."""
    if not machine.get("cpu"):
        return None
    cores = f" ({machine['cpu_usable']} cores)" if machine.get("cpu_usable") else ""
    return machine["cpu"] + cores + (f" + {machine['gpu']}" if machine.get("gpu") else "")


def _machine(frame):
    fields = [c for c in frame.columns if c.startswith("machine_")]
    names = [_machine_name({c.removeprefix("machine_"): v for c, v in zip(fields, values) if pd.notna(v)})
             for values in frame[fields].itertuples(index=False)]
    names = [name or f"run {run}" for name, run in zip(names, frame.run_id)]
    differing = [name for name in SETTINGS if frame[f"machine_{name}"].nunique(dropna=False) > 1]
    for name in differing:  # runs of one machine with different settings stay apart, named by them
        names = [f"{machine}, {name} {value}" for machine, value in zip(names, frame[f"machine_{name}"])]
    return pd.Series(names, index=frame.index)


def load_frame(paths):
    """Every row of the results files ``paths``, with ``machine``: the machine it ran on, named by its
    fingerprint's CPU, usable cores and GPU (the run id for a fingerprint without them), and by the
    :data:`SETTINGS` its runs differ in, when they do (``'... (2 cores), threads 1'``), so that
    reports show such runs side by side instead of keeping the latest."""
    frame = load(expand(paths))
    frame = frame.assign(**{f"machine_{name}": frame.get(f"machine_{name}", pd.Series(index=frame.index, dtype=object))
                            for name in SETTINGS})
    frame["machine_measure"] = frame.machine_measure.fillna("time")  # written before there was a choice
    return frame.assign(machine=_machine(frame))


def latest(frame, per_machine=True):
    """The latest measurement of each cell on each machine (on any machine: ``per_machine=False``)."""
    frame = frame.sort_values("measured_at", kind="stable", na_position="first")
    frame = frame.drop_duplicates([*CELL_KEY, "machine"] if per_machine else list(CELL_KEY), keep="last")
    return frame.sort_values([*CELL_KEY, "machine"], kind="stable", na_position="first").reset_index(drop=True)


def load_cells(paths):
    """One row per measured cell and machine, the latest measurement of it, with ``machine``."""
    return latest(load_frame(paths))


def samples(row, suffix=""):
    """The per-call seconds of a measured cell as an array (its median alone if it kept none);
    ``suffix`` picks one side of a merged row (``"_base"``)."""
    values = row[f"samples_s{suffix}"]
    if isinstance(values, list) and values:
        return np.asarray(values, dtype=float)
    return np.asarray([row[f"median_s{suffix}"]], dtype=float)


def forward_times(cells):
    """The plain forward pass's median timed right after each measured torch cell of ``cells`` (one workload's:
    the same call in each; a JAX cell times JAX's own), in seconds."""
    return cells.forward_median_s[(cells.status == "ok") & ~is_jax(cells)].dropna()


def drift(cells):
    """How far the machine's speed moved while one workload's ``cells`` ran, one after another: the slowest
    over the fastest of the forward passes timed after them (:func:`forward_times`); 1.0 with fewer than two."""
    forward = forward_times(cells)
    return float(forward.max() / forward.min()) if len(forward) > 1 else 1.0


def noise(best, second, cells):
    """Why ``second`` (a measured row of the workload ``cells``) cannot be told from ``best``: ``"samples"``, their
    samples overlap (gvp_bench.stats.overlap); ``"drift"``, ``second`` is slower by no more than the machine's
    :func:`drift` during the run, by which cells timed at different moments differ doing the same work; None: it
    is beyond noise."""
    if stats.overlap(samples(best), samples(second)):
        return "samples"
    if second.median_s / best.median_s <= drift(cells):
        return "drift"
    return None


def workload(row, with_strategy=True):
    """A cell in words: ``'batch_jvp mlp/small k=8 cpu float32 double_backward'``."""
    k = row["k"]
    words = [row["op"], f"{row['model']}/{row['size']}", *([] if pd.isna(k) else [f"k={int(k)}"]),
             row["device"], row["dtype"]]
    return " ".join(map(str, words + ([row["strategy"]] if with_strategy else [])))
