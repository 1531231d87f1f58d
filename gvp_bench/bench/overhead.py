"""What gvp-bench's wrapper costs: its model_jvp and model_vjp against the torch calls written by hand.

``gvp-bench overhead`` builds zoo models (eval mode) and times, in one process on one thread,
each strategy's ``model_jvp`` against a hand-written forward-AD call (``functional_call`` with
dual params) and each strategy's ``model_vjp`` against ``torch.autograd.grad(model(x), params,
u)`` (:mod:`gvp_bench.bench.raw`). Timing is thread CPU time (``time.thread_time``), so time
the thread spends preempted by other processes does not count; the contenders run in
interleaved rounds (each round times every contender for the same number of calls, in a
rotated order), and the figures are the medians over rounds of each round's ratio to the
hand-written call and to the no-grad forward pass (forward passes), which cancels what drifts
between rounds (frequency, cache pressure).

With ``--checks``, the hand-written vᵀJ also runs with the checks every product keeps, gvp-bench's
own code, added to it one at a time, without any of gvp-bench's layers between (:func:`checked_calls`):
what those checks cost by themselves, against what the whole wrapper costs.
"""

import statistics
import time

import torch

from .. import zoo
from ..blind_spots import product_scope
from ..model_form import model_form
from ..registry import get_strategy
from . import raw

DEFAULT_MODELS = ("mlp/tiny", "cnn/small", "resnet/small")
JVP_STRATEGIES = ("forward_dual", "func_vmap", "auto")
VJP_STRATEGIES = ("double_backward", "forward_dual", "func_vmap", "auto")
_ROUND_SECONDS = 0.02  # thread CPU time per contender per round
FORWARD = "forward"  # the no-grad forward pass, timed with the others: the unit of forward passes


def _thread_seconds(call, calls):
    start = time.thread_time()
    for _ in range(calls):
        call()
    return time.thread_time() - start


def _calls_per_round(call):
    """Calls of ``call`` that take about _ROUND_SECONDS of thread CPU time (after a warm-up call)."""
    call()
    calls = 1
    while _thread_seconds(call, calls) < _ROUND_SECONDS / 4:
        calls *= 2
    return max(1, round(calls * _ROUND_SECONDS / max(_thread_seconds(call, calls), 1e-6)))


def interleaved_times(contenders, rounds):
    """{name: [seconds per call in each round]} of ``contenders`` (names to zero-argument calls), timed in
    ``rounds`` interleaved rounds of the same number of calls each."""
    calls = _calls_per_round(next(iter(contenders.values())))
    for call in contenders.values():
        call()
    names = list(contenders)
    per_call = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            per_call[name].append(_thread_seconds(contenders[name], calls) / calls)
    return per_call


def median_ratio(times, baseline):
    """The median over rounds of each round's ratio of ``times`` to ``baseline``."""
    return statistics.median(t / b for t, b in zip(times, baseline))


def _contenders(op, entry, vector, strategies):
    hand_written = raw.model_jvp(entry.model) if op == "model_jvp" else raw.model_vjp(entry.model)
    calls = {raw.NAMES[op]: lambda: hand_written(entry.x, vector)}
    for name in strategies:
        strategy = get_strategy(name)
        calls[name] = lambda strategy=strategy: getattr(strategy, op)(entry.model, entry.x, vector)
    calls[FORWARD] = torch.no_grad()(lambda: entry.model(entry.x))
    return calls


def checked_calls(model, x, u):
    """``torch.autograd.grad(model(x), params, u)`` with the checks every model_vjp keeps, by name: the
    model's form looked up and checked against the module (gvp_bench.model_form), which gives the params;
    the product's scope around the call (gvp_bench.blind_spots.product_scope: nesting, the params' version
    counters, the process state read for a failure to put back); and both."""
    params = model_form(model).params

    def form():
        return torch.autograd.grad(model(x), model_form(model).params, u)

    def scope():
        with product_scope("hand-written", "vjp", params):
            return torch.autograd.grad(model(x), params, u)

    def form_and_scope():
        checked = model_form(model).params
        with product_scope("hand-written", "vjp", checked):
            return torch.autograd.grad(model(x), checked, u)

    return {"checks: form": form, "checks: scope": scope, "checks: form + scope": form_and_scope}


def measure(models=DEFAULT_MODELS, rounds=21, jvp_strategies=JVP_STRATEGIES, vjp_strategies=VJP_STRATEGIES,
            checks=False):
    """Rows (model, op, strategy, seconds per call, ratio to the hand-written call, forward passes), one thread;
    with ``checks``, model_vjp's rows also have the hand-written call with the checks (:func:`checked_calls`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for spec in models:
            name, _, size = spec.partition("/")
            entry = zoo.build(name, size or "tiny")
            generator = torch.Generator().manual_seed(0)
            with torch.no_grad():
                output = entry.model(entry.x)
            tangents = [torch.randn(p.shape, generator=generator) for p in entry.params]
            cotangent = torch.randn(output.shape, generator=generator)
            for op, vector, strategies in (("model_jvp", tangents, jvp_strategies),
                                           ("model_vjp", cotangent, vjp_strategies)):
                contenders = _contenders(op, entry, vector, strategies)
                if checks and op == "model_vjp":
                    contenders.update(checked_calls(entry.model, entry.x, vector))
                times = interleaved_times(contenders, rounds)
                rows += [dict(model=spec, op=op, strategy=contender, seconds=statistics.median(per_round),
                              ratio=median_ratio(per_round, times[raw.NAMES[op]]),
                              forward_passes=median_ratio(per_round, times[FORWARD]))
                         for contender, per_round in times.items() if contender != FORWARD]
    finally:
        torch.set_num_threads(threads)
    return rows


def table(rows):
    """The rows as a markdown table: per model and op, each contender's time, its ratio to the hand-written
    call and to the no-grad forward pass."""
    lines = ["| model | op | strategy | µs per call | / hand-written | forward passes |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['op']} | {row['strategy']} | {row['seconds'] * 1e6:.1f} "
                     f"| {row['ratio']:.3f} | {row['forward_passes']:.2f} |")
    return "\n".join(lines)


def add_parser(commands, names, help_text):
    parser = commands.add_parser("overhead", help=help_text,
                                 description="Time each strategy's model_jvp and model_vjp against the torch calls "
                                             "written by hand and the no-grad forward pass, on one thread, by thread "
                                             "CPU time in interleaved rounds; print the ratios.")
    parser.add_argument("--models", type=names, default=list(DEFAULT_MODELS),
                        help="comma-separated zoo model/size (default: mlp/tiny,cnn/small,resnet/small)")
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds (default 21)")
    parser.add_argument("--jvp-strategies", type=names, default=list(JVP_STRATEGIES))
    parser.add_argument("--vjp-strategies", type=names, default=list(VJP_STRATEGIES))
    parser.add_argument("--checks", action="store_true",
                        help="also time the hand-written vᵀJ with the checks every product keeps added to it: the "
                             "model's form, the product's scope, both")
    parser.set_defaults(run=lambda args: print(table(measure(args.models, args.rounds, args.jvp_strategies,
                                                             args.vjp_strategies, args.checks))) or 0)
