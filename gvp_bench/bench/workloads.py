"""Workloads: what one benchmark cell measures, the named suites, and how a cell is set up.

A :class:`Workload` is one cell's key (the fields of :data:`gvp_bench.results.CELL_KEY`): an op
of the API, a zoo model at a size, a strategy, a device, a dtype, and ``k`` (the number of
vectors, for the batch ops only). A :class:`Suite` is data: which (model, size) pairs, batch
sizes and dtypes, and how long to measure each cell. :func:`expand` turns a suite and filters
into the cells to measure, :func:`shard` deterministically keeps one part of them, and
:func:`prepare` builds a cell: the product call and the plain forward pass it is compared with.

This is the one definition of the workloads: ``gvp-bench run``, the pytest-benchmark suite
and the asv benchmarks in ``suites/`` all use it.
"""

import functools
import hashlib
import itertools
from dataclasses import dataclass
from typing import Callable

import torch

from .. import jax_side, zoo
from . import raw
from ..registry import get_strategy, strategies

OPS = ("jvp", "vjp", "model_jvp", "model_vjp", "batch_jvp", "batch_vjp", "full_jacobian")
BATCH_OPS = ("batch_jvp", "batch_vjp")
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")
SEED = 0  # weights, inputs and vectors of every cell are drawn from it


@dataclass(frozen=True)
class Workload:
    """One benchmark cell; its fields are the results' CELL_KEY."""

    op: str
    model: str
    size: str
    strategy: str
    device: str
    dtype: str
    k: int | None = None  # vectors per call, for the batch ops; None for the others

    def key(self):
        return (self.op, self.model, self.size, self.strategy, self.device, self.dtype, self.k)

    def __str__(self):
        batch = f"[k={self.k}]" if self.k is not None else ""
        return f"{self.op}{batch} {self.model}/{self.size} {self.strategy} {self.device} {self.dtype}"


@dataclass(frozen=True)
class Suite:
    """A named set of workloads, with how long each cell is measured."""

    name: str
    description: str
    models: tuple           # (model, size) pairs measured on every device
    cuda_models: tuple      # further (model, size) pairs measured on CUDA only
    ks: tuple               # vectors per call for the batch ops
    dtypes: tuple
    min_run_time: float     # seconds of samples at least, per timed call (torch.utils.benchmark)
    max_run_time: float     # seconds of samples at most, unless the samples are already stable
    timeout_s: float        # a cell (warm-up, timing, memory, forward) past this is recorded as timeout
    ops: tuple = OPS        # the ops measured


SUITES = {suite.name: suite for suite in (
    Suite("quick", "every strategy and op on five zoo models (CPU-friendly sizes), float32, k=8",
          models=(("mlp", "tiny"), ("cnn", "tiny"), ("transformer", "tiny"), ("lstm", "tiny"),
                  ("scalar5", "small")),
          cuda_models=(), ks=(8,), dtypes=("float32",), min_run_time=0.05, max_run_time=0.15, timeout_s=60),
    Suite("full", "every zoo model at small and medium size (and large on CUDA), k in 1, 8, 32, "
                  "float32 and float64",
          models=tuple(itertools.product(zoo.names(), ("small", "medium"))),
          cuda_models=tuple(itertools.product(zoo.names(), ("large",))),
          ks=(1, 8, 32), dtypes=("float32", "float64"), min_run_time=0.2, max_run_time=2.0, timeout_s=120),
    Suite("targets", "the speed targets (gvp-bench targets): the MLP 784-1024-1024-10 on a batch of 64 inputs "
                     "and of 4, J v single, through the model and 16 at once, float32",
          models=(("mlp", "medium"), ("mlp", "medium-b4")), cuda_models=(("mlp", "large"),),
          ks=(16,), dtypes=("float32",), min_run_time=0.3, max_run_time=1.5, timeout_s=30,
          ops=("jvp", "model_jvp", "batch_jvp")),
    Suite("batch", "the batch ops on the tiny mlp and cnn for k in 1, 4, 16, 64, 256: how many products at "
                   "one point pay for a set-up per call (linearize's tracing, jacrev_chunked's J), float32",
          models=(("mlp", "tiny"), ("cnn", "tiny")), cuda_models=(), ks=(1, 4, 16, 64, 256), dtypes=("float32",),
          min_run_time=0.05, max_run_time=0.15, timeout_s=30, ops=BATCH_OPS),
)}


