"""``gvp-bench run``: measure a suite's cells into a results file, then print a summary.

With no option: the quick suite, on the CPU and on CUDA when present, into a new file under
``results/``. ``--resume --out PATH`` completes a file a stopped run left, measuring only the
cells it lacks; ``--shard i/N`` measures one of N disjoint parts of the selection (the files
of the shards load together); ``--isolate`` measures each cell in a fresh process, so that a
crash records that cell and the run goes on (gvp_bench.bench.isolate). ``--measure instructions``
counts instructions per call under callgrind instead of timing (:mod:`.callgrind`: CPU only, one
thread by default). Where JAX is installed, the JAX side-by-side rows are measured too, unless
``--no-jax``. A damaged results file or a refused one (locked by another run, another suite,
another machine) ends the command with a one-line ``gvp-bench: ...`` message; warnings (lines
dropped from a damaged file) are one line each.
"""

import argparse
import contextlib
import datetime
import os
import sys
import warnings

import torch

from .. import jax_side
from ..results import ResultsError, ResultsWriter, load, new_header
from . import callgrind, own, summary
from .machine import fingerprint
from .workloads import SUITES, expand, get_suite, shard

# A resumed file must come from the same machine and software: these fingerprint fields must match.
SAME_MACHINE = ("cpu", "gpu", "torch")
# Settings a resumed file should share (TF32 on or off): a difference is warned about, where the file records them.
SAME_SETTINGS = ("fp32_precision",)
MEASURES = ("time", "instructions")


def _shard(text):
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not i/N, such as 1/4") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"{text}: i must be between 1 and N")
    return index, count


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive {kind.__name__}")
        return value
    return parse


def _positive_list(text):
    return [_positive(int)(part) for part in text.split(",") if part.strip()]


