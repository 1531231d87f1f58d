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
  not move) of the log ratios of all N cells in both runs; z puts it where a heavy-tailed
  distribution of that spread leaves probability 0.05 / N, so that N honest cells stay under it
  together 95% of the time. With one run per side that is Student's t with 3 degrees of
  freedom: between honest runs a cell now and then runs far slower for a whole process, its
  samples tight, which one run cannot tell from a change (docs/ci.md has the measurements). A
  change vs machine beyond the threshold that is not slower or faster is shown as *within noise*.
- repeated runs: BASE and NEW may each hold several runs of the same cells (several results files,
  or a folder of them). A cell that ran in several runs of a side takes the median over them of
  each run's median, and the runs' medians as its samples; with REPEATED_RUNS (3) or more per
  side the floor takes a logistic's tails (exponential), and a cell is slower only where every
  NEW run is also beyond every BASE run by the threshold (faster likewise): a single run's
  shift moves neither. Three runs per side see changes a single run's floor hides.
- memory: the ratio of the peaks, **more memory** beyond the threshold (peaks are deterministic:
  honest runs measure the same bytes).
- status: a cell that ran and now does not (ok -> unsupported, error, oom), or that was
  unsupported and now fails, is **broken**; the reverse is shown as fixed. A cell that ran and
  now ran out of time is a time change: **timed out**, a regression when the runs are quiet (the
  noise floor vs machine within the threshold), else *timed out (within noise)*: on a loaded
  machine a cell that takes seconds per call crosses the time limit in one honest run and not in
  the next.
- instructions (``gvp-bench run --measure instructions``): the ratio of the counts per call,
  **more instructions** beyond the instructions threshold (1% by default: honest runs count
  within a small fraction of that), with no noise floor: load does not move a count.
- a cell skipped in either run (not measured: one call would not fit its time budget, which
  on a loaded machine happens in one run and not in the next) is shown as such (*ok -> skipped*),
  neither a regression nor a win.
- cells in only one of the runs are listed.
- ``auto``: a cell whose choice changed between the runs says so (*chose X (was Y)*); its time
  and memory are judged like any cell's, because a user of auto gets the new choice's cost.

A regression is a slower, more-memory, more-instructions or broken cell. ``gvp-bench compare``
exits 1 when there is one, and 2 (:func:`exit_code`) when the runs cannot vouch for NEW: no cell
measured in both, or a BASE cell that NEW lacks or that ran in BASE and fails in NEW other than
by running out of time (unless
``allow_missing``), or, with ``strict``, runs whose set-up differs (threads, torch, machine,
measure...), which is otherwise a warning.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import stats, units
from .measurements import latest, load_frame, samples, workload
from .results import CELL_KEY

THRESHOLD = 0.10
INSTRUCTIONS_THRESHOLD = 0.01  # honest runs' counts differ by far less (docs/ci.md gives the spread measured)
MIN_CELLS_FOR_NOISE = 8  # fewer cells in both runs: the threshold alone
REPEATED_RUNS = 3  # runs per side from which a cell's time is the median of its runs, and the tails lighter
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
    tails: str = ""  # the model of the spread's tails z comes from: "logistic" or "t3" ("" with too few cells)

    @classmethod
    def of(cls, log_ratios, runs_per_side=1):
        """z is where a heavy-tailed model of the spread puts the quantile 1 - ALPHA / N. With one run per side
        (fewer than REPEATED_RUNS), Student's t with 3 degrees of freedom: between single runs a cell now and
        then runs far slower for a whole process, which neither its samples nor a lighter tail foresee
        (9.0 robust standard deviations for 48 cells). With REPEATED_RUNS or more per side, whose medians
        such a run does not move, a logistic (exponential tails; 4.2 for 48 cells)."""
        log_ratios = log_ratios[np.isfinite(log_ratios)]
        spread, cells = stats.robust_spread(log_ratios), len(log_ratios)
        if cells < MIN_CELLS_FOR_NOISE:
            return cls(spread, cells, math.nan, 0.0)
        tails, quantile = (("logistic", stats.logistic_quantile) if runs_per_side >= REPEATED_RUNS
                           else ("t3", stats.student_t3_quantile))
        z = quantile(1 - stats.ALPHA / cells)
        return cls(spread, cells, z, math.exp(z * spread) - 1, tails)


