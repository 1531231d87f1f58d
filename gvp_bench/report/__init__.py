"""``gvp-bench report``: one or more results files -> a folder with index.md, a self-contained
index.html and the PNG figures both show.

The sections: what was read; the cells per strategy by status; an overview figure per device and
dtype; the winner table; JAX side by side (where the results hold JAX rows); full_jacobian against
output size; how cost grows with the parameter count (per model measured at two sizes or more);
per model workload, its figures and its time and memory tables; every cell that did not run, with why; the machines; how it was
measured. Results of several machines merge: the device then names the machine
(``cpu @ AMD EPYC 7763 (2 cores)``).
"""

import os

import pandas as pd

from ..measurements import latest, load_frame
from ..results import ResultsError
from . import plots, tables
from .render import Bullets, Heading, Table, Text, markdown, page

TITLE = "gvp-bench report"


def _with_machine_in_device(cells):
    if cells.machine.nunique() > 1:
        return cells.assign(device=cells.device + " @ " + cells.machine)
    return cells


def _span(values):
    values = sorted(set(values.dropna()))
    return "" if not values else str(values[0]) if len(values) == 1 else f"{values[0]} to {values[-1]}"


def _introduction(frame, cells):
    runs = frame.drop_duplicates("run_id")
    again = len(frame) - len(cells)
    return [Heading(TITLE, 1),
            Text(f"{len(cells)} measured cells: {cells.strategy.nunique()} strategies, {cells.op.nunique()} ops, "
                 f"{cells.model.nunique()} models, on {', '.join(sorted(set(cells.device)))}; from "
                 f"{len(runs)} run(s) ({', '.join(f'`{s}`' for s in runs.source)}), suite "
                 f"{', '.join(sorted(set(runs.suite.dropna().astype(str))))}, measured {_span(cells.measured_at)}."
                 + (f" {again} cell(s) measured more than once on a machine: the latest measurement is shown."
                    if again else "")),
            Text("Every strategy is in every table. A cell that did not run shows its status where a number would "
                 "be: `unsupported` (the strategy cannot compute this product and says so instead of answering "
                 "wrong), `error`, `oom` (out of memory), `timeout`, or `skipped` (one call would not fit the cell's "
                 "time budget: not measured, no verdict on the strategy); the last section lists each with its "
                 "reason."),
            Heading("Cells per strategy and status"),
            Table(tables.status_counts(cells), index=True)]


def _section(title, figures):
    """A heading and its figures; nothing when no figure was drawn."""
    figures = [figure for figure in figures if figure is not None]
    return [Heading(title), *figures] if figures else []


def _winners(cells):
    return [Heading("Winners"),
            Text("The fastest strategy per workload (lowest median time per call; `auto` is not a candidate, it "
                 "hands each call to one of the others; neither are the JAX side-by-side rows, not PyTorch "
                 "strategies: their column is the fastest one's time over the winner's), the runner-up's time "
                 "over the winner's, and `within noise` when the two's samples overlap (their interquartile ranges "
                 "meet, or a two-sided Mann-Whitney test at 5% cannot tell them apart) or the runner-up is slower by "
                 "no more than the machine's drift during the run (the slowest over the fastest of the same forward "
                 "pass, timed right after each of the workload's cells: cells are timed one after another). Where "
                 "the winner compiles on its first call per workload (`compiled`, `cuda_graphs`: seconds, measured "
                 "apart as `first_call_s`), `fastest not compiling` names the fastest strategy that does not, with its "
                 "time over the winner's. `auto` is measured against the best it chooses from: by default the "
                 "strategies that do not compile (`configure_auto(compile=True)` adds the others)."),
            Table(tables.winners(cells)), *_auto(cells)]


def _auto(cells):
    scores = tables.auto_scores(cells)
    if scores is None:
        return []
    counted, choice_ok, auto_ok = scores
    return [Text(f"`auto`: the strategy it chose (`auto chose`, its own cells' time over the best's in "
                 f"`choice / best`) was within 10% of the best it could choose in {choice_ok} of {counted} "
                 f"workloads ({choice_ok / counted:.0%}); auto's own time, its choosing and dispatch included, was "
                 f"within 15% of the best's in {auto_ok} of {counted} ({auto_ok / counted:.0%}). Two strategies "
                 "running the same code differ by noise alone, so a choice between them can miss either way.")]


