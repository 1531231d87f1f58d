"""The report's tables, as pandas DataFrames of display strings, from measured cells.

Every strategy measured anywhere appears in every table that has a column or row per strategy;
a cell that did not run shows its status (unsupported, error, oom, timeout, skipped) where a number
would be, and :func:`failures` lists each with its reason.
"""

import pandas as pd

from .. import units
from ..measurements import AUTO, compiling, is_jax, is_raw, noise, rankable
from ..results import STATUSES

OP_ORDER = ("jvp", "vjp", "model_jvp", "model_vjp", "batch_jvp", "batch_vjp", "full_jacobian")
WORKLOAD = ["op", "model", "size", "k", "device", "dtype"]


def ordered(values, order=()):
    """The distinct ``values``, those in ``order`` first in that order, then the others sorted."""
    present = set(values)
    return [v for v in order if v in present] + sorted(present - set(order), key=str)


def strategy_order(cells):
    """Strategies by name, then ``auto``, then the hand-written torch calls, then the JAX side-by-side rows."""
    jax, hand_written = set(cells.strategy[is_jax(cells)]), set(cells.strategy[is_raw(cells)])
    names = [name for name in ordered(cells.strategy) if name not in jax | hand_written]
    return ([name for name in names if name != AUTO] + [name for name in names if name == AUTO] + sorted(hand_written)
            + sorted(jax))


def op_order(cells):
    return ordered(cells.op, OP_ORDER)


def _k_text(k):
    return "" if pd.isna(k) else str(int(k))


def _time_text(row):
    if row.status != "ok":
        return row.status.upper()
    passes = f" ({row.forward_ratio:.3g} fwd)" if pd.notna(row.forward_ratio) else ""
    return units.seconds(row.median_s) + passes


def _memory_text(row):
    return units.size_in_bytes(row.peak_bytes) if row.status == "ok" else row.status.upper()


def _pivot(cells, text):
    """One row per product (op, and k for batch ops), one column per strategy, ``text(row)`` in each."""
    ops = op_order(cells)
    rows = cells.assign(value=[text(row) for row in cells.itertuples()],
                        product=[op + (f" k={int(k)}" if pd.notna(k) else "") for op, k in zip(cells.op, cells.k)],
                        order=[(ops.index(op), 0 if pd.isna(k) else int(k)) for op, k in zip(cells.op, cells.k)])
    products = rows.sort_values("order")["product"].unique()
    table = rows.pivot_table(index="product", columns="strategy", values="value", aggfunc="first")
    return table.reindex(index=products, columns=strategy_order(cells)).fillna("not measured")


def times(cells):
    """Median time per call (and in forward passes) per op and k x strategy, for one model workload."""
    return _pivot(cells, _time_text)


def memory(cells):
    """Peak memory per op and k x strategy, for one model workload."""
    return _pivot(cells, _memory_text)


def status_counts(cells):
    """How many cells each strategy measured, by status: every strategy, whatever its results."""
    table = pd.crosstab(cells.strategy, cells.status).reindex(strategy_order(cells))
    table = table.reindex(columns=[s for s in STATUSES if s in table])
    return table.assign(total=table.sum(axis=1))


def _winner(group):
    ok = rankable(group[group.status == "ok"]).sort_values("median_s")
    failed = sorted(group.strategy[group.status != "ok"])
    row = dict(winner="none ran", time="", memory="", runner_up="", margin="", noise="", eager_winner="", auto="",
               auto_choice="", choice_margin="", jax="", not_ok=", ".join(failed))
    if len(ok):
        best = ok.iloc[0]
        row.update(winner=best.strategy, time=units.seconds(best.median_s), memory=units.size_in_bytes(best.peak_bytes))
    if len(ok) > 1:
        second = ok.iloc[1]
        row.update(runner_up=second.strategy, margin=units.ratio(second.median_s / best.median_s),
                   noise="" if noise(best, second, group) is None else "within noise")
    eager = ok[~compiling(ok)]
    if len(eager) and eager.strategy.iloc[0] != row["winner"]:
        row["eager_winner"] = f"{eager.strategy.iloc[0]} ({units.ratio(eager.median_s.iloc[0] / best.median_s)})"
    auto = _auto_against(group, ok)
    if auto is not None:
        choice, auto_ratio, choice_ratio = auto
        row.update(auto=units.ratio(auto_ratio), auto_choice=choice, choice_margin=units.ratio(choice_ratio))
    jax = group[is_jax(group) & (group.status == "ok")].sort_values("median_s")
    if len(ok) and len(jax):
        row["jax"] = f"{units.ratio(jax.median_s.iloc[0] / best.median_s)} ({jax.strategy.iloc[0]})"
    return row


def _auto_against(group, ok):
    """(what auto chose, auto's time over the best's, the chosen strategy's own time over the best's:
    NaN when it has no cell of its own) for one workload, where the best is the fastest strategy
    auto chooses from by default: not one that compiles on its first call (seconds; auto considers
    those only when configured to), unless auto chose one; None where auto or no other ran.
    ``ok`` is the workload's ok rankable rows, fastest first."""
    auto = group[(group.strategy == AUTO) & (group.status == "ok")]
    if not len(auto):
        return None
    auto, compiles = auto.iloc[0], compiling(ok)
    if not (compiles & (ok.strategy == auto.choice)).any():
        ok = ok[~compiles]
    if not len(ok):
        return None
    best = ok.median_s.iloc[0]
    chosen = ok.median_s[ok.strategy == auto.choice]
    return ("" if pd.isna(auto.choice) else auto.choice, auto.median_s / best,
            chosen.iloc[0] / best if len(chosen) else float("nan"))


