"""``gvp-bench compare BASE NEW``: which cells got slower, hungrier or broken, beyond noise.

For every cell in both runs (the same op, model, size, strategy, device, dtype and k):

- time, against two references that no change to a strategy touches, both timed in both runs:
  *vs machine*, the ratio of the medians (new / base) over the machine's drift, the median over
  the cells of the ratio of the plain forward passes (the machine's speed over the whole run);
  and *vs forward*, the ratio over the cell's own forward pass, timed right after it (the
  machine's speed at that moment) where that moved further than the drift: load at the moment a
  cell ran explains a change away, it never adds one. Load on a shared machine moves one of
  them, a slower strategy both. The cell is **slower** when both are beyond their limits and a
  one-sided Mann-Whitney U test on the two runs' per-call samples is significant (p < 0.05),
  where the test can decide: a cell whose base samples could not show even a pure change of
  the size measured (themselves against themselves scaled: 3 samples or fewer, or scattered
  wider by bursts of load) is judged on the limits alone. **faster** likewise.
- the limit of each reference is the threshold (10% by default) or, when larger, its noise floor
  in this pair of runs: on a shared machine the same code varies far more between runs than
  within one, so the test alone would flag honest runs. The floor is z robust standard
  deviations (1.4826 x the median absolute deviation, which a minority of real regressions does
  not move) of the log ratios of all N cells in both runs; z puts it where a logistic
  distribution of that spread (tails heavier than a normal's, as timings have) leaves
  probability 0.05 / N, so that N honest cells stay under it together 95% of the time. A change
  vs machine beyond the threshold that is not slower or faster is shown as *within noise*.
- memory: the ratio of the peaks, **more memory** beyond the threshold (peaks are deterministic:
  honest runs measure the same bytes).
- status: a cell that ran and now does not (ok -> unsupported, error, oom), or that was
  unsupported and now fails, is **broken**; the reverse is shown as fixed. A cell that ran and
  now ran out of time is a time change: **timed out**, a regression when the runs are quiet (the
  noise floor vs machine within the threshold), else *timed out (within noise)*: on a loaded
  machine a cell that takes seconds per call crosses the time limit in one honest run and not in
  the next.
- a cell skipped in either run (not measured: one call would not fit its time budget, which
  on a loaded machine happens in one run and not in the next) is shown as such (*ok -> skipped*),
  neither a regression nor a win.
- cells in only one of the runs are listed, and do not fail the comparison.
- ``auto``: a cell whose choice changed between the runs says so (*chose X (was Y)*); its time
  and memory are judged like any cell's, because a user of auto gets the new choice's cost.

A regression is a slower, more-memory or broken cell; ``gvp-bench compare`` exits 1 when there is one.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import stats, units
from .measurements import latest, load_frame, samples, workload
from .results import CELL_KEY

THRESHOLD = 0.10
MIN_CELLS_FOR_NOISE = 8  # fewer cells in both runs: the threshold alone
STATUS_RANK = {"ok": 0, "unsupported": 1, "error": 2, "oom": 2, "timeout": 2}
SKIPPED = "skipped"  # not measured within the cell's time budget: no verdict either way
# Fingerprint fields that differ between two runs of one set-up: what is under test, and when.
EXPECTED_TO_DIFFER = ("date", "git_commit", "git_dirty", "gvp_bench")


@dataclass
class Noise:
    """The run-to-run noise of the cells' log time ratios against one reference."""
    spread: float  # robust standard deviation
    cells: int     # how many cells it is estimated from
    z: float       # the noise floor in robust standard deviations (NaN with too few cells)
    floor: float   # the change honest cells of these two runs reach by chance (0 with too few cells)

    @classmethod
    def of(cls, log_ratios):
        """z is where a logistic distribution of the spread puts the quantile 1 - ALPHA / N (5.2
        for 245 cells). The logistic's tails are exponential, heavier than a normal's: two honest
        runs of the quick suite on a shared machine put a cell beyond the normal quantile."""
        log_ratios = log_ratios[np.isfinite(log_ratios)]
        spread, cells = stats.robust_spread(log_ratios), len(log_ratios)
        if cells < MIN_CELLS_FOR_NOISE:
            return cls(spread, cells, math.nan, 0.0)
        tail = stats.ALPHA / cells
        z = math.log((1 - tail) / tail) / (1.4826 * math.log(3))  # a logistic's MAD is its scale x ln 3
        return cls(spread, cells, z, math.exp(z * spread) - 1)


