"""A JAX side-by-side benchmark cell: the workload's zoo model, weights and vectors (the very
ones its torch rows use, drawn from the same seed), converted to JAX, and the jitted product
and forward pass to time.

Both calls end in ``jax.block_until_ready``: JAX dispatches asynchronously, so a call's time
is the computation's. The forward pass is compiled here, before it is timed; the product is
compiled by the runner's first (warm-up) call, which the row keeps as ``first_call_s``.
"""

import jax

from ..bench.cell import Prepared, materials
from . import FRAMEWORK, measures
from .models import convert, to_jax
from .products import jitted


def prepare(workload):
    """The calls of a JAX cell (a :class:`gvp_bench.bench.cell.Prepared` without strategy object)."""
    if not measures(workload.strategy, workload.op, workload.model, workload.device):
        raise ValueError(f"JAX side by side has no cell {workload}")
    entry, vectors = materials(workload)
    model = convert(entry, workload.device)
    arguments = jax.tree.map(lambda tensor: to_jax(tensor, workload.device), vectors)
    product = jitted(workload.strategy, workload.op, model.apply)
    forward = jax.jit(model.apply)

    def call_product():
        return jax.block_until_ready(product(model.params, model.x, *arguments))

    def call_forward():
        return jax.block_until_ready(forward(model.params, model.x))

    call_forward()
    return Prepared(workload, None, call_product, call_forward, framework=FRAMEWORK)
