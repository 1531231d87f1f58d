"""The ``gvp-bench`` command line."""

import argparse
import sys
import warnings

import torch

from .bench import command as bench_command
from .bench import overhead as bench_overhead
from .conformance import CASES, case_by_name, cells, pivot, support_matrix
from .conformance.matrix import DTYPES, available_devices
from .registry import get_strategy


def _names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def _conformance(args):
    from tqdm import tqdm

    for name in args.strategies or []:
        get_strategy(name)  # an unknown name fails here with the list of valid ones
    torch.set_num_threads(1)  # tiny models: more intra-op threads only add synchronisation
    cases = [case_by_name(name) for name in args.cases] if args.cases else CASES
    devices = args.devices or available_devices()
    selected = list(cells(args.strategies, cases, args.dtypes, devices))
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
    print("\n" + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("pass", "fail", "unsupported"))
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
    for name in args.models or zoo.names():
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

    chosen = recommend.recommend(load_cells(args.results), args.op, args.model, args.size, args.device, args.dtype,
                                 args.k)
    print(recommend.render(chosen))
    return 0 if len(chosen.ranked) else 1


def _compare(args):
    from . import compare

    result = compare.compare_files([args.base], [args.new], args.threshold)
    print(compare.render(result, markdown=args.format == "markdown", only_changed=args.only_changed))
    return 1 if len(result.regressions) else 0


def _targets(args):
    from . import targets
    from .measurements import load_cells

    outcomes = targets.check(load_cells(args.results))
    print(targets.render(outcomes))
    return 1 if any(outcome.verdict == "MISSED" for outcome in outcomes) else 0


def build_parser():
    parser = argparse.ArgumentParser(prog="gvp-bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    conformance = commands.add_parser(
        "conformance", help="check every strategy against the oracle and print the support matrix")
    conformance.add_argument("--strategies", type=_names, help="comma-separated names (default: all registered)")
    conformance.add_argument("--cases", type=_names, help="comma-separated case names (default: all)")
    conformance.add_argument("--dtypes", type=_names, default=list(DTYPES), help="float32,float64 (default: both)")
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
    recommend.add_argument("--model", required=True, help="a zoo model, e.g. mlp")
    recommend.add_argument("--size", help="tiny, small, medium or large (default: the largest measured)")
    recommend.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                           help="default: cuda when this machine has it, else cpu")
    recommend.add_argument("--dtype", default="float32")
    recommend.add_argument("--k", type=int, help="vectors per call of a batch op (default: the largest measured)")
    recommend.add_argument("--results", nargs="+", default=["results"], help="files or folders (default: results)")
    recommend.set_defaults(run=_recommend)
    compare = commands.add_parser("compare", help="per-cell changes from BASE to NEW; exits 1 on a regression")
    compare.add_argument("base", help="results file or folder of the baseline")
    compare.add_argument("new", help="results file or folder to check")
    compare.add_argument("--threshold", type=float, default=0.10, help="relative change that counts (default 0.10)")
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
    bench_command.add_parser(commands, _names)
    bench_overhead.add_parser(commands, _names)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    for dtype in getattr(args, "dtypes", None) or []:
        if dtype not in DTYPES:
            raise SystemExit(f"gvp-bench: --dtypes: unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    try:
        return args.run(args)
    except ValueError as error:
        raise SystemExit(f"gvp-bench: {error}") from None


if __name__ == "__main__":
    sys.exit(main())