@dataclass
class Comparison:
    table: pd.DataFrame  # one row per cell: verdict, regressed, the two runs' figures and the ratios
    threshold: float
    drift: float         # new / base time of the plain forward passes, the median over the cells
    machine: Noise       # of the time ratios over the drift ("vs machine")
    forward: Noise       # of the time ratios over the cells' own forward-pass ratios
    base: pd.DataFrame   # the cells read, for the header
    new: pd.DataFrame

    def limit(self, noise):
        """The change that counts against one reference: the threshold, or its noise floor when larger."""
        return max(self.threshold, noise.floor)

    @property
    def regressions(self):
        return self.table[self.table.regressed]


def _drift(both):
    forward = (both.forward_median_s_new / both.forward_median_s_base).astype(float)
    forward = forward[np.isfinite(forward) & (forward > 0)]
    return float(np.exp(np.median(np.log(forward)))) if len(forward) else 1.0


def _status_verdict(row, comparison):
    base, new = row.status_base, row.status_new
    if pd.isna(base) or pd.isna(new):
        return ("only in NEW" if pd.isna(base) else "only in BASE"), False
    if SKIPPED in (base, new):
        return ("" if new == base else f"{base} -> {new}"), False
    if base == "ok" and new == "timeout":
        quiet = comparison.machine.floor <= comparison.threshold
        return ("timed out" if quiet else "timed out (within noise)"), quiet
    if STATUS_RANK[new] > STATUS_RANK[base]:
        return f"broken: {base} -> {new}", True
    if STATUS_RANK[new] < STATUS_RANK[base]:
        return f"fixed: {base} -> {new}", False
    return ("" if new == base else f"{base} -> {new}"), False


def _significant(p, decisive):
    """p < ALPHA; a cell where the test cannot decide (not ``decisive``) is not held back by it."""
    return p < stats.ALPHA or not decisive


def _beyond(ratio, limit, slower):
    """Whether ``ratio`` is beyond ``limit`` in the direction asked; a reference not measured (NaN)
    does not hold a cell back."""
    return pd.isna(ratio) or (ratio > 1 + limit if slower else ratio < 1 / (1 + limit))


def _time_verdict(row, comparison):
    if pd.isna(row.vs_machine):
        return "", False
    limits = comparison.limit(comparison.machine), comparison.limit(comparison.forward)
    for slower, word, p in ((True, "slower", row.p_slower), (False, "faster", row.p_faster)):
        if _beyond(row.vs_machine, limits[0], slower) and _beyond(row.vs_forward, limits[1], slower) \
                and _significant(p, row.decisive):
            return word, slower
    if not 1 / (1 + comparison.threshold) <= row.vs_machine <= 1 + comparison.threshold:
        return "within noise", False
    return "", False


def _memory_verdict(row, threshold):
    if row.memory_ratio > 1 + threshold:
        return "more memory", True
    if row.memory_ratio < 1 / (1 + threshold):
        return "less memory", False
    return "", False


def _choice_verdict(row):
    """auto's choice, where it changed between the runs; never a regression by itself."""
    base, new = getattr(row, "choice_base", None), getattr(row, "choice_new", None)
    if pd.isna(base) or pd.isna(new) or base == new:
        return "", False
    return f"chose {new} (was {base})", False


def _verdicts(comparison):
    verdicts, regressed = [], []
    for row in comparison.table.itertuples():
        parts = [_status_verdict(row, comparison), _choice_verdict(row)]
        if row.status_base == "ok" and row.status_new == "ok":
            parts.append(_time_verdict(row, comparison))
            if pd.notna(row.memory_ratio):
                parts.append(_memory_verdict(row, comparison.threshold))
        verdicts.append(", ".join(word for word, _ in parts if word) or "same")
        regressed.append(any(bad for _, bad in parts))
    return verdicts, regressed