@dataclass
class Comparison:
    table: pd.DataFrame  # one row per cell: verdict, regressed, the two runs' figures and the ratios
    threshold: float
    drift: float         # new / base time of the plain forward passes, the median over the cells
    machine: Noise       # of the time ratios over the drift ("vs machine")
    forward: Noise       # of the time ratios over the cells' own forward-pass ratios
    base: pd.DataFrame   # every row read (all runs), for the header
    new: pd.DataFrame
    instructions_threshold: float = INSTRUCTIONS_THRESHOLD
    runs_per_side: int = 1  # the fewest runs either side measured a compared cell in

    def limit(self, noise):
        """The change that counts against one reference: the threshold, or its noise floor when larger."""
        return max(self.threshold, noise.floor)

    @property
    def regressions(self):
        return self.table[self.table.regressed]

    @property
    def compared(self):
        """The cells that ran in both runs."""
        return self.table[(self.table.status_base == "ok") & (self.table.status_new == "ok")]

    @property
    def missing(self):
        """BASE cells that NEW lacks, or that ran in BASE and fail in NEW (a time out is a time change, a skip
        is load)."""
        table = self.table
        lacking = table.status_base.notna() & table.status_new.isna()
        failing = (table.status_base == "ok") & table.status_new.notna() \
            & ~table.status_new.isin(["ok", "timeout", SKIPPED])
        return table[lacking | failing]

    @property
    def set_up_differences(self):
        return _set_up_differences(self.base, self.new)


def problems(comparison, allow_missing=False, strict=False):
    """Why the runs cannot vouch for NEW (exit 2), one sentence each; empty when they can."""
    found = []
    if not len(comparison.compared):
        found.append("no cell ran in both runs: nothing to compare (are these the right files?)")
    if len(comparison.missing) and not allow_missing:
        found.append(f"{len(comparison.missing)} BASE cell(s) missing or failing in NEW: "
                     + "; ".join(f"{workload(row)} ({'missing' if pd.isna(row.status_new) else row.status_new})"
                                 for _, row in comparison.missing.head(5).iterrows())
                     + ("; ..." if len(comparison.missing) > 5 else "") + " (--allow-missing to accept)")
    if strict and comparison.set_up_differences:
        found.append(f"the runs differ in set-up ({'; '.join(comparison.set_up_differences)}) and --strict is on")
    return found


def exit_code(comparison, allow_missing=False, strict=False):
    """2 when the runs cannot vouch for NEW (:func:`problems`), else 1 on a regression, else 0."""
    if problems(comparison, allow_missing, strict):
        return 2
    return 1 if len(comparison.regressions) else 0


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


def _every_run_beyond(row, comparison, slower):
    """Where both sides measured the cell in several runs: whether every NEW run's median is beyond every BASE
    run's by the threshold (over the drift) in the direction asked; True otherwise."""
    if row.runs_base < 2 or row.runs_new < 2:
        return True
    base, new = np.asarray(row.samples_s_base, dtype=float), np.asarray(row.samples_s_new, dtype=float)
    ratio = (new.min() / base.max() if slower else new.max() / base.min()) / comparison.drift
    return _beyond(ratio, comparison.threshold, slower)


def _time_verdict(row, comparison):
    if pd.isna(row.vs_machine):
        return "", False
    limits = comparison.limit(comparison.machine), comparison.limit(comparison.forward)
    for slower, word, p in ((True, "slower", row.p_slower), (False, "faster", row.p_faster)):
        if _beyond(row.vs_machine, limits[0], slower) and _beyond(row.vs_forward, limits[1], slower) \
                and _significant(p, row.decisive) and _every_run_beyond(row, comparison, slower):
            return word, slower
    if not 1 / (1 + comparison.threshold) <= row.vs_machine <= 1 + comparison.threshold:
        return "within noise", False
    return "", False


def _count_verdict(ratio, threshold, more, fewer):
    """For a deterministic count (bytes, instructions): ``more`` (a regression) or ``fewer`` beyond the threshold."""
    if ratio > 1 + threshold:
        return more, True
    if ratio < 1 / (1 + threshold):
        return fewer, False
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
                parts.append(_count_verdict(row.memory_ratio, comparison.threshold, "more memory", "less memory"))
            if pd.notna(row.instructions_ratio):
                parts.append(_count_verdict(row.instructions_ratio, comparison.instructions_threshold,
                                            "more instructions", "fewer instructions"))
        verdicts.append(", ".join(word for word, _ in parts if word) or "same")
        regressed.append(any(bad for _, bad in parts))
    return verdicts, regressed


def _tests(table):
    """Per cell: the one-sided p-values of slower and faster, and whether the test can decide a
    change of the size measured (:func:`gvp_bench.stats.can_show` on the base samples); NaN and
    False where a run did not measure it."""
    slower, faster, decisive = [], [], []
    for _, row in table.iterrows():
        if row.status_base == "ok" and row.status_new == "ok" and pd.notna(row.median_s_base) \
                and pd.notna(row.median_s_new):
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


