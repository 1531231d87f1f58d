"""The results store: one JSON-lines file per run, so no measurement is ever lost.

The first line is the header: ``{"record": "header", "schema_version": 1, "run_id", "created",
"suite", "machine": {...}}`` (the machine fingerprint). Every other line is one measured cell:
``{"record": "cell", ...}`` with the fields in :data:`CELL_FIELDS`. A :class:`ResultsWriter`
appends each cell as it is measured, flushed and fsynced, under an exclusive lock on the file,
so a killed run loses at most the cell it was measuring, two runs can never interleave in one
file, and ``resume=True`` reopens a file to measure only the cells it lacks.

:func:`load` reads one or many files (shards, machines) into one pandas DataFrame. A file cut
short or with corrupt lines gives its intact rows and a :class:`ResultsWarning` saying how many
lines were dropped and why; a file that cannot be read at all raises :class:`ResultsError`,
a one-line message naming the file and what is wrong.
"""

import contextlib
import datetime
import fcntl
import json
import math
import os
import uuid
import warnings

SCHEMA_VERSION = 1
STATUSES = ("ok", "unsupported", "error", "oom", "timeout", "skipped")
CELL_KEY = ("op", "model", "size", "strategy", "device", "dtype", "k")
CELL_FIELDS = CELL_KEY + (
    "status",            # one of STATUSES (skipped: one call would not fit the cell's time budget, gvp_bench.bench.budget)
    "framework",         # "torch" for the strategies; "jax" for the JAX side-by-side rows (gvp_bench.jax_side);
                         # "torch-raw" for the torch calls written by hand (gvp_bench.bench.raw)
    "parameters",        # P: elements in the params differentiated (the zoo entry's parameter_count)
    "outputs",           # M: elements in func()'s output (the zoo entry's output_size)
    "first_call_s",      # the cell's first call, seconds: includes compilation (compiled strategies), calibration (auto)
    "capture_s",         # the second call, seconds, for a strategy that records a CUDA graph on it (cuda_graphs)
    "median_s",          # median time per call over the measured samples, seconds (after the first call)
    "iqr_s",             # interquartile range of those samples, seconds
    "runs",              # number of measured samples
    "samples_s",         # the samples themselves (seconds per call), kept for compare
    "thread_cpu_median_s",   # median thread CPU time per call of the same samples (time.thread_time)
    "thread_cpu_samples_s",  # per sample; well under samples_s: the thread was preempted
    "instructions",          # --measure instructions: instructions per call (callgrind), the median of the repeats
    "instructions_samples",  # per counted repeat
    "forward_instructions",  # the plain forward pass's instructions per call
    "peak_bytes",        # peak memory above what the inputs already hold (torch's allocations; None for jax rows)
    "forward_median_s",  # median time of the plain forward pass of the same workload
    "forward_ratio",     # median_s / forward_median_s: the cost in forward passes
    "workarounds",       # the scoped workarounds the strategy needed (gvp_bench.workarounds)
    "choice",            # for auto: the strategy that answered the measured calls (auto.last_choice)
    "chunk_size",        # rows computed at once by a chunking strategy (gvp_bench.chunking), else None
    "memory_budget_bytes",  # the memory budget that chunk size was chosen under, else None
    "error",             # why, for every status but ok
    "threads",           # torch intra-op threads while measuring; jax rows: the CPUs XLA sized its pool for
    "measured_at",       # ISO time the cell was written
)


class ResultsError(ValueError):
    """A results file that cannot be read or written; the message names the file and the problem."""


class ResultsWarning(UserWarning):
    """Some lines of a results file were dropped (cut short or corrupt); the intact rows are kept."""


def cell_key(row):
    """The workload a row measures: the fields that identify a cell within a run."""
    return tuple(row.get(name) for name in CELL_KEY)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _check_header(path, header):
    if not isinstance(header, dict) or header.get("record") != "header":
        raise ResultsError(f"{path}: not a gvp-bench results file (its first line is not a results header)")
    version = header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsError(f"{path}: results schema version {version!r} is not supported; this gvp-bench reads "
                           f"version {SCHEMA_VERSION} (measure again with this version, or use the gvp-bench "
                           f"that wrote it)")
    return header


def _check_cell(record):
    """Why a cell line is unusable, or None."""
    if not isinstance(record, dict) or record.get("record") != "cell":
        return "not a cell record"
    missing = [name for name in CELL_KEY + ("status",) if name not in record]
    if missing:
        return f"missing {', '.join(missing)}"
    if record["status"] not in STATUSES:
        return f"unknown status {record['status']!r}"
    return None


