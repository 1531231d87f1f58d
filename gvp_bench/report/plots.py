"""The report's figures, drawn with matplotlib and saved as PNG files.

The figures are ``matplotlib.figure.Figure`` objects, never pyplot's: no display or GUI backend
is involved, Agg renders the PNGs, and nothing global is left behind. Each function takes the
measured cells of one group (a device and dtype, or a model workload), the strategies of the
whole report (so that rows agree between figures) and a folder; it saves one figure there and
returns it as a :class:`~gvp_bench.report.render.Figure` (None when the group has nothing to
draw). Every strategy has one fixed colour in every figure and every report (:func:`colour`);
bars are sorted by time, fastest first. Times and memory are on log scales; a cell that did not run is drawn as such
(its status written in its place, or a hollow marker on the bottom edge), never left out.
"""

import functools
import hashlib
import os
import re

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from .. import units
from ..measurements import rankable
from .render import Figure as Saved
from .tables import op_order, ordered

DPI = 100
MARKERS = "osD^vP*Xph"
OVERVIEW_MAX = 100  # the overview's colour scale: 1x (green) to 100x the fastest and beyond (red), in every report
DODGE = 1.04  # sideways nudge between strategies on log x axes, as a factor
FAILED_COLOUR = {"unsupported": "0.45", "skipped": "0.45"}  # every other status that did not run: red
SECONDS = FuncFormatter(lambda value, _: units.seconds(value))
PASSES = FuncFormatter(lambda value, _: units.ratio(value))
BYTES = FuncFormatter(lambda value, _: units.size_in_bytes(value))


# One colour per strategy, the same in every figure of every report: the built-in strategies, the JAX rows and the
# hand-written torch calls (gvp_bench.bench.raw).
PALETTE = {
    "forward_dual": "#1f77b4", "func_vmap": "#ff7f0e", "double_backward": "#2ca02c", "jacrev_chunked": "#d62728",
    "linearize": "#9467bd", "reference_loop": "#8c564b", "autograd_functional": "#e377c2", "auto": "#222222",
    "compiled": "#bcbd22", "cuda_graphs": "#17becf",
    "jax.jit": "#393b79", "jax.jacfwd": "#7b4173", "jax.jacrev": "#e7ba52",
    "raw.forward_ad": "#7f7f7f", "raw.func_jvp": "#c7c7c7", "raw.autograd_grad": "#843c39",
}
# Further strategies (third-party ones) take these, by a stable hash of their name: no two figures disagree.
SPARE_COLOURS = ("#6b6ecf", "#b5cf6b", "#637939", "#ce6dbd", "#9c9ede", "#8ca252", "#bd9e39", "#e7969c",
                 "#ad494a", "#a55194", "#5254a3", "#cedb9c")


def colour(strategy):
    """The strategy's colour: fixed for the known ones, else a spare one chosen by its name."""
    if strategy in PALETTE:
        return PALETTE[strategy]
    return SPARE_COLOURS[int(hashlib.sha256(strategy.encode()).hexdigest(), 16) % len(SPARE_COLOURS)]


def _colours(strategies):
    return {name: colour(name) for name in strategies}


def _ran(cells, strategies):
    """The strategies with at least one measured cell among ``cells``, in the given order."""
    measured = set(cells.strategy[cells.status == "ok"])
    return [name for name in strategies if name in measured]


