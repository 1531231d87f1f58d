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

from .results import CELL_KEY, ResultsError, load

AUTO = "auto"  # the strategy that hands each call to one of the others: measured, never ranked against them
# The fingerprint fields that name a machine, in order of preference; the run id otherwise.
MACHINE_NAME_FIELDS = ("name", "hostname", "host", "node")


def expand(paths):
    """The results files of ``paths``: files as given, folders as the ``*.jsonl`` files under them."""
    files = []
    for path in map(pathlib.Path, paths):
        if not path.exists():
            raise ResultsError(f"{path}: no such results file or folder")
        if path.is_dir():
            found = sorted(path.rglob("*.jsonl"))
            if not found:
                raise ResultsError(f"{path}: no results files (*.jsonl) in this folder")
            files.extend(found)
        else:
            files.append(path)
    if not files:
        raise ResultsError("no results files given")
    return [os.fspath(path) for path in files]


def _machine(frame):
    for field in MACHINE_NAME_FIELDS:
        column = f"machine_{field}"
        if column in frame:
            return frame[column].fillna(frame["run_id"]).astype(str)
    return frame["run_id"].astype(str)


def load_frame(paths):
    """Every row of the results files ``paths``, with ``machine``: the name of the machine it ran on."""
    frame = load(expand(paths))
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


def workload(row, with_strategy=True):
    """A cell in words: ``'batch_jvp mlp/small k=8 cpu float32 double_backward'``."""
    k = row["k"]
    words = [row["op"], f"{row['model']}/{row['size']}", *([] if pd.isna(k) else [f"k={int(k)}"]),
             row["device"], row["dtype"]]
    return " ".join(map(str, words + ([row["strategy"]] if with_strategy else [])))
