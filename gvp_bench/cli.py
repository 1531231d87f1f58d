"""The ``gvp-bench`` command line."""

import argparse
import os
import sys
import warnings

import torch

from .bench import command as bench_command
from .conformance import CASES, case_by_name, cells, pivot, support_matrix
from .conformance import own as own_conformance
from .conformance.matrix import DTYPES, available_devices
from .registry import get_strategy
from .second_order import hvp_strategies
from .workload import SIZE as WORKLOAD_SIZE
from .workload_specs import WorkloadSpecError, installed as installed_workloads, load as load_workload


def _names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def _conformance(args):
    from tqdm import tqdm

    for name in args.strategies or []:
        if name not in hvp_strategies():
            get_strategy(name)  # an unknown name fails here with the list of valid ones
    torch.set_num_threads(1)  # tiny models: more intra-op threads only add synchronisation
    devices = args.devices or available_devices()
    if args.workload:
        if args.cases:
            raise ValueError("--cases picks built-in cases: with --workload only the workloads given are checked")
        workloads = [load_workload(spec) for spec in args.workload]
        selected = list(own_conformance.cells(workloads, args.strategies, args.dtypes, args.devices))
        devices = sorted({cell[-1] for cell in selected})
    else:
        cases = [case_by_name(name) for name in args.cases] if args.cases else CASES
        selected = list(cells(args.strategies, cases, args.dtypes or list(DTYPES), devices))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tqdm(total=len(selected), desc="conformance", unit="cell", file=sys.stderr,
                  disable=args.quiet) as progress:
            frame = support_matrix(selected, progress)
    if args.csv:
        frame.to_csv(args.csv, index=False)
    table = pivot(frame)
    print(table.to_markdown() if args.format == "markdown" else table.to_string())
    counts = frame.status.value_counts()
    print("\n" + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("pass", "fail", "unsupported") + (("refused",) if counts.get("refused") else ()))
          + f" of {len(frame)} cells on {', '.join(devices)}")
    for status in ("unsupported", "fail"):
        rows = frame[frame.status == status].assign(reason=lambda f: f.detail.str.split("\n").str[0])
        if len(rows):
            print(f"\n{status}:")
            for (strategy, case, reason), group in rows.groupby(["strategy", "case", "reason"], sort=False):
                where = ", ".join(sorted(set(group.function))) + " in " + ", ".join(sorted(set(group.dtype)))
                print(f"  {strategy} / {case} ({where}): {reason}")
    return 1 if counts.get("fail", 0) else 0


def _zoo(args):
    import pandas as pd

    from . import zoo

    rows = []
    installed = installed_workloads()
    for name in args.models or zoo.names() + sorted(installed):
        if name in installed and name not in zoo.names():  # a package's own workload (gvp_bench.workloads)
            workload = load_workload(name)
            rows.append(dict(model=name, size=WORKLOAD_SIZE, parameters=workload.parameter_count,
                             outputs=workload.output_size, forward_flops=None,
                             description=f"installed workload ({installed[name].value})"))
            continue
        for size in args.sizes or zoo.SIZES:
            model = zoo.build(name, size)
            rows.append(dict(model=name, size=size, parameters=model.parameter_count, outputs=model.output_size,
                             forward_flops=model.flops, description=zoo.describe(name)))
    frame = pd.DataFrame(rows).astype({"forward_flops": "Int64"})
    print(frame.to_markdown(index=False) if args.format == "markdown" else frame.to_string(index=False))
    return 0


def _report(args):
    from .report import write_report

    print(f"wrote {write_report(args.results, args.out)}, index.html and its figures")
    return 0


def _recommend(args):
    from . import recommend
    from .measurements import load_cells

    if (args.model is None) == (args.workload is None):
        raise ValueError("recommend needs one of --model (a zoo model) or --workload (your own)")
    if args.workload is None:
        cells, model, dtype = load_cells(args.results or ["results"]), args.model, args.dtype or "float32"
    else:
        workload = load_workload(args.workload)
        model, dtype = workload.name, args.dtype
        cells = load_cells(args.results) if args.results else _measure_for_recommend(workload, args)
    chosen = recommend.recommend(cells, args.op, model, args.size, args.device, dtype, args.k)
    print(recommend.render(chosen))
    return 0 if len(chosen.ranked) else 1