def _slug(*parts):
    """A file name part: letters, digits, '.', '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(part) for part in parts))


def _save(figure, directory, name, caption):
    figure.savefig(os.path.join(directory, name), dpi=DPI)
    return Saved(name, caption)


def _fail_bottom(axis, x, colour, marker="o"):
    """A hollow marker on the bottom edge of ``axis`` at data position ``x``: a cell that did not run."""
    axis.plot([x], [0.02], marker=marker, markersize=8, markerfacecolor="none", markeredgecolor=colour,
              markeredgewidth=1.5, linestyle="none", transform=axis.get_xaxis_transform(), clip_on=False)


def _log_y(axis, value):
    """A log y axis in human units: seconds and forward passes by decades, bytes by powers of two."""
    if value == "median_s":
        axis.set_yscale("log")
        axis.yaxis.set_major_formatter(SECONDS)
    elif value == "forward_ratio":
        axis.set_yscale("log")
        axis.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        axis.yaxis.set_major_formatter(PASSES)
        axis.yaxis.set_minor_formatter(NullFormatter())
    else:
        axis.set_yscale("log", base=2)
        axis.yaxis.set_major_formatter(BYTES)


def _group_label(device, dtype):
    return f"{device}, {dtype}"


# -- overview: time relative to the fastest, every strategy x workload ---------------------------

def _overview_axis(axis, cells, strategies, op):
    strategies = _ran(cells, strategies)
    columns = []
    grid = np.full((len(strategies), cells.groupby(["model", "size", "k"], dropna=False).ngroups), np.nan)
    for j, ((model, size, k), cell) in enumerate(cells.groupby(["model", "size", "k"], dropna=False, sort=False)):
        columns.append(f"{model}/{size}" + (f"\nk={int(k)}" if pd.notna(k) else ""))
        ok = cell[cell.status == "ok"]
        best = (rankable(ok) if len(rankable(ok)) else ok).median_s.min()
        for row in cell.itertuples():
            if row.strategy not in strategies:
                continue
            i = strategies.index(row.strategy)
            if row.status == "ok":
                grid[i, j] = max(row.median_s / best, 1.0)
                axis.text(j, i, units.ratio(row.median_s / best, digits=2), ha="center", va="center", fontsize=7,
                          fontweight="bold" if row.median_s == best else "normal")
            else:
                axis.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.92",
                                                            hatch="//", edgecolor="0.75", linewidth=0))
                axis.text(j, i, row.status, ha="center", va="center", fontsize=7,
                          color=FAILED_COLOUR.get(row.status, "tab:red"))
    image = axis.imshow(grid, cmap="RdYlGn_r", norm=LogNorm(1, OVERVIEW_MAX, clip=True), aspect="auto")
    axis.set_xticks(range(len(columns)), columns, fontsize=8)
    axis.set_yticks(range(len(strategies)), strategies, fontsize=8)
    axis.set_title(op, fontsize=10, loc="left")
    return image


OVERVIEW_COLUMNS = 2  # ops side by side


def overview(cells, strategies, directory):
    """One device and dtype: per op, every strategy that ran x workload (batch ops at their largest k), its time
    as a multiple of the fastest; a strategy that ran nowhere for the op (cuda_graphs on a CPU) has no row."""
    device, dtype = cells.device.iloc[0], cells.dtype.iloc[0]
    strategies = _ran(cells, strategies)
    if not strategies:
        return None
    cells = _largest_k(cells[cells.strategy.isin(strategies)], by=("op", "model", "size"))
    ops = op_order(cells)
    width = max(cells[cells.op == op].groupby(["model", "size", "k"], dropna=False).ngroups for op in ops)
    columns = min(OVERVIEW_COLUMNS, len(ops))
    rows = -(-len(ops) // columns)
    figure = Figure(figsize=(columns * (2.2 + 0.85 * width) + 1, rows * (0.22 * len(strategies) + 0.9) + 0.6),
                    layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, op in zip(axes, ops):
        image = _overview_axis(axis, cells[cells.op == op], strategies, op)
    for axis in axes[len(ops):]:
        axis.set_visible(False)
    bar = figure.colorbar(image, ax=list(axes), label="time / fastest strategy's time", shrink=0.5, extend="max")
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: units.ratio(value)))
    figure.suptitle(f"Time relative to the fastest PyTorch strategy ({_group_label(device, dtype)}); "
                    "hatched: did not run", fontsize=11)
    ks = " Batch ops at their largest k (the k figures show the others)." if cells.k.notna().any() else ""
    return _save(figure, directory, f"overview-{_slug(device, dtype)}.png",
                 f"Every strategy that ran, on every workload ({_group_label(device, dtype)}): time per "
                 "call as a multiple of the fastest PyTorch strategy (1x, in bold; a JAX row under 1x beat them "
                 "all); hatched cells did not run, with their status; a strategy that ran for none of an op's "
                 f"workloads has no row there.{ks}")


# -- per model workload: time and memory per strategy per op --------------------------------------

def _by_time(cells, strategies):
    """The strategies' rows of one op, fastest first, then those that did not run (in the given order)."""
    rows = cells[cells.strategy.isin(strategies)]
    ok = rows[(rows.status == "ok") & rows.median_s.notna()].sort_values("median_s", kind="stable")
    rest = rows.drop(ok.index)
    return [*ok.itertuples(), *sorted(rest.itertuples(), key=lambda row: strategies.index(row.strategy))]