_COMBINED = ("median_s", "forward_median_s", "thread_cpu_median_s")  # a repeated cell's: the median over its runs


def _per_cell(frame):
    """One row per cell of one side: its latest measurement, with ``runs``, the runs it ran in. A cell whose
    latest measurement ran, and that ran in several runs (repeated runs of one side given together), is
    those runs combined: the median over the runs of each run's median (time, forward pass, CPU time), and
    the runs' medians as its samples, so that the test and the every-run check see how it varies between
    runs, which is more than within one."""
    cells = latest(frame, per_machine=False).assign(runs=1)
    ok = frame[frame.status == "ok"].sort_values("measured_at", kind="stable")
    per_run = ok.drop_duplicates([*CELL_KEY, "run_id"], keep="last")  # a run that measured a cell twice: the latest
    repeated = per_run[per_run.groupby(list(CELL_KEY), dropna=False).run_id.transform("size") > 1]
    if repeated.empty:
        return cells
    combined = repeated.groupby(list(CELL_KEY), dropna=False).agg(
        runs=("median_s", "size"), samples_s=("median_s", list),
        **{name: (name, "median") for name in _COMBINED if name in repeated}).reset_index()
    merged = cells.merge(combined, on=list(CELL_KEY), how="left", suffixes=("", "_runs"))
    take = merged.runs_runs.notna() & (merged.status == "ok")
    for name in ("runs", "samples_s", *(n for n in _COMBINED if f"{n}_runs" in merged)):
        merged[name] = merged[f"{name}_runs"].where(take, merged[name])
    return merged.drop(columns=[c for c in merged if c.endswith("_runs")])


def compare(base, new, threshold=THRESHOLD, instructions_threshold=INSTRUCTIONS_THRESHOLD):
    """Compare the cells of two runs (frames of :func:`gvp_bench.measurements.load_frame`); a side may hold
    several runs of the same cells (repeated runs), which are combined per cell (:func:`_per_cell`)."""
    table = _per_cell(base).merge(_per_cell(new), on=list(CELL_KEY), how="outer", suffixes=("_base", "_new"))
    both = (table.status_base == "ok") & (table.status_new == "ok")
    runs_per_side = int(min(table.runs_base[both].min(), table.runs_new[both].min())) if both.any() else 1
    drift = _drift(table[both])
    table["time_ratio"] = _float(table.median_s_new) / _float(table.median_s_base)
    table["vs_machine"] = table.time_ratio / drift
    own = _float(table.forward_median_s_new) / _float(table.forward_median_s_base)
    # the cell's own forward pass explains a change away, it never adds one: against the drift where it moved less
    table["vs_forward"] = table.time_ratio / np.where(table.time_ratio >= drift, np.fmax(own, drift),
                                                      np.fmin(own, drift))
    table["memory_ratio"] = (_float(table.peak_bytes_new) / _float(table.peak_bytes_base)).where(
        _float(table.peak_bytes_base) > 0)
    table["instructions_ratio"] = _float(table.instructions_new) / _float(table.instructions_base)
    table["p_slower"], table["p_faster"], table["decisive"] = _tests(table)
    comparison = Comparison(table, threshold, drift,
                            Noise.of(np.log(table.vs_machine[both].to_numpy()), runs_per_side),
                            Noise.of(np.log((table.time_ratio / own)[both].to_numpy()), runs_per_side), base, new,
                            instructions_threshold, runs_per_side)
    table["verdict"], table["regressed"] = _verdicts(comparison)
    same_status = table.status_base.fillna("") == table.status_new.fillna("")
    score = np.log(table.vs_machine.fillna(table.instructions_ratio)).fillna(0).where(same_status, np.inf)
    table = table.assign(score=score).sort_values(["regressed", "score"], ascending=False, kind="stable")
    comparison.table = table.drop(columns="score").reset_index(drop=True)
    return comparison


def compare_files(base_paths, new_paths, threshold=THRESHOLD, instructions_threshold=INSTRUCTIONS_THRESHOLD):
    """:func:`compare` the results files (or folders of them) ``base_paths`` and ``new_paths``."""
    return compare(load_frame(base_paths), load_frame(new_paths), threshold, instructions_threshold)


def _time(row, side):
    status = row[f"status_{side}"]
    if pd.isna(status) or status != "ok":
        return "" if pd.isna(status) else status
    if pd.isna(row[f"median_s_{side}"]):
        return units.instructions(row[f"instructions_{side}"])
    return units.seconds(row[f"median_s_{side}"])


