"""``gvp-bench recommend``: the strategies for one workload, fastest first, from measured results.

The workload is an op and a model, and optionally a size, device, dtype and k. It never
extrapolates across a device or a size: results of another device, or of another size than the
one asked, answer nothing (a ValueError says what was measured). The size defaults to the
largest measured for the op, model and device. Within that device and size, the nearest k (by
ratio) and the same dtype are preferred, and a difference is said; among equals, the workload
where most strategies ran, then the larger k (where the choice matters more), then the latest.

The strategies that ran are ranked by median time; ``auto`` is shown against the best but not
ranked (it hands each call to one of the others), and so are the hand-written torch calls (what
the technique costs without gvp-bench's wrapper) and the JAX side-by-side rows (what JAX would
take; not a PyTorch strategy to use); those that did not run are listed with why. The
recommendation leads with the fastest strategy that does not compile, unless compiling is
allowed: a faster compiling one (``costly_first_call``) is mentioned with what its first call
cost and after how many calls it pays for it. When the top two's samples overlap, or they differ
by no more than the machine's drift during the run (the slowest over the fastest of the same
forward pass, timed after each of the workload's cells: cells are timed one after another, and on
a shared machine the same work can take far longer in one cell than in another, docs/reports.md),
they are within noise of each other, and the recommendation says so.
"""

import math
from dataclasses import dataclass

import pandas as pd

from . import units
from .measurements import AUTO, compiling, drift, forward_times, is_jax, is_raw, noise, rankable, samples, workload
from .zoo import SIZES

FIELDS = ("size", "device", "dtype", "k")  # what is reported of the workload used
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")


@dataclass
class Recommendation:
    request: dict          # op, model and the FIELDS as asked (None: any)
    cells: pd.DataFrame    # the cells of the workload used: ran (fastest first), auto, did not run
    allow_compile: bool = False  # whether a strategy that compiles on its first call may lead

    @property
    def used(self):
        """The workload the ranking comes from, as a dict of FIELDS."""
        first = self.cells.iloc[0]
        return {name: (None if pd.isna(first[name]) else first[name]) for name in FIELDS}

    @property
    def ranked(self):
        return rankable(self.cells[self.cells.status == "ok"])

    @property
    def eligible(self):
        """The ranked strategies the recommendation may lead with: those that do not compile, unless
        compiling is allowed (or every strategy that ran compiles)."""
        ranked = self.ranked
        eager = ranked[~compiling(ranked)]
        return ranked if self.allow_compile or not len(eager) else eager

    @property
    def jax(self):
        """The JAX side-by-side rows that ran, fastest first: shown, never recommended."""
        return self.cells[(self.cells.status == "ok") & is_jax(self.cells)]

    @property
    def noise(self):
        """Why the top two cannot be told apart (gvp_bench.measurements.noise), None where they can or only one ran."""
        ranked = self.eligible
        return noise(ranked.iloc[0], ranked.iloc[1], self.cells) if len(ranked) > 1 else None

    @property
    def within_noise(self):
        """Whether the top two cannot be told apart."""
        return self.noise is not None


def _k_distance(asked, measured):
    if asked is None or pd.isna(measured):
        return 0
    return abs(math.log2(asked) - math.log2(measured))


def _preference(group, request):
    """How far a measured workload of the right device and size is from the request, then how useful it
    is; smaller is better."""
    first = group.iloc[0]
    return (_k_distance(request["k"], first.k),
            (request["dtype"] is not None and first.dtype != request["dtype"]),
            -int((group.status == "ok").sum()),
            -(0 if pd.isna(first.k) else first.k),
            -pd.Timestamp(group.measured_at.max()).timestamp())


def _size_order(size):
    """Sizes from smallest to largest: by tier; within a tier, the variants with another input batch
    (medium-b4) before the tier itself."""
    tier, _, batch = size.partition("-b")
    return (SIZES.index(tier) if tier in SIZES else -1, not batch, int(batch) if batch.isdigit() else 0)


def _check(request):
    """ValueError naming the argument and the valid values for a dtype, device or size that is none."""
    for name, valid in (("dtype", DTYPES), ("device", DEVICES)):
        if request[name] is not None and request[name] not in valid:
            raise ValueError(f"--{name}: unknown {name} {request[name]!r}; valid: {', '.join(valid)}")
    size = request["size"]
    if size is not None:
        tier, marker, batch = size.partition("-b")
        if tier not in SIZES or (marker and not batch.isdigit()):
            raise ValueError(f"--size: unknown size {size!r}; valid: {', '.join(SIZES)} "
                             "(or a size with another input batch, such as medium-b4)")
    if request["k"] is not None and request["k"] < 1:
        raise ValueError(f"--k: the vectors per call must be a positive int; got {request['k']}")


