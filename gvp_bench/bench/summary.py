"""The summary printed at the end of ``gvp-bench run``: each cell's cost in forward passes, by strategy,
the status counts, and why each cell that is not ok is not."""

import pandas as pd

from ..results import STATUSES

MAX_PLACES = 4  # workloads named per reason before "..."


def _mark(row):
    return f"{row.forward_ratio:.1f}" if row.status == "ok" else row.status


def table(frame):
    """Rows (device and dtype when several, model, size, op, k), a column per strategy: the forward
    ratio (median time / forward median) of each ok cell, or its status."""
    index = [name for name in ("device", "dtype") if frame[name].nunique() > 1] + ["model", "size", "op", "k"]
    marks = frame.assign(mark=frame.apply(_mark, axis=1),
                         k=frame.k.map(lambda k: "" if pd.isna(k) else str(int(k))))
    grid = marks.pivot_table(index=index, columns="strategy", values="mark", aggfunc="first", sort=False)
    grid.columns.name = None
    return grid.fillna("")


def text(frame, path):
    """The whole summary of the results in ``frame`` (loaded from ``path``)."""
    lines = ["cost in forward passes (median time / median time of the plain forward pass; lower is faster)",
             table(frame).to_string(), ""]
    counts = frame.status.value_counts()
    lines.append(f"{len(frame)} cells: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s, 0)))
    failed = frame[frame.status != "ok"]
    for (status, strategy, reason), group in failed.groupby(["status", "strategy", "error"], sort=False):
        places = [f"{r.op} {r.model}/{r.size}" for r in group.itertuples()]
        where = ", ".join(places[:MAX_PLACES]) + (", ..." if len(places) > MAX_PLACES else "")
        lines.append(f"  {status}: {strategy} on {where}: {reason}")
    lines.append(f"results: {path} (load with gvp_bench.results.load)")
    return "\n".join(lines)
