"""``gvp-bench targets RESULTS...``: the speed targets, checked on measured cells.

Each target is a ratio of medians from one run's cells (``gvp-bench run --suite targets`` measures
them; ``--suite full`` on CUDA the per-model ones), compared with its goal:

- CPU, the MLP 784-1024-1024-10 on 64 inputs (zoo ``mlp/medium``), float32:
  the best ``model_jvp`` in forward passes (its median over the no-grad forward's) at most 2.5;
  16 tangents in one ``batch_jvp`` at most 0.6 of 16 single ``jvp`` (best against best);
  on 4 inputs (``mlp/medium-b4``), ``reference_loop``'s ``model_jvp`` at least 20 times the best's;
  ``auto`` within 15% of the best on each of those workloads.
- CUDA: every zoo model at medium size, the best ``jvp`` within 3 forward passes.

"The best" is the fastest ok PyTorch strategy of the workload, ``auto`` aside (it hands each call
to one of them) and JAX's side-by-side rows too. A target whose cells were not measured is *unmeasured*, never met.
"""

from dataclasses import dataclass

import pandas as pd

from . import units
from .measurements import AUTO, rankable

TARGET_MLP = ("mlp", "medium")
FEW_INPUTS_MLP = ("mlp", "medium-b4")
FLOAT32 = "float32"


@dataclass(frozen=True)
class Outcome:
    target: str    # what is measured
    goal: str      # e.g. "<= 2.5"
    value: float   # the measured ratio; NaN when unmeasured
    met: bool
    cells: str     # the cells it comes from, in words

    @property
    def verdict(self):
        return "unmeasured" if pd.isna(self.value) else "met" if self.met else "MISSED"


def _cells(frame, op, model, size, device, k=None):
    rows = frame[(frame.op == op) & (frame.model == model) & (frame["size"] == size) & (frame.dtype == FLOAT32)
                 & (frame.device.str.split(":").str[0] == device) & (frame.status == "ok")]
    return rows[rows.k == k] if k is not None else rows


def _best(rows):
    """The fastest ok PyTorch strategy's row (auto and JAX rows aside); None when none ran."""
    rows = rankable(rows)
    return rows.loc[rows.median_s.idxmin()] if len(rows) else None


def _outcome(target, goal, limit, value, at_most, cells):
    met = pd.notna(value) and (value <= limit if at_most else value >= limit)
    return Outcome(target, f"{'<=' if at_most else '>='} {goal}", value, bool(met), cells)


def _forward_passes(frame, op, model, size, device, limit, target):
    best = _best(_cells(frame, op, model, size, device))
    value = best.median_s / best.forward_median_s if best is not None else float("nan")
    where = f"{op} {model}/{size} {device}: {best.strategy} {units.seconds(best.median_s)}, forward " \
            f"{units.seconds(best.forward_median_s)}" if best is not None else f"{op} {model}/{size} {device}"
    return _outcome(target, f"{limit} forward passes", limit, value, True, where)


def _batch_against_singles(frame, k=16):
    model, size = TARGET_MLP
    batch, single = _best(_cells(frame, "batch_jvp", model, size, "cpu", k)), _best(_cells(frame, "jvp", model, size, "cpu"))
    if batch is None or single is None:
        return _outcome(f"{k} tangents in one batch_jvp / {k} single jvp", "0.6", 0.6, float("nan"), True,
                        f"batch_jvp k={k} and jvp {model}/{size} cpu")
    return _outcome(f"{k} tangents in one batch_jvp / {k} single jvp", "0.6", 0.6,
                    batch.median_s / (k * single.median_s), True,
                    f"{batch.strategy} {units.seconds(batch.median_s)} vs {k} x {single.strategy} "
                    f"{units.seconds(single.median_s)}")


def _reference_loop_over_best(frame):
    model, size = FEW_INPUTS_MLP
    rows = _cells(frame, "model_jvp", model, size, "cpu")
    best, reference = _best(rows[rows.strategy != "reference_loop"]), rows[rows.strategy == "reference_loop"]
    if best is None or not len(reference):
        return _outcome("reference_loop / best model_jvp", "20x", 20, float("nan"), False, f"model_jvp {model}/{size} cpu")
    return _outcome("reference_loop / best model_jvp", "20x", 20, reference.median_s.iloc[0] / best.median_s, False,
                    f"reference_loop {units.seconds(reference.median_s.iloc[0])} vs {best.strategy} "
                    f"{units.seconds(best.median_s)}")


def _auto_over_best(frame):
    outcomes = []
    for op, (model, size), k in (("model_jvp", TARGET_MLP, None), ("jvp", TARGET_MLP, None),
                                 ("batch_jvp", TARGET_MLP, 16), ("model_jvp", FEW_INPUTS_MLP, None)):
        rows = _cells(frame, op, model, size, "cpu", k)
        best, auto = _best(rows), rows[rows.strategy == AUTO]
        name = f"auto / best, {op}{f' k={k}' if k else ''} {model}/{size}"
        if best is None or not len(auto):
            outcomes.append(_outcome(name, "1.15", 1.15, float("nan"), True, f"{op} {model}/{size} cpu"))
            continue
        auto = auto.iloc[0]
        outcomes.append(_outcome(name, "1.15", 1.15, auto.median_s / best.median_s, True,
                                 f"auto (chose {auto.choice}) {units.seconds(auto.median_s)} vs {best.strategy} "
                                 f"{units.seconds(best.median_s)}"))
    return outcomes


def _cuda_models(frame):
    cuda = frame[(frame.device.str.startswith("cuda")) & (frame["size"] == "medium")]
    models = sorted(set(cuda.model)) or ["every zoo model"]
    return [_forward_passes(frame, "jvp", model, "medium", "cuda", 3, f"CUDA best jvp in forward passes, {model}/medium")
            for model in models]


def check(frame):
    """The outcome of every target on the cells of ``frame`` (latest cells, as load_cells gives)."""
    model, size = TARGET_MLP
    return [_forward_passes(frame, "model_jvp", model, size, "cpu", 2.5, "best model_jvp in forward passes"),
            _batch_against_singles(frame), _reference_loop_over_best(frame), *_auto_over_best(frame),
            *_cuda_models(frame)]


def render(outcomes):
    table = pd.DataFrame([dict(target=o.target, measured=units.ratio(o.value), goal=o.goal, verdict=o.verdict,
                               cells=o.cells) for o in outcomes])
    counts = pd.Series([o.verdict for o in outcomes]).value_counts()
    return table.to_string(index=False) + "\n\n" + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) \
        + f" of {len(outcomes)} targets."