def _choose(kind, requested, valid):
    """``requested`` names (or every valid one when None), refusing unknown names with the valid ones."""
    if requested is None:
        return list(valid)
    unknown = [name for name in requested if name not in valid]
    if unknown:
        raise ValueError(f"unknown {kind} {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
    return list(requested)


def get_suite(name):
    """The suite called ``name``."""
    return SUITES[_choose("suite", [name], SUITES)[0]]


def expand(suite, *, devices=("cpu",), dtypes=None, models=None, ops=None, strategy_names=None, jax=False):
    """The suite's workloads on ``devices``, in a fixed order, narrowed by the filters (None: all).

    ``jax``: also the JAX side-by-side cells (gvp_bench.jax_side), for the models, ops and devices
    JAX has them for; none where JAX is not installed.
    """
    models = _choose("model", models, zoo.names())
    ops = [op for op in _choose("op", ops, OPS) if op in suite.ops]
    strategy_names = _choose("strategy", strategy_names,
                             strategies() + list(raw.STRATEGIES) + (list(jax_side.STRATEGIES) if jax else []))
    dtypes = _choose("dtype", dtypes, DTYPES) if dtypes is not None else list(suite.dtypes)
    devices = _choose("device", devices, DEVICES)
    cells = []
    for device in devices:
        pairs = suite.models + (suite.cuda_models if device == "cuda" else ())
        for dtype, (model, size), op in itertools.product(dtypes, pairs, ops):
            if model not in models:
                continue
            for k in suite.ks if op in BATCH_OPS else (None,):
                cells += [Workload(op, model, size, name, device, dtype, k) for name in strategy_names
                          if framework(name) == "torch" or op in raw.STRATEGIES.get(name, ())
                          or jax_side.measures(name, op, model, device)]
    return cells


def shard(workloads, index, count):
    """The workloads of shard ``index`` (1 to ``count``): a stable hash of each cell's key decides,
    so the shards partition any list of cells the same way on every machine."""
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: the index must be between 1 and {count}")

    def owner(workload):
        digest = hashlib.sha256(repr(workload.key()).encode()).digest()
        return int.from_bytes(digest[:8], "big") % count + 1

    return [workload for workload in workloads if owner(workload) == index]


@dataclass
class Prepared:
    """A cell ready to measure: the product call, its strategy, and the plain forward of the same workload.

    A JAX side-by-side cell (``framework`` "jax") has no strategy object: no workarounds to report,
    and its memory is JAX's own, which torch's counters do not see. Nor has a hand-written torch
    call (``framework`` "torch-raw").
    """

    workload: Workload
    strategy: object
    product: Callable
    forward: Callable
    framework: str = "torch"

    def workarounds(self):
        """The workarounds the strategy needed in its latest call."""
        return list(self.strategy.last_workarounds) if self.strategy is not None else []

    def chunking(self):
        """The chunk size and memory budget of the latest call (gvp_bench.chunking), None where it does not chunk."""
        return dict(chunk_size=getattr(self.strategy, "last_chunk_size", None),
                    memory_budget_bytes=getattr(self.strategy, "last_memory_budget_bytes", None))


def _vectors(op, params, output, k, draw):
    """The vectors op multiplies by: tangents shaped like the params, or cotangents like the output."""
    batch = (k,) if op in BATCH_OPS else ()
    if op == "full_jacobian":
        return ()
    if op.endswith("jvp"):
        return ([draw(batch + tuple(p.shape)) for p in params],)
    return (draw(batch + tuple(output.shape)),)


@functools.cache
def sizes(model, size):
    """The fields of a row that say how big its workload is (auto's results lookup compares them):
    the trainable parameter count and the output size of the zoo model."""
    entry = zoo.build(model, size)
    return dict(parameters=entry.parameter_count, outputs=entry.output_size)


def materials(workload):
    """The zoo model (eval mode) of ``workload`` and the vectors its op multiplies by, drawn from :data:`SEED`."""
    dtype = getattr(torch, workload.dtype)
    entry = zoo.build(workload.model, workload.size, seed=SEED, device=workload.device, dtype=dtype)
    with torch.no_grad():
        output = entry.func()()
    generator = torch.Generator().manual_seed(SEED)

    def draw(shape):
        return torch.randn(shape, generator=generator, dtype=dtype).to(workload.device)

    return entry, _vectors(workload.op, entry.params, output, workload.k, draw)


def framework(strategy_name):
    """``"jax"`` for the JAX side-by-side rows, ``"torch-raw"`` for the hand-written torch calls
    (gvp_bench.bench.raw), ``"torch"`` for the strategies."""
    if strategy_name in raw.STRATEGIES:
        return raw.FRAMEWORK
    return jax_side.FRAMEWORK if strategy_name in jax_side.STRATEGIES else "torch"


def prepare(workload):
    """Build ``workload``'s zoo model (eval mode) and vectors from :data:`SEED`; the calls to measure."""
    if framework(workload.strategy) == jax_side.FRAMEWORK:
        from ..jax_side.cells import prepare as prepare_jax  # imports JAX: only for its cells

        return prepare_jax(workload)
    entry, vectors = materials(workload)
    strategy = None if framework(workload.strategy) == raw.FRAMEWORK else get_strategy(workload.strategy)
    if strategy is None:
        product = functools.partial(raw.BUILDERS[workload.strategy](entry.model), entry.x, *vectors)
    elif workload.op.startswith("model_"):
        product = functools.partial(getattr(strategy, workload.op), entry.model, entry.x, *vectors)
    else:
        product = functools.partial(getattr(strategy, workload.op), entry.func(), entry.params, *vectors)

    @torch.no_grad()
    def forward():
        return entry.model(entry.x)

    return Prepared(workload, strategy, product, forward, framework(workload.strategy))
