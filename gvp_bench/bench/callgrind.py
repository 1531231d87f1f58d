"""Instructions per call, counted by callgrind: ``gvp-bench run --measure instructions``.

An instruction count does not move when other processes load the machine, so on a shared CI
runner it shows a change of a few percent that wall time, scattered by load, cannot.

How: ``gvp-bench run --measure instructions`` starts the same run again, once, under
``valgrind --tool=callgrind --collect-atstart=no`` (:func:`relaunch`): the valgrind'd Python
imports torch and sets up a cell far more slowly than a plain one, so every cell of the run is
counted in that one process. There, each cell is set up and called once as in a timed run, then
its product is called :data:`WARMUP_CALLS` times uncounted (autograd's and the allocator's
caches fill over the first calls), then :data:`REPEATS` times a block of :data:`CALLS` calls
between ``torch._C._valgrind_toggle()`` (collection on) and
``torch._C._valgrind_toggle_and_dump_stats()`` (collection off, and the counts written to a
file and reset): the protocol ``torch.utils.benchmark.Timer.collect_callgrind`` runs in its own
subprocess. Python's cyclic garbage collector runs before each block and is paused during it
(as timeit pauses it), so that a collection does not land in one block and not another. That
Timer method is not called itself because it starts a new valgrind'd Python for every statement
and can only hand it globals it can serialise (tensors, TorchScript), not a strategy's closure
over a model. Each dump's ``summary:`` line is the instructions executed
(Ir) while collecting; a block's count over its calls is one repeat. The plain forward pass is
counted the same way, and ``forward_ratio`` is the ratio of the medians.

What it suits: CPU cells whose cost is executed instructions (Python, dispatch, autograd's
bookkeeping, small kernels): the overhead a change to a strategy adds or removes. It does not
see what makes the same instructions slower or faster (cache misses, memory bandwidth, other
threads), so large kernels are better judged by time; counts depend on the CPU (the math
libraries pick code for it) and on the torch build, so compare counts of one machine type.
Several intra-op threads may make counts vary (threads waiting may spin), so such runs default to
one thread. CUDA kernels run on the device, out of callgrind's sight: instruction counts are for
the CPU only. Peak memory is not measured in such a run.
"""

import argparse
import gc
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

import torch

WARMUP_CALLS = 10  # uncounted calls before the counted blocks
CALLS = 3    # calls per counted block
REPEATS = 3  # counted blocks per call measured
SLOWDOWN = 50  # how much longer a cell takes under callgrind (valgrind's manual: 50-100x), for its default time limit
_ARGS = "GVP_BENCH_CALLGRIND_ARGS"  # the run's options, handed to the process under callgrind
_DUMPS = "GVP_BENCH_CALLGRIND_DUMPS"  # the folder callgrind writes its dumps to


class CallgrindError(RuntimeError):
    """Callgrind's counts could not be read (no valgrind, or no dump where one was expected)."""


def active():
    """Whether this process is the run under callgrind that :func:`relaunch` started."""
    return _DUMPS in os.environ


def relaunch(args):
    """Run the ``gvp-bench run`` of the parsed ``args`` under callgrind; its exit code."""
    if shutil.which("valgrind") is None:
        raise ValueError("--measure instructions: valgrind is not installed here (Debian/Ubuntu: apt-get install "
                         "valgrind)")
    options = {name: value for name, value in vars(args).items() if name != "run"}
    with tempfile.TemporaryDirectory(prefix="gvp-bench-callgrind-") as dumps:
        log = os.path.join(dumps, "valgrind.log")
        command = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--log-file={log}",
                   f"--callgrind-out-file={os.path.join(dumps, 'callgrind.out.%p')}",
                   sys.executable, "-m", __name__]
        print("gvp-bench: counting instructions under callgrind: starting Python under valgrind takes minutes, "
              "then each cell tens of times its plain duration", file=sys.stderr)
        # a fixed string hash seed: the same dict and set layouts, so the same instructions, in every run
        environment = dict(os.environ, PYTHONHASHSEED="0", **{_ARGS: json.dumps(options), _DUMPS: dumps})
        code = subprocess.run(command, env=environment).returncode
        if code not in (0, 130) and os.path.exists(log):
            tail = pathlib.Path(log).read_text(errors="replace").splitlines()[-5:]
            print("gvp-bench: valgrind's log ends with:\n" + "\n".join(tail), file=sys.stderr)
        return code


def count_cell(cell):
    """The instruction fields of a results row for the prepared ``cell`` (see the module docstring)."""
    if torch.device(cell.workload.device).type != "cpu":
        raise ValueError("instruction counts are for the CPU only: callgrind does not see a device's kernels")
    product, forward = count(cell.product), count(cell.forward)
    return dict(instructions=statistics.median(product), instructions_samples=product,
                forward_instructions=statistics.median(forward),
                forward_ratio=statistics.median(product) / statistics.median(forward))


def count(call):
    """Instructions per call of ``call()``, one figure per counted block."""
    if not active():
        raise CallgrindError("instructions are counted only under callgrind: gvp-bench run --measure instructions")
    for _ in range(WARMUP_CALLS):
        call()
    counts = []
    collecting = gc.isenabled()
    for _ in range(REPEATS):
        gc.collect()
        gc.disable()
        try:
            torch._C._valgrind_toggle()
            for _ in range(CALLS):
                call()
            torch._C._valgrind_toggle_and_dump_stats()
        finally:
            if collecting:
                gc.enable()
        counts.append(_read_dump() / CALLS)
    return counts


def _read_dump():
    """The instructions of callgrind's one new dump file, which is then deleted."""
    dumps = sorted(pathlib.Path(os.environ[_DUMPS]).glob(f"callgrind.out.{os.getpid()}.*"))
    if len(dumps) != 1:
        raise CallgrindError(f"expected one new callgrind dump, found {len(dumps)}")
    with dumps[0].open() as lines:
        for line in lines:
            if line.startswith("summary:"):
                dumps[0].unlink()
                return int(line.split()[1])
    raise CallgrindError(f"{dumps[0]}: no summary line")


def main():
    """The run under callgrind: ``gvp-bench run`` with the options :func:`relaunch` handed over."""
    from . import command

    args = argparse.Namespace(**json.loads(os.environ[_ARGS]))
    try:
        return command.main(args)
    except ValueError as error:
        print(f"gvp-bench: {error}", file=sys.stderr)
        return 1  # as gvp-bench's own one-line errors


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # every row is written and fsynced: skip the interpreter's teardown, which takes minutes under valgrind
    os._exit(code)