def _jax(cells):
    """The JAX side-by-side section; nothing without JAX rows."""
    table = tables.jax_side_by_side(cells)
    if not len(table):
        return []
    return [Heading("JAX side by side"),
            Text("The same workloads (model, weights, input and vectors) in JAX: `jax.jit` of `jax.jvp`, `jax.vjp` "
                 "and `jax.vmap` over them, and of `jax.jacfwd` / `jax.jacrev` for the Jacobian, each against the "
                 "fastest PyTorch strategy. Times are steady-state medians; the JAX first call, which compiles, "
                 "is kept apart. Forward passes are each framework's own (the torch forward, the jitted JAX "
                 "forward), both listed. `PyTorch / JAX` above 1x: JAX was faster. JAX's peak memory is not "
                 "measured (torch's counters do not see it). XLA runs on as many CPU threads as torch: the run "
                 "pins itself to `--threads` CPUs before JAX is imported (XLA sizes its pool by them); each "
                 "row's `threads` says how many."),
            Table(table)]


def _models(cells, strategies, directory):
    blocks = [Heading("Per model")]
    ks = sorted(set(cells.k.dropna().astype(int)))
    if len(ks) == 1:
        blocks.append(Text(f"The batch ops ran at k = {ks[0]} only: no figure of growth with k (the full suite "
                           "measures several k)."))
    for (model, size, device, dtype), group in cells.groupby(["model", "size", "device", "dtype"], sort=True):
        blocks += [Heading(f"{model}/{size} on {device}, {dtype}", 3),
                   plots.model_bars(group, strategies, directory),
                   plots.k_growth(group, strategies, directory),
                   Text("Median time per call (in forward passes):"), Table(tables.times(group), index=True),
                   Text("Peak memory:"), Table(tables.memory(group), index=True)]
    return blocks


def _failures(cells):
    failed = tables.failures(cells)
    return [Heading("Cells that did not run"),
            Table(failed) if len(failed) else Text("None: every cell ran.")]


def _method(cells):
    runs = cells[cells.status == "ok"].runs.dropna().astype(int)
    workarounds = pd.Series([w for ws in cells.workarounds.dropna() for w in ws], dtype=object).value_counts()
    return [Heading("How it was measured"), Bullets([
        "By `gvp-bench run`, one cell (op x model x size x strategy x device x dtype x k) at a time, each "
        "written to the results file as soon as it is measured.",
        f"Time: samples of seconds per call, each the mean over a block of calls (torch.utils.benchmark), "
        f"{_span(runs)} samples per cell; the tables and figures show their median, the interquartile range "
        "and the machine's drift during the run (see Winners) decide what is within noise, and `gvp-bench compare` "
        "tests the samples themselves.",
        "In forward passes: the median time over the median time of the plain forward pass of the same model, "
        "size, device and dtype in the same run: a cost that compares across machines.",
        "Peak memory: the most memory torch allocates during one call above what was allocated before it "
        "(CUDA: the allocator's peak counter; CPU: torch.profiler's allocation records).",
        f"Torch intra-op threads: {_span(cells.threads.dropna().astype(int))}; dtypes: "
        f"{', '.join(sorted(set(cells.dtype)))}; devices: {', '.join(sorted(set(cells.device)))}.",
        "Scoped workarounds the strategies needed (see the README): " + (
            ", ".join(f"`{name}` in {count} cell(s)" for name, count in workarounds.items()) or "none") + ".",
    ])]


def write_report(paths, directory):
    """Read the results files ``paths`` and write the report into ``directory``; returns index.md's path."""
    os.makedirs(directory, exist_ok=True)
    frame = load_frame(paths)
    if not len(frame):
        raise ResultsError(f"{', '.join(map(str, paths))}: no measured cells to report")
    frame = frame[frame.machine_measure == "time"]  # the report is of times; compare reads instruction counts
    if not len(frame):
        raise ResultsError(f"{', '.join(map(str, paths))}: instruction counts only (--measure instructions): the "
                           "report shows measured times; gvp-bench compare reads the counts")
    cells = _with_machine_in_device(latest(frame))
    strategies = tables.strategy_order(cells)
    by_device = [group for _, group in cells.groupby(["device", "dtype"], sort=True)]
    blocks = [*_introduction(frame, cells),
              Heading("Overview"), *[plots.overview(group, strategies, directory) for group in by_device],
              *_winners(cells),
              *_jax(cells),
              *_section("full_jacobian against output size",
                        [plots.jacobian_growth(group, strategies, directory) for group in by_device]),
              *_section("How cost grows with the parameters",
                        [plots.scaling(group, strategies, directory)
                         for _, group in cells.groupby(["device", "dtype", "model"], sort=True)]),
              *_models(cells, strategies, directory),
              *_failures(cells),
              Heading("Machines"), Table(tables.environment(frame), index=True),
              *_method(cells)]
    blocks = [block for block in blocks if block is not None]
    with open(os.path.join(directory, "index.md"), "w", encoding="utf-8") as stream:
        stream.write(markdown(blocks))
    with open(os.path.join(directory, "index.html"), "w", encoding="utf-8") as stream:
        stream.write(page(blocks, TITLE, directory))
    return os.path.join(directory, "index.md")