def _bars(axis, cells, strategies, colours, value, ops):
    """Per op a group of bars, one per strategy, sorted by time (in both panels, so a strategy keeps its place)."""
    width = 0.8 / len(strategies)
    for j, op in enumerate(ops):
        for i, row in enumerate(_by_time(cells[cells.op == op], strategies)):
            x = j - 0.4 + width * (i + 0.5)
            strategy = row.strategy
            if row.status == "ok" and pd.notna(getattr(row, value)):
                axis.bar(x, getattr(row, value), width, color=colours[strategy])
            else:
                axis.text(x, 0.03, row.status if row.status != "ok" else "not measured", rotation=90, fontsize=7,
                          ha="center", va="bottom", transform=axis.get_xaxis_transform(),
                          color=FAILED_COLOUR.get(row.status, "tab:red"))
    _log_y(axis, value)
    axis.set_xticks(range(len(ops)), ops, fontsize=9)
    axis.grid(axis="y", which="major", alpha=0.3)


def _largest_k(cells, by=("op",)):
    """Each op at one point: batch ops at their largest k (within each group ``by``)."""
    largest = cells.groupby(list(by), dropna=False).k.transform("max")
    return cells[cells.k.isna() | (cells.k == largest)]


def model_bars(cells, strategies, directory):
    """One model workload: time (with a forward-pass axis) and peak memory per strategy per op, fastest first."""
    model, size, device, dtype = cells[["model", "size", "device", "dtype"]].iloc[0]
    strategies = _ran(cells, strategies)
    if not strategies:
        return None
    colours = _colours(strategies)
    cells = _largest_k(cells)
    ops = op_order(cells)
    ks = ", ".join(f"{op} k={int(k)}" for op, k in cells.dropna(subset=["k"]).groupby("op").k.first().items())
    figure = Figure(figsize=(max(8, 1.6 * len(ops)), 7.5), layout="constrained")
    time_axis, memory_axis = figure.subplots(2, 1)
    _bars(time_axis, cells, strategies, colours, "median_s", ops)
    time_axis.set_ylabel("median time per call")
    forward = cells.forward_median_s.median()
    if pd.notna(forward):
        passes = time_axis.secondary_yaxis("right", functions=(lambda t: t / forward, lambda p: p * forward))
        passes.set_ylabel("forward passes")
    _bars(memory_axis, cells, strategies, colours, "peak_bytes", ops)
    memory_axis.set_ylabel("peak memory")
    figure.legend(handles=[Patch(color=colours[s], label=s) for s in strategies],
                  loc="outside right upper", fontsize=8, title="strategy")
    figure.suptitle(f"{model}/{size} on {_group_label(device, dtype)}" + (f" ({ks})" if ks else ""), fontsize=11)
    return _save(figure, directory, f"model-{_slug(model, size, device, dtype)}.png",
                 f"{model}/{size} ({_group_label(device, dtype)}): median time per call (right axis: in forward "
                 "passes of the model) and peak memory, per strategy and op, each op's bars sorted by time "
                 "(fastest on the left, in both panels); a cell that did not run shows its status instead of a bar.")


# -- growth: with k for batch ops, with output size for full_jacobian ------------------------------