def recommend(cells, op, model, size=None, device=None, dtype=None, k=None, allow_compile=False):
    """Rank the strategies for ``op`` on ``model`` from ``cells`` (:func:`gvp_bench.measurements.load_cells`).

    ValueError when the arguments name no valid size, dtype or device, or when nothing was measured for
    the op and model on that device at that size (default: the largest measured there)."""
    request = dict(op=op, model=model, size=size, device=device, dtype=dtype, k=k)
    _check(request)
    candidates = cells[(cells.op == op) & (cells.model == model)]
    if not len(candidates):
        ops = sorted(set(cells[cells.model == model].op))
        models = sorted(set(cells[cells.op == op].model))
        raise ValueError(f"no measurement of {op} on {model}; measured for {model}: {', '.join(ops) or 'nothing'}; "
                         f"models measured for {op}: {', '.join(models) or 'none'}")
    if device is not None:
        measured = sorted(set(candidates.device))
        candidates = candidates[candidates.device == device]
        if not len(candidates):
            raise ValueError(f"no measurement of {op} on {model} on {device}: measured on {', '.join(measured)} "
                             f"only, which says nothing about {device} (pass --device {measured[0]} to see it)")
    sizes = sorted(set(candidates["size"]), key=_size_order)
    if size is None:
        size = sizes[-1]
    elif size not in sizes:
        raise ValueError(f"no measurement of {op} on {model} at size {size}"
                         + (f" on {device}" if device else "") + f": measured at {', '.join(sizes)} only, which "
                         f"says nothing about {size} (pass --size {sizes[-1]} to see the largest)")
    candidates = candidates[candidates["size"] == size]
    groups = [group for _, group in candidates.groupby(["machine", *FIELDS], dropna=False)]
    chosen = min(groups, key=lambda group: _preference(group, request))
    ok = chosen[chosen.status == "ok"]
    order = [rankable(ok).sort_values("median_s"), ok[ok.strategy == AUTO], ok[is_raw(ok)].sort_values("median_s"),
             ok[is_jax(ok)].sort_values("median_s"),
             chosen[chosen.status != "ok"].sort_values("strategy")]
    return Recommendation(request, pd.concat(order).reset_index(drop=True), allow_compile)


def _differences(recommendation):
    asked, used = recommendation.request, recommendation.used
    return [f"{name} {used[name]} instead of {asked[name]}" for name in FIELDS
            if asked[name] is not None and used[name] != asked[name]]


def _table(recommendation):
    best = recommendation.ranked.median_s.min()
    rows = []
    unranked = set(recommendation.cells.index) - set(recommendation.ranked.index)
    for rank, (index, row) in enumerate(recommendation.cells.iterrows(), start=1):
        shown = dict.fromkeys(["median time", "IQR", "forward passes", "peak memory", "vs best", "why"], "")
        shown.update({"rank": "-" if index in unranked else rank,
                      "strategy": row.strategy, "status": row.status})
        if row.status != "ok":
            shown["why"] = str(row.error).splitlines()[0][:100] if pd.notna(row.error) else ""
        else:
            q1, q3 = (units.seconds(value) for value in pd.Series(samples(row)).quantile([0.25, 0.75]))
            shown.update({"median time": units.seconds(row.median_s), "IQR": f"{q1} - {q3}",
                          "forward passes": "" if pd.isna(row.forward_ratio) else f"{row.forward_ratio:.3g}",
                          "peak memory": units.size_in_bytes(row.peak_bytes),
                          "vs best": units.ratio(row.median_s / best)})
        rows.append(shown)
    return pd.DataFrame(rows)[["rank", "strategy", "status", "median time", "IQR", "forward passes", "peak memory",
                               "vs best", "why"]]


