"""``gvp-bench compare BASE NEW``: which cells got slower, hungrier or broken, beyond noise.

For every cell in both runs (the same op, model, size, strategy, device, dtype and k):

- time: the ratio of the medians, new / base, divided by the machine's drift: the median over
  all cells of the ratio of the plain forward passes, which both runs measured and no change to a
  strategy touches (so a machine that ran 20% slower for everything is not a regression). The cell
  is **slower** when that ratio is beyond the limit and a one-sided Mann-Whitney U test on the
  two runs' per-call samples is significant (p < 0.05); cells with too few samples for the test
  to reach 0.05 at all (3 against 3 or fewer) are judged on the limit alone. The limit is the threshold (10% by
  default) or, when larger, the noise floor of the pair of runs: z robust standard deviations
  (1.4826 x the median absolute deviation, which a minority of real regressions does not move)
  of the log time ratios over all N cells, the run-to-run noise that honest cells show; z is the
  normal quantile an honest cell exceeds with probability 0.05 / N (so that all N together
  raise a false alarm 5% of the time), and at least 3. A change beyond the threshold that fails
  either test is shown as *within noise*.
- memory: the ratio of the peaks; **more memory** beyond the threshold and by more than 64 KiB.
- status: a cell that ran and now does not (ok -> unsupported, error, oom, timeout), or that was
  unsupported and now fails, is **broken**; the reverse is shown as fixed.
- cells in only one of the runs are listed, and do not fail the comparison.

A regression is a slower, more memory or broken cell; ``gvp-bench compare`` exits 1 when there is one.
"""

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from . import stats, units
from .measurements import latest, load_frame, samples, workload
from .results import CELL_KEY

THRESHOLD = 0.10
MIN_NOISE_Z = 3.0        # the noise floor is at least this many robust standard deviations
MIN_CELLS_FOR_NOISE = 8  # fewer cells in both runs: the threshold alone
MEMORY_FLOOR_BYTES = 64 * 1024
STATUS_RANK = {"ok": 0, "unsupported": 1, "error": 2, "oom": 2, "timeout": 2}


@dataclass
class Comparison:
    table: pd.DataFrame  # one row per cell: verdict, regressed, the two runs' figures and the ratios
    threshold: float
    drift: float         # new / base time of the plain forward passes, the median over cells
    spread: float        # robust standard deviation of the log time ratios over the cells in both runs
    noise_cells: int     # how many cells that spread is estimated from
    base: pd.DataFrame   # the cells read, for the header
    new: pd.DataFrame

    @property
    def noise_z(self):
        """The noise floor in robust standard deviations: exceeded by an honest cell with probability
        ALPHA / N (normal log ratios), at least MIN_NOISE_Z."""
        return max(MIN_NOISE_Z, NormalDist().inv_cdf(1 - stats.ALPHA / max(self.noise_cells, 1)))

    @property
    def noise_floor(self):
        """The time change honest cells of these two runs reach by chance; 0 with too few cells to tell."""
        return math.exp(self.noise_z * self.spread) - 1 if self.noise_cells >= MIN_CELLS_FOR_NOISE else 0.0

    @property
    def limit(self):
        """The time change that counts: the threshold, or the noise floor when larger."""
        return max(self.threshold, self.noise_floor)

    @property
    def regressions(self):
        return self.table[self.table.regressed]


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
    change = row.peak_bytes_new - row.peak_bytes_base
    if row.memory_ratio > 1 + threshold and change > MEMORY_FLOOR_BYTES:
        return "more memory", True
    if row.memory_ratio < 1 / (1 + threshold) and -change > MEMORY_FLOOR_BYTES:
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
    both = table[(table.status_base == "ok") & (table.status_new == "ok")]
    drift = _drift(both)
    table["time_ratio"] = (table.median_s_new / table.median_s_base).astype(float)
    table["corrected"] = table.time_ratio / drift
    table["memory_ratio"] = (table.peak_bytes_new.astype(float) / table.peak_bytes_base.astype(float)).where(
        table.peak_bytes_base.astype(float) > 0)
    table["p_slower"], table["p_faster"] = _p_values(table)
    logs = np.log(table.corrected[(table.status_base == "ok") & (table.status_new == "ok")].dropna())
    comparison = Comparison(table, threshold, drift, stats.robust_spread(logs), len(logs), base, new)
    table["verdict"], table["regressed"] = _verdicts(table, threshold, comparison.limit)
    score = np.log(table.corrected).fillna(0)
    score = score.where(~table.verdict.str.startswith("broken"), np.inf)
    comparison.table = table.assign(score=score).sort_values(
        ["regressed", "score"], ascending=False, kind="stable").drop(columns="score").reset_index(drop=True)
    return comparison


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
    machines = sorted(set(comparison.base.machine) | set(comparison.new.machine))
    if len(machines) > 1:
        lines.append(f"warning: the runs were measured on different machines ({', '.join(machines)}); "
                     "compare runs of one machine.")
    lines.append(f"Machine drift: NEW ran the plain forward passes {comparison.drift:.3g}x as long as BASE; "
                 "'corrected' is the time ratio divided by it.")
    noise = (f"noise floor {comparison.noise_floor:.0%}: {comparison.noise_z:.2g} x the {comparison.spread:.1%} "
             f"robust spread of the {comparison.noise_cells} cells' time ratios"
             if comparison.noise_cells >= MIN_CELLS_FOR_NOISE else
             f"too few cells ({comparison.noise_cells}) to measure the noise floor")
    lines.append(f"A time change counts beyond {comparison.limit:.0%} (threshold {comparison.threshold:.0%}; {noise}) "
                 f"with p < {stats.ALPHA:g} (one-sided Mann-Whitney U on the samples, where they are enough); "
                 "memory beyond "
                 f"{comparison.threshold:.0%} and {units.size_in_bytes(MEMORY_FLOOR_BYTES)}.")
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
        lines += [f"  {workload(row)}: {_reason(row)}" for _, row in regressions.iterrows()]
    else:
        lines.append("No regression.")
    return "\n".join(lines)