def _lines(axis, points, x, value, colours, by=("strategy",), marker_of=lambda row: "o", tick=lambda v: f"{v:g}"):
    """One line per group ``by`` through the ok points, hollow bottom markers for the others; each
    strategy's points are nudged sideways (by a few percent of the log x axis) so equal values do
    not hide one another. ``tick`` writes the x values under the axis."""
    strategies = list(colours)
    for _, line in points.groupby(list(by), sort=False):
        line = line.sort_values(x, kind="stable")  # equal x: in the order given
        first = line.iloc[0]
        nudge = DODGE ** (strategies.index(first.strategy) - (len(strategies) - 1) / 2)
        ok = line[(line.status == "ok") & line[value].notna()]
        axis.plot(ok[x] * nudge, ok[value], marker=marker_of(first), color=colours[first.strategy], linewidth=1.5)
        for row in line[line.status != "ok"].itertuples():
            _fail_bottom(axis, getattr(row, x) * nudge, colours[row.strategy], marker_of(row))
    _log_y(axis, value)
    axis.set_xscale("log")
    axis.set_xticks(sorted(set(points[x])), [tick(v) for v in sorted(set(points[x]))])
    axis.xaxis.set_minor_locator(NullLocator())
    axis.grid(which="major", alpha=0.3)


def _legend(figure, colours, strategies, extra=()):
    handles = [Line2D([], [], color=colours[s], marker="o", label=s) for s in strategies]
    handles += [*extra, Line2D([], [], color="0.3", marker="o", markerfacecolor="none", linestyle="none",
                               label="did not run (bottom edge)")]
    figure.legend(handles=handles, loc="outside right upper", fontsize=8)


def k_growth(cells, strategies, directory):
    """One model workload: its batch ops' time and memory against k, where they ran at two k or more."""
    model, size, device, dtype = cells[["model", "size", "device", "dtype"]].iloc[0]
    batch = cells[cells.k.notna()].astype({"k": float})
    strategies = _ran(batch, strategies)
    batch = batch[batch.strategy.isin(strategies)]
    colours = _colours(strategies)
    ops = [op for op in op_order(batch) if batch[batch.op == op].k.nunique() > 1]
    if not ops:
        return None
    figure = Figure(figsize=(10, 3.2 * len(ops)), layout="constrained")
    for row_axes, op in zip(figure.subplots(len(ops), 2, squeeze=False), ops):
        for axis, value, label in zip(row_axes, ("median_s", "peak_bytes"), ("time per call", "peak memory")):
            _lines(axis, batch[batch.op == op], "k", value, colours)
            axis.set_xlabel("k (vectors per call)")
            axis.set_title(f"{op}: {label}", fontsize=10, loc="left")
    _legend(figure, colours, strategies)
    figure.suptitle(f"{model}/{size} on {_group_label(device, dtype)}: growth with k", fontsize=11)
    return _save(figure, directory, f"k-{_slug(model, size, device, dtype)}.png",
                 f"{model}/{size} ({_group_label(device, dtype)}): how the batch products' time and peak memory "
                 "grow with the number of vectors k (log-log).")


@functools.lru_cache(maxsize=None)
def output_size(model, size):
    """The zoo model's output size, or None for a model this zoo does not know."""
    from .. import zoo

    try:
        return zoo.build(model, size).output_size
    except ValueError:
        return None


def jacobian_growth(cells, strategies, directory):
    """One device and dtype: full_jacobian's time and memory against the model's output size."""
    device, dtype = cells.device.iloc[0], cells.dtype.iloc[0]
    jacobians = cells[cells.op == "full_jacobian"]
    strategies = _ran(jacobians, strategies)
    jacobians = jacobians[jacobians.strategy.isin(strategies)]
    colours = _colours(strategies)
    jacobians = jacobians.assign(outputs=[output_size(m, s) for m, s in zip(jacobians.model, jacobians["size"])])
    unknown = sorted(set(jacobians[jacobians.outputs.isna()].model))
    jacobians = jacobians.dropna(subset=["outputs"])
    if not len(jacobians):
        return None
    models = ordered(jacobians.model)
    marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(models)}
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    for axis, value, label in zip(figure.subplots(1, 2), ("median_s", "peak_bytes"), ("time", "peak memory")):
        _lines(axis, jacobians, "outputs", value, colours, by=("strategy", "model"),
               marker_of=lambda row: marker[row.model])
        axis.set_xlabel("output size M (elements)")
        axis.set_title(f"full_jacobian: {label}", fontsize=10, loc="left")
    _legend(figure, colours, strategies, [Line2D([], [], color="0.3", marker=marker[m], linestyle="none", label=m)
                                          for m in models])
    figure.suptitle(f"full_jacobian against output size on {_group_label(device, dtype)}", fontsize=11)
    caption = (f"full_jacobian ({_group_label(device, dtype)}): time and peak memory against the output size M; "
               "colour is the strategy, marker shape the model, lines join a model's sizes.")
    if unknown:
        caption += f" Not placed (models this zoo does not know): {', '.join(unknown)}."
    return _save(figure, directory, f"jacobian-{_slug(device, dtype)}.png", caption)