def _tests(table):
    """Per cell: the one-sided p-values of slower and faster, and whether the test can decide a
    change of the size measured (:func:`gvp_bench.stats.can_show` on the base samples); NaN and
    False where a run did not measure it."""
    slower, faster, decisive = [], [], []
    for _, row in table.iterrows():
        if row.status_base == "ok" and row.status_new == "ok":
            base, new = samples(row, "_base"), samples(row, "_new")
            slower.append(stats.mann_whitney_greater(base, new))
            faster.append(stats.mann_whitney_greater(new, base))
            decisive.append(stats.can_show(base, row.time_ratio))
        else:
            slower.append(np.nan)
            faster.append(np.nan)
            decisive.append(False)
    return slower, faster, decisive


def _float(column):
    return column.astype(float)


def compare(base, new, threshold=THRESHOLD):
    """Compare the cells of two runs (frames of :func:`gvp_bench.measurements.load_frame`)."""
    base, new = latest(base, per_machine=False), latest(new, per_machine=False)
    table = base.merge(new, on=list(CELL_KEY), how="outer", suffixes=("_base", "_new"))
    both = (table.status_base == "ok") & (table.status_new == "ok")
    drift = _drift(table[both])
    table["time_ratio"] = _float(table.median_s_new) / _float(table.median_s_base)
    table["vs_machine"] = table.time_ratio / drift
    own = _float(table.forward_median_s_new) / _float(table.forward_median_s_base)
    # the cell's own forward pass explains a change away, it never adds one: against the drift where it moved less
    table["vs_forward"] = table.time_ratio / np.where(table.time_ratio >= drift, np.fmax(own, drift),
                                                      np.fmin(own, drift))
    table["memory_ratio"] = (_float(table.peak_bytes_new) / _float(table.peak_bytes_base)).where(
        _float(table.peak_bytes_base) > 0)
    table["p_slower"], table["p_faster"], table["decisive"] = _tests(table)
    comparison = Comparison(table, threshold, drift, Noise.of(np.log(table.vs_machine[both].to_numpy())),
                            Noise.of(np.log((table.time_ratio / own)[both].to_numpy())), base, new)
    table["verdict"], table["regressed"] = _verdicts(comparison)
    score = np.log(table.vs_machine).fillna(0).where(table.status_base.fillna("") == table.status_new.fillna(""),
                                                     np.inf)
    table = table.assign(score=score).sort_values(["regressed", "score"], ascending=False, kind="stable")
    comparison.table = table.drop(columns="score").reset_index(drop=True)
    return comparison


def compare_files(base_paths, new_paths, threshold=THRESHOLD):
    """:func:`compare` the results files (or folders of them) ``base_paths`` and ``new_paths``."""
    return compare(load_frame(base_paths), load_frame(new_paths), threshold)


def _time(row, side):
    status = row[f"status_{side}"]
    return "" if pd.isna(status) else status if status != "ok" else units.seconds(row[f"median_s_{side}"])


def _display(table):
    rows = []
    for _, row in table.iterrows():
        p = min(row.p_slower, row.p_faster)
        both = row.status_base == "ok" and row.status_new == "ok"
        rows.append({"verdict": row.verdict, "cell": workload(row), "base": _time(row, "base"),
                     "new": _time(row, "new"), "ratio": units.ratio(row.time_ratio),
                     "vs machine": units.ratio(row.vs_machine), "vs forward": units.ratio(row.vs_forward),
                     "p": "" if not both else f"{p:.1g}" if row.decisive else "n/a",
                     "peak memory": units.size_in_bytes(row.peak_bytes_new if both else np.nan),
                     "memory ratio": units.ratio(row.memory_ratio)})
    return pd.DataFrame(rows, columns=["verdict", "cell", "base", "new", "ratio", "vs machine", "vs forward", "p",
                                       "peak memory", "memory ratio"])


def _change(value):
    """A relative time change: ``0.1`` -> ``'10%'``, ``2.4`` -> ``'3.4x'``."""
    return f"{value:.0%}" if value < 1 else units.ratio(1 + value)