def _measure_for_recommend(workload, args):
    """The cells of ``args.op`` on ``workload``, measured now with every strategy (into --out, or a file
    removed after)."""
    import tempfile

    from .bench.own import measure
    from .measurements import load_cells

    print(f"gvp-bench: no --results given: measuring {args.op} on {workload.name} with "
          f"{', '.join(args.strategies) if args.strategies else 'every strategy'} now", file=sys.stderr)
    options = dict(devices=[args.device], dtypes=[args.dtype] if args.dtype else None, ops=[args.op],
                   strategies=args.strategies, ks=[args.k or 8], progress=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.out:
            measure([workload], args.out, **options)
            return load_cells([args.out])
        with tempfile.TemporaryDirectory(prefix="gvp-bench-") as folder:
            path = os.path.join(folder, "results.jsonl")
            measure([workload], path, **options)
            return load_cells([path])


def _compare(args):
    from . import compare

    result = compare.compare_files([args.base], [args.new], args.threshold, args.instructions_threshold)
    print(compare.render(result, markdown=args.format == "markdown", only_changed=args.only_changed,
                         allow_missing=args.allow_missing, strict=args.strict))
    return compare.exit_code(result, allow_missing=args.allow_missing, strict=args.strict)


def _targets(args):
    from . import targets
    from .measurements import load_cells

    outcomes = targets.check(load_cells(args.results))
    print(targets.render(outcomes))
    return 1 if any(outcome.verdict == "MISSED" for outcome in outcomes) else 0


def _selftest(args):
    from . import selftest

    return 1 if selftest.run(args.device, args.quick) else 0


def build_parser():
    parser = argparse.ArgumentParser(prog="gvp-bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    conformance = commands.add_parser(
        "conformance", help="check every strategy against the oracle and print the support matrix")
    conformance.add_argument("--strategies", type=_names, help="comma-separated names (default: all registered)")
    conformance.add_argument("--cases", type=_names, help="comma-separated case names (default: all)")
    conformance.add_argument("--workload", action="append", metavar="FILE.py:FUNCTION",
                             help="check the strategies on your own model instead of the built-in cases: "
                                  "FILE.py:FUNCTION, package.module:FUNCTION or an installed workload's name "
                                  "(as for gvp-bench run); repeatable")
    conformance.add_argument("--dtypes", type=_names,
                             help="float32,float64 (default: both; a closure workload: its own)")
    conformance.add_argument("--devices", type=_names, help="cpu,cuda (default: cpu, and cuda when present)")
    conformance.add_argument("--format", choices=["text", "markdown"], default="text")
    conformance.add_argument("--csv", help="also write one row per cell, with the details, to this CSV file")
    conformance.add_argument("--quiet", action="store_true", help="no progress bar")
    conformance.set_defaults(run=_conformance)
    report = commands.add_parser("report", help="write index.md, a self-contained index.html and PNG plots")
    report.add_argument("results", nargs="+", help="results files, or folders of them (*.jsonl)")
    report.add_argument("--out", default="report", help="the report's folder (default: report)")
    report.set_defaults(run=_report)
    recommend = commands.add_parser("recommend", help="rank the strategies for a workload from measured results")
    recommend.add_argument("--op", required=True, help="jvp, vjp, model_jvp, model_vjp, batch_jvp, batch_vjp, ...")
    recommend.add_argument("--model", help="a zoo model, e.g. mlp")
    recommend.add_argument("--workload", metavar="FILE.py:FUNCTION",
                           help="your own model instead (as for gvp-bench run): ranked from --results when given, "
                                "else measured now")
    recommend.add_argument("--size", help="tiny, small, medium or large (default: the largest measured)")
    recommend.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                           help="default: cuda when this machine has it, else cpu")
    recommend.add_argument("--dtype", help="default: float32 (a --workload: its own)")
    recommend.add_argument("--k", type=int, help="vectors per call of a batch op (default: the largest measured)")
    recommend.add_argument("--results", nargs="+", help="files or folders (default: results; with --workload: "
                                                         "measure now)")
    recommend.add_argument("--strategies", type=_names, help="with --workload and no --results: measure only these "
                                                             "(default: all registered)")
    recommend.add_argument("--out", help="with --workload and no --results: keep the measurements in this results file")
    recommend.set_defaults(run=_recommend)
    compare = commands.add_parser("compare", help="per-cell changes from BASE to NEW; exits 1 on a regression, "
                                                  "2 when nothing or not every BASE cell is comparable")
    compare.add_argument("base", help="results file or folder of the baseline")
    compare.add_argument("new", help="results file or folder to check")
    compare.add_argument("--threshold", type=float, default=0.10, help="relative change that counts (default 0.10)")
    compare.add_argument("--instructions-threshold", type=float, default=0.01,
                         help="relative change of instructions per call that counts (default 0.01)")
    compare.add_argument("--allow-missing", action="store_true",
                         help="BASE cells missing from NEW, or failing there, do not end in exit status 2")
    compare.add_argument("--strict", action="store_true",
                         help="exit 2 when the runs' set-up differs (threads, torch, machine, measure), "
                              "not only warn")
    compare.add_argument("--format", choices=["text", "markdown"], default="text")
    compare.add_argument("--only-changed", action="store_true", help="list only the cells that changed beyond noise")
    compare.set_defaults(run=_compare)
    targets = commands.add_parser("targets", help="check the speed targets on measured results; exits 1 on a miss")
    targets.add_argument("results", nargs="+", help="results files or folders (gvp-bench run --suite targets)")
    targets.set_defaults(run=_targets)
    zoo_command = commands.add_parser("zoo", help="list the zoo's models with their sizes and costs")
    zoo_command.add_argument("--models", type=_names, help="comma-separated names (default: all)")
    zoo_command.add_argument("--sizes", type=_names, help="comma-separated sizes (default: all)")
    zoo_command.add_argument("--format", choices=["text", "markdown"], default="text")
    zoo_command.set_defaults(run=_zoo)
    selftest = commands.add_parser("selftest", help="exercise every CUDA path once (minutes): one ok / FAIL / skip "
                                                    "line per check; exits 1 on a FAIL")
    selftest.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu",
                          help="default: cuda when this machine has it, else cpu (the same checks, CUDA's skipped)")
    selftest.add_argument("--quick", action="store_true", help="fewer strategies per case, fewer ops in the run")
    selftest.set_defaults(run=_selftest)
    bench_command.add_parser(commands, _names)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    for dtype in getattr(args, "dtypes", None) or []:
        if dtype not in DTYPES:
            raise SystemExit(f"gvp-bench: --dtypes: unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    try:
        return args.run(args)
    except WorkloadSpecError as error:  # a usage error, as argparse's: exit status 2
        print(f"gvp-bench: --workload: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as error:
        raise SystemExit(f"gvp-bench: {error}") from None


if __name__ == "__main__":
    sys.exit(main())