def add_parser(commands, names):
    """Add the ``run`` command to the subcommands ``commands``; ``names`` parses a comma-separated list."""
    parser = commands.add_parser("run", help="measure time and peak memory of every strategy on a suite of workloads",
                                 description="Measure a suite's cells into a results file, then print a summary.")
    parser.add_argument("--suite", default="quick", choices=list(SUITES),
                        help="; ".join(f"{s.name}: {s.description}" for s in SUITES.values()) + " (default: quick)")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="all: the CPU, and CUDA when present (the default)")
    parser.add_argument("--dtype", type=names, help="float32,float64 (default: the suite's)")
    parser.add_argument("--models", type=names, help="comma-separated zoo models (default: the suite's)")
    parser.add_argument("--workload", action="append", metavar="FILE.py:FUNCTION",
                        help="measure your own model instead of the suite's: FILE.py:FUNCTION, package.module:FUNCTION "
                             "or an installed workload's name, FUNCTION returning (model, x), (func, params) or a "
                             "gvp_bench.Workload; repeatable (the suite only sets how long each cell is measured)")
    parser.add_argument("--ops", type=names, help="comma-separated ops (default: all seven)")
    parser.add_argument("--strategies", type=names, help="comma-separated strategies (default: all registered)")
    parser.add_argument("--k", type=_positive_list, help="comma-separated vectors per call of the batch ops "
                                                          "(default: the suite's)")
    parser.add_argument("--jax", action=argparse.BooleanOptionalAction,
                        help="also measure the JAX side-by-side rows (mlp, cnn, scalar5, elementwise; "
                             "pip install -e '.[jax]'); default: on when JAX is installed")
    parser.add_argument("--out", help="the results file (default: a new file under results/)")
    parser.add_argument("--resume", action="store_true",
                        help="complete the --out file: measure only the cells it lacks")
    parser.add_argument("--shard", type=_shard, metavar="i/N", help="measure only part i of N of the cells")
    parser.add_argument("--threads", type=_positive(int),
                        help=f"torch intra-op threads while measuring (default: torch's, {torch.get_num_threads()} here)")
    parser.add_argument("--timeout", type=_positive(float), metavar="SECONDS",
                        help="per cell, past which it is recorded as timeout (default: the suite's)")
    parser.add_argument("--budget", type=_positive(float), metavar="SECONDS",
                        help="per cell: a cell one call of which would not fit is recorded as skipped, with why "
                             "(default: the suite's; inf: none)")
    parser.add_argument("--min-run-time", type=_positive(float), metavar="SECONDS",
                        help="seconds of timed samples at least per call measured (default: the suite's)")
    parser.add_argument("--max-run-time", type=_positive(float), metavar="SECONDS",
                        help="seconds of timed samples at most, unless already stable (default: the suite's)")
    parser.add_argument("--isolate", action="store_true",
                        help="measure each cell in a fresh process, so that a crash (a segfault, an abort in a "
                             "kernel) records that cell as error and the run goes on; costs a torch import per cell")
    parser.add_argument("--measure", choices=MEASURES, default="time",
                        help="time: seconds per call (the default); instructions: instructions per call counted by "
                             "callgrind (valgrind; CPU only, slow, steady under load; default --threads 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=main)


def _devices(choice, measure):
    if measure == "instructions":
        if choice == "cuda":
            raise ValueError("--measure instructions: counts are for the CPU only (callgrind does not see a "
                             "device's kernels); use --device cpu")
        return ["cpu"]
    if choice == "cpu":
        return ["cpu"]
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device on this machine")
    return (["cpu"] if choice == "all" else []) + (["cuda"] if torch.cuda.is_available() else [])


def _default_path(header, part):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    sharded = f"-shard{part[0]}of{part[1]}" if part else ""
    return os.path.join("results", f"{header['suite']}-{stamp}-{header['run_id']}{sharded}.jsonl")


@contextlib.contextmanager
def _one_line_warnings():
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"gvp-bench: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _check_same_run(path, header, ours):
    if header.get("suite") != ours["suite"]:
        raise ResultsError(f"{path}: holds the {header.get('suite')!r} suite, not {ours['suite']!r}; "
                           f"resume it with --suite {header.get('suite')}")
    theirs, mine = header.get("machine") or {}, ours["machine"]
    if theirs.get("measure", "time") != mine["measure"]:
        raise ResultsError(f"{path}: holds measure {theirs.get('measure', 'time')!r}, not {mine['measure']!r}; "
                           f"resume it with --measure {theirs.get('measure', 'time')}")
    different = [name for name in SAME_MACHINE if theirs.get(name) != mine[name]]
    if different:
        raise ResultsError(f"{path}: measured on another machine ("
                           + "; ".join(f"{name} {theirs.get(name)} there, {mine[name]} here" for name in different)
                           + "); measure this one into another file")
    for name in SAME_SETTINGS:
        if name in theirs and theirs[name] != mine[name]:
            warnings.warn(f"{path}: its cells were measured with {name} {theirs[name]}, this run's with {mine[name]}")


def _own_cells(args):
    """The cells of the --workload specs: each workload's ops on the strategies, dtypes, devices and ks asked."""
    from ..workload_specs import load

    if args.models:
        raise ValueError("--models picks zoo models: with --workload only the workloads given are measured")
    if args.jax:
        raise ValueError("--jax: the JAX side-by-side rows are of zoo models, not of a --workload")
    devices = _devices(args.device, args.measure)
    return own.cells([load(spec) for spec in args.workload], devices=devices, dtypes=args.dtype, ops=args.ops,
                     strategy_names=args.strategies, ks=args.k or get_suite(args.suite).ks)


def main(args):
    """Run the command; the exit code (130 when interrupted). With JAX rows, XLA gets torch's thread count
    (gvp_bench.jax_side.match_threads) for the run."""
    threads = args.threads or torch.get_num_threads()
    pinned_from = jax_side.match_threads(threads) if args.jax is not False and jax_side.available() else None
    try:
        return _run(args, cpus_usable=len(pinned_from) if pinned_from else None)
    finally:
        if pinned_from is not None:
            os.sched_setaffinity(0, pinned_from)


def _run(args, cpus_usable=None):
    """The run; ``cpus_usable``: the CPUs the process could run on before main pinned it for JAX, which the
    results' machine fingerprint gives (not the pinned count)."""
    from .runner import Settings, run  # torch.utils.benchmark only when measuring: other commands start faster

    suite = get_suite(args.suite)
    instructions = args.measure == "instructions"
    if args.workload:
        workloads, suite_name = _own_cells(args), own.SUITE
    else:
        if args.jax and not jax_side.available():
            raise ValueError("--jax: JAX is not installed here (pip install -e '.[jax]')")
        devices = _devices(args.device, args.measure)
        no_jax_on_cuda = jax_side.missing_cuda_backend(devices) if args.jax is not False else None
        if no_jax_on_cuda and args.jax and args.device == "cuda":
            raise ValueError(f"--jax --device cuda: {no_jax_on_cuda}")
        if no_jax_on_cuda:
            print(f"gvp-bench: warning: {no_jax_on_cuda}", file=sys.stderr)
        workloads = expand(suite, devices=devices, dtypes=args.dtype, models=args.models, ops=args.ops,
                           strategy_names=args.strategies, ks=args.k,
                           jax=jax_side.available() if args.jax is None else args.jax)
        suite_name = suite.name
    if args.shard:
        workloads = shard(workloads, *args.shard)
    if not workloads:
        raise ValueError(f"no cells selected: the {suite_name} suite has none for these options")
    if args.resume and not args.out:
        raise ValueError("--resume needs --out PATH, the results file to complete")
    if instructions and args.isolate:
        raise ValueError("--isolate: the cells' own processes would run outside callgrind; with --measure "
                         "instructions measure in one process")
    if instructions and not callgrind.active():
        return callgrind.relaunch(args)  # which comes back here, under callgrind
    threads = args.threads or (1 if instructions else torch.get_num_threads())
    settings = Settings(threads=threads, min_run_time=args.min_run_time or suite.min_run_time,
                        max_run_time=args.max_run_time or suite.max_run_time,
                        timeout_s=args.timeout or suite.timeout_s * (callgrind.SLOWDOWN if instructions else 1),
                        budget_s=args.budget or (None if args.workload or instructions else suite.budget_s),
                        measure=args.measure)  # your model, or counted under callgrind: no budget
    machine = dict(fingerprint(threads), measure=args.measure)
    if cpus_usable:
        machine["cpu_usable"] = cpus_usable
    header = new_header(machine, suite_name)
    path = args.out or _default_path(header, args.shard)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with _one_line_warnings():
            with ResultsWriter(path, header, resume=args.resume) as writer:
                if args.resume:
                    _check_same_run(path, writer.header, header)
                todo = sum(workload.key() not in writer.done for workload in workloads)
                print(f"gvp-bench: {todo} of {len(workloads)} cells to measure ({suite_name} suite, "
                      f"{threads} threads) into {path}", file=sys.stderr)
                try:
                    run(workloads, writer, settings, progress=not args.quiet, isolate=args.isolate)
                except KeyboardInterrupt:
                    print(f"\ngvp-bench: interrupted; the cells measured so far are in {path} "
                          f"(--resume --out {path} completes it)", file=sys.stderr)
                    return 130
            print(summary.text(load(path), path))
    except OSError as error:  # the results file (a cell's own errors are recorded in its row)
        raise ResultsError(f"{path}: cannot write the results file: {error.strerror or error}") from None
    finally:
        torch.set_num_threads(threads_before)

    return 0