def read(path):
    """The header and the intact cell rows of one results file, and the dropped lines with why.

    Returns ``(header, rows, dropped)``, dropped being a list of ``(line number, reason)``. A
    pytest-benchmark JSON file (``.json``) is read by :mod:`gvp_bench.pytest_benchmark`.
    """
    from . import pytest_benchmark

    if pytest_benchmark.is_pytest_benchmark(path):
        return pytest_benchmark.read(path)
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as stream:
            lines = stream.read().split("\n")
    except OSError as error:
        raise ResultsError(f"{path}: cannot read results file: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ResultsError(f"{path}: not a gvp-bench results file (not UTF-8 text)") from None
    if not lines[0].strip():
        raise ResultsError(f"{path}: empty results file (no header line)")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        raise ResultsError(f"{path}: not a gvp-bench results file (its first line is not JSON)") from None
    _check_header(path, header)
    rows, dropped = [], []
    last = len(lines) - 1
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            cut = number - 1 == last  # the last line, with no newline after it: the writer was stopped
            dropped.append((number, "cut short" if cut else "not valid JSON"))
            continue
        problem = _check_cell(record)
        if problem:
            dropped.append((number, problem))
        else:
            rows.append(record)
    return header, rows, dropped


def load(paths):
    """One DataFrame of the cells of one or several results files (shards and machines merge).

    Columns: the fields of :data:`CELL_FIELDS`, then ``run_id``, ``suite``, ``source`` (the file)
    and the machine fingerprint as ``machine_<field>`` columns.
    """
    import pandas as pd

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames = []
    for path in paths:
        header, rows, dropped = read(path)
        if dropped:
            reasons = "; ".join(f"line {number}: {reason}" for number, reason in dropped[:3])
            warnings.warn(f"{os.fspath(path)}: dropped {len(dropped)} unreadable line(s), kept {len(rows)} "
                          f"row(s) ({reasons}{'; ...' if len(dropped) > 3 else ''})", ResultsWarning, stacklevel=2)
        frame = pd.DataFrame(rows, columns=list(CELL_FIELDS))
        frame["run_id"] = header.get("run_id")
        frame["suite"] = header.get("suite")
        frame["source"] = os.fspath(path)
        for name, value in (header.get("machine") or {}).items():
            frame[f"machine_{name}"] = value
        frames.append(frame)
    if not frames:
        raise ResultsError("no results files given")
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    integers = ("k", "parameters", "outputs", "runs", "peak_bytes", "threads", "chunk_size", "memory_budget_bytes")
    return frame.astype({name: "Int64" for name in integers})


def _finite_or_none(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


class ResultsWriter:
    """Appends cells to a results file as they are measured; a context manager holding its lock.

    A new file gets ``header`` as its first line. An existing file is refused unless ``resume``
    is true; then its header is kept, a line cut short by a killed run is removed, and
    :attr:`done` holds the keys of the cells it already has, which the run skips.
    """

    def __init__(self, path, header, *, resume=False):
        self.path = os.fspath(path)
        self.header = header
        self.resume = resume
        self.done = set()
        self._stream = None

    def __enter__(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        exists = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        if exists and not self.resume:
            raise ResultsError(f"{self.path}: results file exists; pass --resume to complete it, or another --out")
        stream = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.close()
            raise ResultsError(f"{self.path}: another gvp-bench run is writing this file") from None
        self._stream = stream
        try:
            if exists:
                self._reopen()
            else:
                self._write_line(dict(record="header", schema_version=SCHEMA_VERSION, **self.header))
        except BaseException:
            self.close()
            raise
        return self

    def _reopen(self):
        """Resume: keep the header, drop a final line cut short, and collect the cells already done."""
        header, rows, dropped = read(self.path)
        self.header = header
        self.done = {cell_key(row) for row in rows}
        with open(self.path, "rb") as stream:
            content = stream.read()
        if not content.endswith(b"\n"):  # the writer was killed mid-line: cut that line off
            keep = content.rfind(b"\n") + 1
            os.truncate(self.path, keep)
            dropped = [entry for entry in dropped if entry[1] != "cut short"]
        if dropped:
            warnings.warn(f"{self.path}: {len(dropped)} unreadable line(s) kept as they are; their cells "
                          "will be measured again", ResultsWarning, stacklevel=3)

    def _write_line(self, record):
        self._stream.write(json.dumps(record, allow_nan=False) + "\n")
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def write(self, row):
        """Append one measured cell (a dict with at least the key fields and status)."""
        record = {"record": "cell", **{name: _finite_or_none(row.get(name)) for name in CELL_FIELDS}}
        record["measured_at"] = record["measured_at"] or _now()
        problem = _check_cell(record)
        if problem:
            raise ValueError(f"results row: {problem}")
        self._write_line(record)
        self.done.add(cell_key(record))

    def close(self):
        if self._stream is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._stream, fcntl.LOCK_UN)
            self._stream.close()
            self._stream = None

    def __exit__(self, *exc):
        self.close()


def new_header(machine, suite):
    """The header of a new run: schema version, run id, date, suite and machine fingerprint."""
    return dict(run_id=uuid.uuid4().hex[:12], created=_now(), suite=suite, machine=machine)
