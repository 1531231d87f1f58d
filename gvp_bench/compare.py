"""``gvp-bench compare BASE NEW``: which cells got slower, hungrier or broken, beyond noise.

For every cell in both runs (the same op, model, size, strategy, device, dtype and k):

- time: the ratio of the medians, new / base, divided by the machine's drift: the median over
  the cells of the ratio of the plain forward passes, which both runs time and no change to a
  strategy touches (a machine that ran everything 20% slower is not a regression). The cell is
  **slower** when that ratio is beyond the limit and a one-sided Mann-Whitney U test on the two
  runs' per-call samples is significant (p < 0.05); a cell with too few samples for the test to
  reach 0.05 at all (3 against 3 or fewer) is judged on the limit alone.
- the limit is the threshold (10% by default) or, when larger, the noise floor of the pair of
  runs: on a shared machine the same code varies far more between runs than within one, so the
  test alone would flag honest runs. The floor is z robust standard deviations (1.4826 x the
  median absolute deviation, which a minority of real regressions does not move) of the log time
  ratios of all N cells in both runs; z puts the floor where a logistic distribution of that
  spread (tails heavier than a normal's, as timings have) leaves probability 0.05 / N, so that N
  honest cells stay under it together 95% of the time. A change beyond the threshold that fails
  either test is shown as *within noise*.
- memory: the ratio of the peaks, **more memory** beyond the threshold (peaks are deterministic:
  honest runs measure the same bytes).
- status: a cell that ran and now does not (ok -> unsupported, error, oom, timeout), or that was
  unsupported and now fails, is **broken**; the reverse is shown as fixed.
- cells in only one of the runs are listed, and do not fail the comparison.

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
# Fingerprint fields that differ between two runs of one set-up: what is under test, and when.
EXPECTED_TO_DIFFER = ("date", "git_commit", "git_dirty", "gvp_bench")


@dataclass
class Comparison:
    table: pd.DataFrame  # one row per cell: verdict, regressed, the two runs' figures and the ratios
    threshold: float
    drift: float         # new / base time of the plain forward passes, the median over cells
    spread: float        # robust standard deviation of the log time ratios over the cells in both runs
    noise_cells: int     # how many cells that spread is estimated from
    noise_z: float       # the noise floor in robust standard deviations
    noise_floor: float   # the time change honest cells of these two runs reach by chance
    base: pd.DataFrame   # the cells read, for the header
    new: pd.DataFrame

    @property
    def limit(self):
        """The time change that counts: the threshold, or the noise floor when larger."""
        return max(self.threshold, self.noise_floor)

    @property
    def regressions(self):
        return self.table[self.table.regressed]


def _noise(log_ratios):
    """The robust spread of the cells' log time ratios, the z of the noise floor and the floor
    itself (0 with too few cells to tell).

    z, in robust standard deviations, is where a logistic distribution of that spread puts the
    quantile 1 - ALPHA / N, so that N honest cells all stay under the floor 95% of the time (5.2
    for 245 cells). The logistic's tails are exponential, heavier than a normal's: two honest
    runs of the quick suite on the 2-core machine put a cell at 4.2 robust standard deviations,
    beyond the normal quantile's 3.5.
    """
    spread, cells = stats.robust_spread(log_ratios), len(log_ratios)
    if cells < MIN_CELLS_FOR_NOISE:
        return spread, math.nan, 0.0
    tail = stats.ALPHA / cells
    z = math.log((1 - tail) / tail) / (1.4826 * math.log(3))  # a logistic's MAD is its scale x ln 3
    return spread, z, math.exp(z * spread) - 1


def _drift(both):
    forward = both.forward_median_s_new / both.forward_median_s_base
    forward = forward[np.isfinite(forward.astype(float)) & (forward > 0)]
    return float(np.exp(np.median(np.log(forward.astype(float))))) if len(forward) else 1.0


def _status_verdict(row):
    base, new = row.status_base, row.status_new
    if pd.isna(base) or pd.isna(new):
        return ("only in NEW" if pd.isna(base) else "only in BASE"), False
    if STATUS_RANK[new] > STATUS_RANK[base]:
        return f"broken: {base} -> {new}", True
    if STATUS_RANK[new] < STATUS_RANK[base]:
        return f"fixed: {base} -> {new}", False
    return ("" if new == base else f"{base} -> {new}"), False


def _significant(p):
    """p < ALPHA; a cell whose samples are too few for the test (p is NaN) is not held back by it."""
    return pd.isna(p) or p < stats.ALPHA


def _time_verdict(row, threshold, limit):
    ratio = row.corrected
    if ratio > 1 + limit and _significant(row.p_slower):
        return "slower", True
    if ratio < 1 / (1 + limit) and _significant(row.p_faster):
        return "faster", False
    if ratio > 1 + threshold or ratio < 1 / (1 + threshold):
        return "within noise", False
    return "", False


def _memory_verdict(row, threshold):
    if row.memory_ratio > 1 + threshold:
        return "more memory", True
    if row.memory_ratio < 1 / (1 + threshold):
        return "less memory", False
    return "", False


def _verdicts(table, threshold, limit):
    verdicts, regressed = [], []
    for row in table.itertuples():
        parts = [_status_verdict(row)]
        if row.status_base == "ok" and row.status_new == "ok":
            parts.append(_time_verdict(row, threshold, limit))
            if pd.notna(row.memory_ratio):
                parts.append(_memory_verdict(row, threshold))
        verdicts.append(", ".join(word for word, _ in parts if word) or "same")
        regressed.append(any(bad for _, bad in parts))
    return verdicts, regressed


def _p_values(table):
    """The one-sided p-values of slower and faster per cell; NaN where the samples are too few."""
    slower, faster = [], []
    for _, row in table.iterrows():
        base, new = samples(row, "_base"), samples(row, "_new")
        if row.status_base == "ok" and row.status_new == "ok" and stats.testable(len(base), len(new)):
            slower.append(stats.mann_whitney_greater(base, new))
            faster.append(stats.mann_whitney_greater(new, base))
        else:
            slower.append(np.nan)
            faster.append(np.nan)
    return slower, faster


def compare(base, new, threshold=THRESHOLD):
    """Compare the cells of two runs (frames of :func:`gvp_bench.measurements.load_frame`)."""
    base, new = latest(base, per_machine=False), latest(new, per_machine=False)
    table = base.merge(new, on=list(CELL_KEY), how="outer", suffixes=("_base", "_new"))
    both = (table.status_base == "ok") & (table.status_new == "ok")
    drift = _drift(table[both])
    table["time_ratio"] = (table.median_s_new / table.median_s_base).astype(float)
    table["corrected"] = table.time_ratio / drift
    table["memory_ratio"] = (table.peak_bytes_new.astype(float) / table.peak_bytes_base.astype(float)).where(
        table.peak_bytes_base.astype(float) > 0)
    table["p_slower"], table["p_faster"] = _p_values(table)
    logs = np.log(table.corrected[both].dropna())
    spread, z, floor = _noise(logs)
    table["verdict"], table["regressed"] = _verdicts(table, threshold, max(threshold, floor))
    score = np.log(table.corrected).fillna(0).where(~table.verdict.str.startswith("broken"), np.inf)
    table = table.assign(score=score).sort_values(["regressed", "score"], ascending=False, kind="stable")
    return Comparison(table.drop(columns="score").reset_index(drop=True), threshold, drift, spread, len(logs), z,
                      floor, base, new)


def compare_files(base_paths, new_paths, threshold=THRESHOLD):
    """:func:`compare` the results files (or folders of them) ``base_paths`` and ``new_paths``."""
    return compare(load_frame(base_paths), load_frame(new_paths), threshold)


def _cell(row, side):
    status = row[f"status_{side}"]
    if pd.isna(status):
        return "", ""
    if status != "ok":
        return status, ""
    return units.seconds(row[f"median_s_{side}"]), units.size_in_bytes(row[f"peak_bytes_{side}"])


def _display(table):
    rows = []
    for _, row in table.iterrows():
        base_time, base_memory = _cell(row, "base")
        new_time, new_memory = _cell(row, "new")
        p = min(row.p_slower, row.p_faster)
        both = row.status_base == "ok" and row.status_new == "ok"
        rows.append({"verdict": row.verdict, "cell": workload(row), "base": base_time, "new": new_time,
                     "ratio": units.ratio(row.time_ratio), "corrected": units.ratio(row.corrected),
                     "p": f"{p:.1g}" if pd.notna(p) else "few samples" if both else "", "base memory": base_memory,
                     "new memory": new_memory, "memory ratio": units.ratio(row.memory_ratio)})
    return pd.DataFrame(rows, columns=["verdict", "cell", "base", "new", "ratio", "corrected", "p", "base memory",
                                       "new memory", "memory ratio"])


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


def _reason(row):
    if row.verdict.startswith("broken"):
        return row.verdict + (f" ({str(row.error_new).splitlines()[0][:120]})" if pd.notna(row.error_new) else "")
    parts = []
    if "slower" in row.verdict:
        test = f"p={row.p_slower:.1g}" if pd.notna(row.p_slower) else "too few samples to test"
        parts.append(f"time {units.ratio(row.corrected)} ({test})")
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
    lines.append(f"Machine drift: NEW ran the plain forward passes {comparison.drift:.3g}x as long as BASE; "
                 "'corrected' is the time ratio divided by it.")
    noise = (f"noise floor {_change(comparison.noise_floor)}: {comparison.noise_z:.2g} x the {comparison.spread:.1%} "
             f"robust spread of the {comparison.noise_cells} cells' time ratios"
             if comparison.noise_cells >= MIN_CELLS_FOR_NOISE else
             f"too few cells ({comparison.noise_cells}) to measure the noise floor")
    lines.append(f"A time change counts beyond {_change(comparison.limit)} "
                 f"(threshold {comparison.threshold:.0%}; {noise}) "
                 f"with p < {stats.ALPHA:g} (one-sided Mann-Whitney U on the samples, where they are enough); "
                 f"memory beyond {comparison.threshold:.0%}.")
    if markdown:
        lines = [f"- {line}" for line in lines]
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
