"""The ``gvp-bench`` command line.

Each command imports what it needs when it runs, so that ``gvp-bench --help`` and ``--version``
answer without importing torch; ``run``'s options (which list the suites) are built only when
``run`` is the command.
"""

import argparse
import os
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version

DESCRIPTION = ("Jacobian-vector products for PyTorch: check the strategies against an oracle, measure them on "
               "a zoo of models, and read the results (report, recommend, compare, targets).")
DTYPES = ("float32", "float64")
RUN_HELP = "measure time and peak memory of every strategy on a suite of workloads"
OVERHEAD_HELP = ("time model_jvp / model_vjp against the torch calls written by hand "
                 "(one thread, thread CPU time, interleaved rounds)")


def _names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def _conformance(args):
    import torch
    from tqdm import tqdm

    from .conformance import CASES, case_by_name, cells, pivot, support_matrix
    from .conformance import own as own_conformance
    from .conformance.matrix import available_devices
    from .registry import get_strategy
    from .second_order import hvp_strategies
    from .workload_specs import load as load_workload

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
                undeclared = " (UNDECLARED: not in the strategy's unsupported data)" if not group.declared.all() else ""
                print(f"  {strategy} / {case} ({where}){undeclared}: {reason}")
    undeclared = (frame.status == "unsupported") & ~frame.declared.astype(bool)
    return 1 if counts.get("fail", 0) or undeclared.any() else 0


def _zoo(args):
    import pandas as pd

    from . import zoo
    from .workload import SIZE as WORKLOAD_SIZE
    from .workload_specs import installed as installed_workloads, load as load_workload

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
            model = zoo.build(name, size, device="meta")  # shapes only: the forward pass that counts is cheap
            outputs, flops = model.forward_costs()
            rows.append(dict(model=name, size=size, parameters=model.parameter_count, outputs=outputs,
                             forward_flops=flops, description=zoo.describe(name)))
    frame = pd.DataFrame(rows).astype({"forward_flops": "Int64"})
    print(frame.to_markdown(index=False) if args.format == "markdown" else frame.to_string(index=False))
    return 0


def _report(args):
    from .report import write_report

    print(f"wrote {write_report(args.results, args.out)}, index.html and its figures")
    return 0


def _recommend(args):
    import torch

    from . import recommend
    from .measurements import load_cells

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if (args.model is None) == (args.workload is None):
        raise ValueError("recommend needs one of --model (a zoo model) or --workload (your own)")
    if args.workload is None:
        cells, model, dtype = load_cells(args.results or ["results"]), args.model, args.dtype or "float32"
    else:
        from .workload_specs import load as load_workload

        workload = load_workload(args.workload)
        model, dtype = workload.name, args.dtype
        cells = load_cells(args.results) if args.results else _measure_for_recommend(workload, args)
    chosen = recommend.recommend(cells, args.op, model, args.size, args.device, dtype, args.k,
                                 allow_compile=args.allow_compile)
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
    import torch

    from . import selftest

    return 1 if selftest.run(args.device or ("cuda" if torch.cuda.is_available() else "cpu"), args.quick) else 0