# -- scaling: with the parameter count, over a model's sizes ---------------------------------------

def _size_rank(size):
    """The zoo's order of sizes (a tier with another batch, ``medium-b4``, by its tier), others after."""
    from ..zoo import SIZES

    tier = str(size).partition("-b")[0]
    return SIZES.index(tier) if tier in SIZES else len(SIZES)


def _count(value):
    """``269322`` -> ``'269k'``, ``1863690`` -> ``'1.86M'``."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:g}"


def scaling(cells, strategies, directory):
    """One model on one device and dtype, measured at two sizes or more: each op's cost in forward passes
    and its peak memory against the model's parameter count, a line per strategy (batch ops at their
    largest k). Where the lines of the forward passes close up, a strategy's fixed cost per call has
    stopped mattering; the memory panels show what grows faster than the parameters."""
    model, device, dtype = cells[["model", "device", "dtype"]].iloc[0]
    cells = _largest_k(cells.dropna(subset=["parameters"])).astype({"parameters": float})
    cells = cells.sort_values("size", key=lambda sizes: sizes.map(_size_rank), kind="stable")
    if cells.parameters.nunique() < 2:
        return None
    colours = _colours(strategies)
    ops = op_order(cells)
    parameters = np.array(sorted(set(cells.parameters)))
    itemsize = np.dtype(dtype).itemsize if dtype in ("float32", "float64") else None
    figure = Figure(figsize=(11, 2.9 * len(ops)), layout="constrained")
    for row_axes, op in zip(figure.subplots(len(ops), 2, squeeze=False), ops):
        for axis, value, label in zip(row_axes, ("forward_ratio", "peak_bytes"),
                                      ("time in forward passes", "peak memory")):
            _lines(axis, cells[cells.op == op], "parameters", value, colours, tick=_count)
            axis.set_title(f"{op}: {label}", fontsize=10, loc="left")
        if itemsize:
            row_axes[1].plot(parameters, parameters * itemsize, linestyle="--", color="0.6", linewidth=1)
    for axis in figure.axes[-2:]:
        axis.set_xlabel("parameters (trainable elements)")
    extra = [Line2D([], [], linestyle="--", color="0.6", label="the parameters' own size")] if itemsize else []
    _legend(figure, colours, [s for s in strategies if s in set(cells.strategy)], extra)
    sizes = ", ".join(f"{size} {_count(count)}" for size, count in
                      cells.drop_duplicates("size")[["size", "parameters"]].itertuples(index=False))
    figure.suptitle(f"{model} on {_group_label(device, dtype)}: cost against the parameter count", fontsize=11)
    return _save(figure, directory, f"scaling-{_slug(model, device, dtype)}.png",
                 f"{model} ({_group_label(device, dtype)}) over its sizes ({sizes} parameters): each op's median "
                 "time in forward passes "
                 "of the model (left) and peak memory (right) against the parameter count, log-log, a line per "
                 "strategy; where the lines close up, per-call overhead has stopped mattering and arithmetic "
                 "decides. Hollow markers on the bottom edge: cells that did not run (skipped over the time "
                 "budget, unsupported, ...); dashed grey: the parameters' own size.")
