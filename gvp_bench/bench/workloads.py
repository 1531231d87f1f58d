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
from dataclasses import dataclass, field

import torch

from .. import jax_side, second_order, zoo
from . import raw
from ..registry import get_strategy, strategies
from .cell import HVP_OPS, Prepared, closure, materials

OPS = ("jvp", "vjp", "model_jvp", "model_vjp", "batch_jvp", "batch_vjp", "full_jacobian")
BATCH_OPS = ("batch_jvp", "batch_vjp")
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")


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
    # the user's gvp_bench.Workload this cell measures (named in ``model``); None for a zoo model
    source: object = field(default=None, compare=False, repr=False)

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
    budget_s: float | None = None  # a cell one call of which would not fit this is skipped (bench.budget)


SUITES = {suite.name: suite for suite in (
    Suite("quick", "every strategy and op on the mlp, cnn and transformer at tiny size, the mlp at small size, "
                   "where arithmetic dominates (784-256-256-10), and scalar5, float32, k=8; a cell that cannot be "
                   "measured within its budget of seconds is skipped",
          models=(("mlp", "tiny"), ("mlp", "small"), ("cnn", "tiny"), ("transformer", "tiny"), ("scalar5", "small")),
          cuda_models=(), ks=(8,), dtypes=("float32",), min_run_time=0.05, max_run_time=0.15, timeout_s=60,
          budget_s=3),
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
    Suite("second_order", "Hessian-vector products of ½‖model(x)‖² by every HVP strategy, single and k=8, on "
                          "the tiny mlp and cnn and the small scalar5, float32",
          models=(("mlp", "tiny"), ("cnn", "tiny"), ("scalar5", "small")), cuda_models=(), ks=(8,),
          dtypes=("float32",), min_run_time=0.05, max_run_time=0.15, timeout_s=60, ops=HVP_OPS),
    Suite("scaling", "how cost grows: every strategy and op on the mlp, cnn and transformer at every zoo size, "
                     "float32, k=8; a cell that cannot be measured within its budget of seconds is skipped",
          models=tuple(itertools.product(("mlp", "cnn", "transformer"), zoo.SIZES)), cuda_models=(), ks=(8,),
          dtypes=("float32",), min_run_time=0.05, max_run_time=0.3, timeout_s=120, budget_s=10),
)}


def _family(op):
    """The strategies that compute ``op``: the HVP strategies for the HVP ops, the registered ones otherwise."""
    return second_order.hvp_strategies() if op in HVP_OPS else strategies()


def _batched(op):
    return op in BATCH_OPS or op == "batch_hvp"


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


def expand(suite, *, devices=("cpu",), dtypes=None, models=None, ops=None, strategy_names=None, ks=None, jax=False):
    """The suite's workloads on ``devices``, in a fixed order, narrowed by the filters (None: all; ``ks``
    replaces the suite's vectors per call of the batch ops).

    ``jax``: also the JAX side-by-side cells (gvp_bench.jax_side), for the models, ops and devices
    JAX has them for; none where JAX is not installed.
    """
    models = _choose("model", models, zoo.names())
    ops = [op for op in _choose("op", ops, OPS + HVP_OPS) if op in suite.ops]
    jax_names = list(jax_side.STRATEGIES) if jax else []
    valid_names = list(dict.fromkeys(strategies() + jax_names + second_order.hvp_strategies() + list(raw.STRATEGIES)))
    chosen_names = _choose("strategy", strategy_names, valid_names)
    dtypes = _choose("dtype", dtypes, DTYPES) if dtypes is not None else list(suite.dtypes)
    devices = _choose("device", devices, DEVICES)
    cells = []
    for device in devices:
        pairs = suite.models + (suite.cuda_models if device == "cuda" else ())
        for dtype, (model, size), op in itertools.product(dtypes, pairs, ops):
            if model not in models:
                continue
            names = [name for name in chosen_names
                     if name in _family(op) + jax_names or op in raw.STRATEGIES.get(name, ())]
            for k in (ks or suite.ks) if _batched(op) else (None,):
                cells += [Workload(op, model, size, name, device, dtype, k) for name in names
                          if framework(name) != jax_side.FRAMEWORK or jax_side.measures(name, op, model, device)]
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


@functools.cache
def sizes(model, size):
    """The fields of a row that say how big its workload is (auto's results lookup compares them):
    the trainable parameter count and the output size of the zoo model."""
    entry = zoo.build(model, size)
    return dict(parameters=entry.parameter_count, outputs=entry.output_size)


def measured_sizes(workload):
    """:func:`sizes` of the cell's zoo model, or of the user's workload it measures."""
    if workload.source is None:
        return sizes(workload.model, workload.size)
    return dict(parameters=workload.source.parameter_count, outputs=workload.source.output_size)


def framework(strategy_name):
    """``"jax"`` for the JAX side-by-side rows, ``"torch-raw"`` for the hand-written torch calls
    (gvp_bench.bench.raw), ``"torch"`` for the strategies."""
    if strategy_name in raw.STRATEGIES:
        return raw.FRAMEWORK
    return jax_side.FRAMEWORK if strategy_name in jax_side.STRATEGIES else "torch"


def prepare(workload):
    """Build ``workload``'s zoo model (eval mode) and vectors (gvp_bench.bench.cell); the calls to measure."""
    if framework(workload.strategy) == jax_side.FRAMEWORK:
        from ..jax_side.cells import prepare as prepare_jax  # imports JAX: only for its cells

        return prepare_jax(workload)
    entry, vectors = materials(workload)
    if workload.op in HVP_OPS:
        return Prepared(workload, None, _hvp_product(workload, entry, vectors), _forward(entry))
    if framework(workload.strategy) == raw.FRAMEWORK:
        product = functools.partial(raw.BUILDERS[workload.strategy](entry.model), entry.x, *vectors)
        return Prepared(workload, None, product, _forward(entry), raw.FRAMEWORK)
    strategy = get_strategy(workload.strategy)
    if workload.op.startswith("model_"):
        product = functools.partial(getattr(strategy, workload.op), entry.model, entry.x, *vectors)
    else:
        product = functools.partial(getattr(strategy, workload.op), closure(entry), entry.params, *vectors)
    if workload.source is not None:
        return Prepared(workload, strategy, product, entry.forward)

    return Prepared(workload, strategy, product, _forward(entry))


def _forward(entry):
    @torch.no_grad()
    def forward():
        return entry.model(entry.x)
    return forward


def _hvp_product(workload, entry, vectors):
    """The HVP op's call: gvp_bench.hvp / batch_hvp of ½‖model(x)‖² by the workload's HVP strategy."""
    output = entry.func()

    def loss():
        return output().pow(2).sum() / 2

    return functools.partial(getattr(second_order, workload.op), loss, entry.params, *vectors,
                             strategy=workload.strategy)