def render(recommendation):
    """What ``gvp-bench recommend`` prints."""
    cells, asked = recommendation.cells, recommendation.request
    first = cells.iloc[0]
    asked_text = " ".join(f"{name}={asked[name]}" for name in FIELDS if asked[name] is not None)
    lines = [f"{asked['op']} on {asked['model']}" + (f" ({asked_text})" if asked_text else "") + ":"]
    differences = _differences(recommendation)
    measured = (f"{workload(first, with_strategy=False)}, measured on {first.machine}, run {first.run_id} of "
                f"{str(first.measured_at)[:10]}")
    lines.append(f"No exact measurement; using the nearest measured workload, {measured}: {'; '.join(differences)}."
                 if differences else f"Measured workload: {measured}.")
    lines += ["", _table(recommendation).to_markdown(index=False, tablefmt="simple"), ""]
    ranked = recommendation.eligible
    if not len(ranked):
        lines.append("No strategy ran this workload: nothing to recommend.")
        return "\n".join(lines)
    best = ranked.iloc[0]
    passes = f", {best.forward_ratio:.3g} forward passes" if pd.notna(best.forward_ratio) else ""
    lines.append(f"Use {best.strategy}: expect {units.seconds(best.median_s)} per call{passes}, and "
                 f"{units.size_in_bytes(best.peak_bytes) or 'unmeasured'} peak memory.")
    if recommendation.within_noise:
        second = ranked.iloc[1]
        memory = ""
        if pd.notna(second.peak_bytes) and pd.notna(best.peak_bytes) and best.peak_bytes and second.peak_bytes:
            ratio = second.peak_bytes / best.peak_bytes
            memory = f"; {second.strategy} needs " + (
                "about the same memory" if 0.95 < ratio < 1.05 else
                f"{units.ratio(1 / ratio)} less memory" if ratio < 1 else f"{units.ratio(ratio)} the memory")
        why = ("their samples overlap or are too few to tell them apart" if recommendation.noise == "samples"
               else f"no more than the machine's drift during the run, {_drift_text(cells)}")
        lines.append(f"{best.strategy} and {second.strategy} are within noise of each other "
                     f"({units.ratio(second.median_s / best.median_s)}; {why}): either may win another run{memory}.")
    elif len(ranked) > 1:
        second = ranked.iloc[1]
        beyond = f" and the machine's drift during the run ({_drift_text(cells)})" if drift(cells) > 1 else ""
        lines.append(f"The runner-up, {second.strategy}, is {units.ratio(second.median_s / best.median_s)} slower, "
                     f"beyond noise{beyond}.")
    lines += _compiling_note(recommendation.ranked, best)
    for row in recommendation.jax.itertuples():
        lines.append(f"JAX side by side (not a PyTorch strategy): {row.strategy} takes {units.seconds(row.median_s)}, "
                     f"{units.ratio(row.median_s / best.median_s)} the time of {best.strategy}.")
    return "\n".join(lines)


def _drift_text(cells):
    forward = forward_times(cells)
    return (f"{units.ratio(drift(cells))}: the same forward pass took {units.seconds(forward.min())} to "
            f"{units.seconds(forward.max())} after this workload's cells")


def _pays_off(compiled, other):
    """What compiling cost in ``compiled``'s first call, and after how many calls it pays for it against
    ``other``, which does not compile: (text, calls), calls None where it does not pay off."""
    first = compiled.get("first_call_s")
    if pd.isna(first):
        return "its first call per workload compiles (seconds; this run did not time it)", None
    other_first = other.get("first_call_s")
    extra = first - (0.0 if pd.isna(other_first) else other_first)  # what compiling added to the first call
    gain = other.median_s - compiled.median_s
    calls = max(math.ceil(extra / gain), 1) if gain > 0 else None
    text = (f"its first call in that run took {units.seconds(first)} (where it compiles, unless an earlier cell had "
            "compiled the same graph)")
    return text, calls


def _compiling_note(ranked, best):
    """The compiling strategy faster than ``best`` (when it leads: against the fastest that does not compile):
    its first call's cost and after how many calls in one process it pays for it."""
    compiles = compiling(ranked)
    eager, compiled = ranked[~compiles], ranked[compiles]
    if not len(eager) or not len(compiled):
        return []
    if compiling(ranked.loc[[best.name]]).iloc[0]:
        other = eager.iloc[0]
        cost, calls = _pays_off(best, other)
        pays = f", it pays for it after about {calls:,} calls in one process" if calls else ""
        return [f"{best.strategy}: {cost}; against {other.strategy}, the fastest that does not compile "
                f"({units.seconds(other.median_s)} per call){pays}."]
    fastest = compiled.iloc[0]
    if fastest.median_s >= best.median_s:
        return []
    cost, calls = _pays_off(fastest, best)
    pays = f"; it pays for that after about {calls:,} calls in one process" if calls else ""
    return [f"Compiling is faster: {fastest.strategy} takes {units.seconds(fastest.median_s)} per call "
            f"({units.ratio(fastest.median_s / best.median_s)} the time of {best.strategy}), but {cost}{pays}. "
            "Pass --allow-compile to lead with it."]
