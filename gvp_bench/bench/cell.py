"""One benchmark cell's materials: the zoo model, weights and vectors drawn from :data:`SEED`, and
:class:`Prepared`, the calls to measure. Shared by the torch cells (gvp_bench.bench.workloads) and
the JAX side-by-side cells (gvp_bench.jax_side.cells), which import it and nothing above it.
"""

from dataclasses import dataclass
from typing import Callable

import torch

from .. import zoo

SEED = 0  # weights, inputs and vectors of every cell are drawn from it
# Hessian-vector products (gvp_bench.hvp / batch_hvp) of the loss ½‖model(x)‖², by the HVP strategies.
HVP_OPS = ("hvp", "batch_hvp")


@dataclass
class Prepared:
    """A cell ready to measure: the product call, its strategy, and the plain forward of the same workload.

    A JAX side-by-side cell (``framework`` "jax") has no strategy object: no workarounds to report,
    and its memory is JAX's own, which torch's counters do not see. Nor has an HVP cell (its strategy is
    a name of gvp_bench.second_order), nor a hand-written torch call (``framework`` "torch-raw",
    gvp_bench.bench.raw).
    """

    workload: object  # the gvp_bench.bench.workloads.Workload measured
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
    batch = (k,) if op.startswith("batch_") else ()
    if op == "full_jacobian":
        return ()
    if op.endswith("jvp") or op in HVP_OPS:
        tensors = params.values() if isinstance(params, dict) else params  # a user's params may be a dict
        return ([draw(batch + tuple(p.shape)) for p in tensors],)
    return (draw(batch + tuple(output.shape)),)


def closure(entry):
    """The zero-argument closure of a zoo model (a new one per call) or of a user's workload."""
    return entry.func() if isinstance(entry, zoo.ZooModel) else entry.func


def materials(workload):
    """The zoo model (eval mode) of ``workload``, or the user's workload in the cell's dtype and device, and
    the vectors its op multiplies by, drawn from :data:`SEED`."""
    dtype = getattr(torch, workload.dtype)
    if workload.source is not None:
        entry = workload.source.to(workload.device, dtype)
    else:
        entry = zoo.build(workload.model, workload.size, seed=SEED, device=workload.device, dtype=dtype)
    with torch.no_grad():
        output = closure(entry)()
    generator = torch.Generator().manual_seed(SEED)

    def draw(shape):
        return torch.randn(shape, generator=generator, dtype=dtype).to(workload.device)

    return entry, _vectors(workload.op, entry.params, output, workload.k, draw)