def auto_scores(cells, choice_within=1.10, auto_within=1.15):
    """Over the workloads where auto and another strategy ran: how many times auto's choice (the
    strategy it handed the calls to, as measured in its own cells) was within ``choice_within`` of
    the best it could choose (see :func:`_auto_against`), and auto's own time within
    ``auto_within``; None where auto did not run."""
    scored = [_auto_against(group, rankable(group[group.status == "ok"]).sort_values("median_s"))
              for _, group in cells.groupby(WORKLOAD, dropna=False, sort=False)]
    scored = [ratios for ratios in scored if ratios is not None]
    if not scored:
        return None
    return (len(scored), sum(choice_ratio <= choice_within for _, _, choice_ratio in scored),
            sum(auto_ratio <= auto_within for _, auto_ratio, _ in scored))


def winners(cells):
    """The fastest strategy per workload, its margin over the runner-up, and whether the two are
    within noise; where the winner compiles on its first call, the fastest that does not (with its
    time over the winner's); ``auto`` as a ratio to the best it could choose (see :func:`_auto_against`);
    the fastest JAX row as a ratio to the winner; the strategies that did not run."""
    rows = []
    for key, group in cells.groupby(WORKLOAD, dropna=False, sort=False):
        rows.append(dict(zip(WORKLOAD, key), **_winner(group)))
    table = pd.DataFrame(rows)
    if not is_jax(cells).any():
        table = table.drop(columns="jax")
    table["k"] = table.k.map(_k_text)
    ops = op_order(cells)
    table = table.sort_values(["op", "model", "size", "device", "dtype", "k"],
                              key=lambda c: c.map(ops.index) if c.name == "op" else c, kind="stable")
    return table.rename(columns={"runner_up": "runner-up", "margin": "runner-up / winner",
                                 "eager_winner": "fastest not compiling", "auto": "auto / best",
                                 "auto_choice": "auto chose", "choice_margin": "choice / best",
                                 "jax": "JAX / winner", "not_ok": "did not run"}
                        ).reset_index(drop=True)


def failures(cells):
    """Every cell that did not run, with its status and the first line of its reason."""
    rows = cells[cells.status != "ok"]
    table = rows[["strategy", *WORKLOAD, "status", "error"]].assign(
        k=rows.k.map(_k_text), error=rows.error.fillna("").astype(str).str.split("\n").str[0].str.slice(0, 160))
    return table.sort_values(["strategy", "op", "model"], kind="stable").reset_index(drop=True)


def environment(frame):
    """The machine fingerprint of every run read: one column per run, one row per field."""
    machine = [c for c in frame.columns if c.startswith("machine_")]
    runs = frame.drop_duplicates("run_id")
    table = runs.set_index("run_id")[["suite", "source", *machine]]
    table = table.rename(columns=lambda c: c.removeprefix("machine_")).T
    table.columns = [f"run {run_id}" for run_id in table.columns]
    return table.fillna("").astype(str)


def _jax_versus_best(group):
    """The rows of one workload: each JAX row that ran against the fastest PyTorch strategy."""
    best = rankable(group[group.status == "ok"]).sort_values("median_s").head(1)
    rows = []
    for jax in group[is_jax(group) & (group.status == "ok")].sort_values("median_s").itertuples():
        row = dict(jax=jax.strategy, jax_time=_time_text(jax), jax_first=units.seconds(jax.first_call_s),
                   jax_forward=units.seconds(jax.forward_median_s), best="none ran", best_time="", best_forward="",
                   ratio="")
        if len(best):
            torch_best = best.iloc[0]
            row.update(best=torch_best.strategy, best_time=_time_text(torch_best),
                       best_forward=units.seconds(torch_best.forward_median_s),
                       ratio=units.ratio(torch_best.median_s / jax.median_s))
        rows.append(row)
    return rows


def jax_side_by_side(cells):
    """Per workload with JAX rows: each JAX row (its time, its first call with the compilation, the
    JAX forward pass) against the fastest PyTorch strategy (its time and the torch forward pass),
    and how many times the JAX time the PyTorch one is. Empty without JAX rows."""
    jax_workloads = cells[is_jax(cells)][WORKLOAD].drop_duplicates()
    rows = []
    for key, group in cells.merge(jax_workloads).groupby(WORKLOAD, dropna=False, sort=False):
        rows += [dict(zip(WORKLOAD, key), **row) for row in _jax_versus_best(group)]
    table = pd.DataFrame(rows, columns=[*WORKLOAD, "best", "best_time", "best_forward", "jax", "jax_time",
                                        "jax_first", "jax_forward", "ratio"])
    table["k"] = table.k.map(_k_text)
    ops = op_order(cells)
    table = table.sort_values(["model", "size", "device", "dtype", "op", "k"],
                              key=lambda c: c.map(ops.index) if c.name == "op" else c, kind="stable")
    return table.rename(columns={
        "best": "fastest PyTorch strategy", "best_time": "its time (torch forwards)", "best_forward": "torch forward",
        "jax": "JAX", "jax_time": "JAX time (JAX forwards)", "jax_first": "JAX first call (compiles)",
        "jax_forward": "JAX forward", "ratio": "PyTorch / JAX"}).reset_index(drop=True)