def _display(table):
    rows = []
    for _, row in table.iterrows():
        p = min(row.p_slower, row.p_faster)
        both = row.status_base == "ok" and row.status_new == "ok"
        timed = both and pd.notna(row.time_ratio)
        rows.append({"verdict": row.verdict, "cell": workload(row), "base": _time(row, "base"),
                     "new": _time(row, "new"),
                     "ratio": units.ratio(row.time_ratio if pd.notna(row.time_ratio) else row.instructions_ratio, 4),
                     "vs machine": units.ratio(row.vs_machine), "vs forward": units.ratio(row.vs_forward),
                     "p": "" if not timed else f"{p:.1g}" if row.decisive else "n/a",
                     "peak memory": units.size_in_bytes(row.peak_bytes_new if both else np.nan),
                     "memory ratio": units.ratio(row.memory_ratio)})
    frame = pd.DataFrame(rows, columns=["verdict", "cell", "base", "new", "ratio", "vs machine", "vs forward", "p",
                                        "peak memory", "memory ratio"])
    empty = [name for name in frame.columns[4:] if len(frame) and frame[name].eq("").all()]
    return frame.drop(columns=empty)  # what neither run measured (instruction counts have no time or memory)


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
             f"{noise.cells} cells, {noise.tails} tails" if noise.cells >= MIN_CELLS_FOR_NOISE else
             f"too few cells ({noise.cells}) for a noise floor")
    return f"limit {_change(comparison.limit(noise))} (threshold {comparison.threshold:.0%}; {floor})"


def _runs_text(comparison):
    runs = comparison.runs_per_side
    if runs >= REPEATED_RUNS:
        return (f"Runs per side: {runs} (each cell's time the median of its runs; slower only where every NEW run "
                f"is beyond every BASE run by the threshold too)")
    return (f"Runs per side: {runs} (between honest runs a cell can shift far beyond its samples' spread for a "
            f"whole process, which "
            f"{'one run' if runs == 1 else 'two runs'} cannot tell from a change: the floor has heavy tails; "
            f"{REPEATED_RUNS} runs per side, in a folder each, see smaller changes)")


def _reason(row):
    if row.verdict.startswith(("broken", "timed out")):
        return row.verdict + (f" ({str(row.error_new).splitlines()[0][:120]})" if pd.notna(row.error_new) else "")
    parts = []
    if "slower" in row.verdict:
        test = f"p={row.p_slower:.1g}" if row.decisive else "samples too few or scattered to test"
        parts.append(f"time {units.ratio(row.vs_machine)} vs machine, {units.ratio(row.vs_forward)} vs forward "
                     f"({test})")
    if "more instructions" in row.verdict:
        parts.append(f"instructions {units.ratio(row.instructions_ratio, 4)} "
                     f"({units.instructions(row.instructions_base)} -> {units.instructions(row.instructions_new)} "
                     f"per call)")
    if "more memory" in row.verdict:
        parts.append(f"memory {units.ratio(row.memory_ratio)} ({units.size_in_bytes(row.peak_bytes_base)} -> "
                     f"{units.size_in_bytes(row.peak_bytes_new)})")
    return ", ".join(parts)


def render(comparison, markdown=False, only_changed=False, allow_missing=False, strict=False):
    """What ``gvp-bench compare`` prints: the runs, the rule as applied, the table, the verdict."""
    table = comparison.table
    shown = table[~table.verdict.isin(["same", "within noise"])] if only_changed else table
    lines = [f"BASE: {_runs(comparison.base)}", f"NEW:  {_runs(comparison.new)}"]
    differences = _set_up_differences(comparison.base, comparison.new)
    if differences:
        lines.append(f"warning: the runs differ in more than the code ({'; '.join(differences)}): compare runs "
                     "of one machine and set-up.")
    if comparison.compared.time_ratio.notna().any():  # runs of counted instructions have no time to judge
        lines += [f"Drift: NEW ran the plain forward passes {comparison.drift:.3g}x as long as BASE (median over "
                  "the cells).",
                  f"A cell is slower (faster) when its time changed beyond the limit against both references, with "
                  f"p < {stats.ALPHA:g} (one-sided Mann-Whitney U on the samples; n/a where the base samples could "
                  "not show a change of that size, too few or too scattered):",
                  _runs_text(comparison),
                  f"  vs machine (the time ratio over the drift): {_limit_text(comparison, comparison.machine)}",
                  f"  vs forward (the time ratio over the cell's own forward pass, timed right after it, where that "
                  f"moved more than the drift): {_limit_text(comparison, comparison.forward)}"]
    lines.append(f"Memory: more (less) beyond {comparison.threshold:.0%}. Instructions (--measure instructions): "
                 f"more (fewer) beyond {comparison.instructions_threshold:.1%}.")
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
    lines += [f"Not comparable: {problem}" for problem in problems(comparison, allow_missing, strict)]
    return "\n".join(lines)