def _version():
    try:
        return version("gvp-bench")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def build_parser(command=None):
    """The parser; ``command``: the command about to run, when known (None: every command in full). The
    options of ``run`` import torch and the zoo, so they are added only when ``run`` may be the command."""
    parser = argparse.ArgumentParser(prog="gvp-bench", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"gvp-bench {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    conformance = commands.add_parser(
        "conformance", help="check every strategy against the oracle and print the support matrix",
        description="Check every strategy on every case, function, dtype and device against an oracle that is "
                    "none of the strategies, and print the support matrix: pass, FAIL, unsupported (declared by "
                    "the strategy) or UNDECLARED. Exits 1 on a failure or an undeclared refusal.")
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
    report = commands.add_parser("report", help="write index.md, a self-contained index.html and PNG plots",
                                 description="Render measured results as a report: index.md, a self-contained "
                                             "index.html and PNG figures, in one folder.")
    report.add_argument("results", nargs="+", help="results files, or folders of them (*.jsonl)")
    report.add_argument("--out", default="report", help="the report's folder (default: report)")
    report.set_defaults(run=_report)
    recommend = commands.add_parser("recommend", help="rank the strategies for a workload from measured results",
                                    description="Rank the strategies for one workload (an op on a zoo model) by "
                                                "measured median time, with expected time and memory. Only results "
                                                "of the device and size asked answer; leads with the fastest "
                                                "strategy that does not compile unless --allow-compile.")
    recommend.add_argument("--op", required=True, help="jvp, vjp, model_jvp, model_vjp, batch_jvp, batch_vjp, ...")
    recommend.add_argument("--model", help="a zoo model, e.g. mlp")
    recommend.add_argument("--workload", metavar="FILE.py:FUNCTION",
                           help="your own model instead (as for gvp-bench run): ranked from --results when given, "
                                "else measured now")
    recommend.add_argument("--size", help="tiny, small, medium or large (default: the largest measured for the op, "
                                          "model and device); never answered from another size's results")
    recommend.add_argument("--device",
                           help="cpu or cuda (default: cuda when this machine has it, else cpu); never answered "
                                "from another device's results")
    recommend.add_argument("--dtype", help="float32 or float64 (default: float32; a --workload: its own)")
    recommend.add_argument("--k", type=int, help="vectors per call of a batch op (default: the largest measured)")
    recommend.add_argument("--results", nargs="+", help="files or folders (default: results; with --workload: "
                                                         "measure now)")
    recommend.add_argument("--strategies", type=_names, help="with --workload and no --results: measure only these "
                                                             "(default: all registered)")
    recommend.add_argument("--out", help="with --workload and no --results: keep the measurements in this results file")
    recommend.add_argument("--allow-compile", action="store_true",
                           help="lead with a strategy that compiles on its first call (seconds) when it is the fastest")
    recommend.set_defaults(run=_recommend)
    compare = commands.add_parser("compare", help="per-cell changes from BASE to NEW; exits 1 on a regression, "
                                                  "2 when nothing or not every BASE cell is comparable",
                                  description="Compare every cell of two runs: the change of each cell's median "
                                              "time (or instruction count), judged against the noise of the two "
                                              "runs; exits 1 when a cell regressed, 2 when nothing is comparable.")
    compare.add_argument("base", help="results file or folder of the baseline (a folder of three runs sees smaller "
                                         "changes than one run: docs/ci.md)")
    compare.add_argument("new", help="results file or folder to check (likewise)")
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
    targets = commands.add_parser("targets", help="check the speed targets on measured results; exits 1 on a miss",
                                  description="Check the speed targets (gvp-bench run --suite targets) on measured "
                                              "results; exits 1 when one is missed.")
    targets.add_argument("results", nargs="+", help="results files or folders (gvp-bench run --suite targets)")
    targets.set_defaults(run=_targets)
    zoo_command = commands.add_parser("zoo", help="list the zoo's models with their sizes and costs",
                                      description="List the zoo's models at every size: parameters, output size, "
                                                  "forward FLOPs and what each model is.")
    zoo_command.add_argument("--models", type=_names, help="comma-separated names (default: all)")
    zoo_command.add_argument("--sizes", type=_names, help="comma-separated sizes (default: all)")
    zoo_command.add_argument("--format", choices=["text", "markdown"], default="text")
    zoo_command.set_defaults(run=_zoo)
    selftest = commands.add_parser("selftest", help="exercise every CUDA path once (minutes): one ok / FAIL / skip "
                                                    "line per check; exits 1 on a FAIL",
                                   description="Exercise every CUDA path once (minutes): one ok / FAIL / skip line "
                                               "per check; exits 1 on a FAIL.")
    selftest.add_argument("--device", choices=["cpu", "cuda"],
                          help="default: cuda when this machine has it, else cpu (the same checks, CUDA's skipped)")
    selftest.add_argument("--quick", action="store_true", help="fewer strategies per case, fewer ops in the run")
    selftest.set_defaults(run=_selftest)
    if command in (None, "run"):
        from .bench import command as bench_command

        bench_command.add_parser(commands, _names)
    else:
        commands.add_parser("run", help=RUN_HELP)
    if command in (None, "overhead"):
        from .bench import overhead as bench_overhead

        bench_overhead.add_parser(commands, _names, OVERHEAD_HELP)
    else:
        commands.add_parser("overhead", help=OVERHEAD_HELP)
    return parser


def _command(argv):
    """The command of the arguments: the first that is not an option."""
    return next((argument for argument in argv if not argument.startswith("-")), "")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    for dtype in getattr(args, "dtypes", None) or []:
        if dtype not in DTYPES:
            raise SystemExit(f"gvp-bench: --dtypes: unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    try:
        return args.run(args)
    except ValueError as error:
        specs = sys.modules.get(f"{__package__}.workload_specs")  # loaded by the commands that take --workload
        if specs is not None and isinstance(error, specs.WorkloadSpecError):  # a usage error, as argparse's: 2
            print(f"gvp-bench: --workload: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        raise SystemExit(f"gvp-bench: {error}") from None


if __name__ == "__main__":
    sys.exit(main())