def _set_up_differences(base, new):
    """``['threads 2 vs 1', ...]``: the fingerprint fields (bar EXPECTED_TO_DIFFER) the two runs differ in."""
    fields = sorted({c for c in [*base.columns, *new.columns] if c.startswith("machine_")}
                    - {f"machine_{name}" for name in EXPECTED_TO_DIFFER})
    values = [(field.removeprefix("machine_"), [", ".join(sorted(map(str, frame[field].dropna().unique())))
                                                if field in frame else "" for frame in (base, new)])
              for field in fields]
    return [f"{name} {a or '-'} vs {b or '-'}" for name, (a, b) in values if a != b]


def _runs(frame):
    runs = frame.drop_duplicates("run_id")
    return ", ".join(f"{source} (run {run}, {machine})" for source, run, machine in
                     zip(runs.source, runs.run_id, runs.machine))


def _limit_text(comparison, noise):
    floor = (f"noise floor {_change(noise.floor)}: {noise.z:.2g} x the {noise.spread:.1%} robust spread of "
             f"{noise.cells} cells" if noise.cells >= MIN_CELLS_FOR_NOISE else
             f"too few cells ({noise.cells}) for a noise floor")
    return f"limit {_change(comparison.limit(noise))} (threshold {comparison.threshold:.0%}; {floor})"


def _reason(row):
    if row.verdict.startswith(("broken", "timed out")):
        return row.verdict + (f" ({str(row.error_new).splitlines()[0][:120]})" if pd.notna(row.error_new) else "")
    parts = []
    if "slower" in row.verdict:
        test = f"p={row.p_slower:.1g}" if row.decisive else "samples too few or scattered to test"
        parts.append(f"time {units.ratio(row.vs_machine)} vs machine, {units.ratio(row.vs_forward)} vs forward "
                     f"({test})")
    if "more memory" in row.verdict:
        parts.append(f"memory {units.ratio(row.memory_ratio)} ({units.size_in_bytes(row.peak_bytes_base)} -> "
                     f"{units.size_in_bytes(row.peak_bytes_new)})")
    return ", ".join(parts)


def render(comparison, markdown=False, only_changed=False):
    """What ``gvp-bench compare`` prints: the runs, the rule as applied, the table, the verdict."""
    table = comparison.table
    shown = table[~table.verdict.isin(["same", "within noise"])] if only_changed else table
    lines = [f"BASE: {_runs(comparison.base)}", f"NEW:  {_runs(comparison.new)}"]
    differences = _set_up_differences(comparison.base, comparison.new)
    if differences:
        lines.append(f"warning: the runs differ in more than the code ({'; '.join(differences)}): compare runs "
                     "of one machine and set-up.")
    lines += [f"Drift: NEW ran the plain forward passes {comparison.drift:.3g}x as long as BASE (median over the "
              "cells).",
              f"A cell is slower (faster) when its time changed beyond the limit against both references, with "
              f"p < {stats.ALPHA:g} (one-sided Mann-Whitney U on the samples; n/a where the base samples could not "
              "show a change of that size, too few or too scattered):",
              f"  vs machine (the time ratio over the drift): {_limit_text(comparison, comparison.machine)}",
              f"  vs forward (the time ratio over the cell's own forward pass, timed right after it, where that moved "
              f"more than the drift): {_limit_text(comparison, comparison.forward)}",
              f"Memory: more (less) beyond {comparison.threshold:.0%}."]
    if markdown:
        lines = [f"- {line.strip()}" for line in lines]
    display = _display(shown)
    if len(display):
        lines += ["", display.to_markdown(index=False, tablefmt="pipe" if markdown else "simple"), ""]
    else:
        lines += ["", "No cell changed beyond noise.", ""]
    counts = table.verdict.str.split(", ").explode().value_counts()
    lines.append(", ".join(f"{count} {verdict}" for verdict, count in counts.items()) + f" of {len(table)} cells.")
    regressions = comparison.regressions
    if len(regressions):
        lines.append(f"{len(regressions)} regression(s):")
        lines += [f"{'- ' if markdown else '  '}{workload(row)}: {_reason(row)}" for _, row in regressions.iterrows()]
    else:
        lines.append("No regression.")
    return "\n".join(lines)
