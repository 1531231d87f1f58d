"""Which strategies ``auto`` may time or pick for a workload: the hopeless ones and those over the
memory budget are left out before anything runs.

Work: a strategy whose algorithm needs more than :data:`WORK_RATIO` times the products (forward
or backward passes, batched or not) of the least demanding candidate cannot win, and its one
warm-up call could take very long (forward_dual's Jacobian of a million parameters is a million
forward passes), so it is not timed. The ratio is generous because on small models a batched
(vmapped) product costs far less than a pass per row. ``jacrev_chunked`` builds J from M
backward passes whatever the product; ``forward_dual``'s Jacobian takes P forward passes, the
others' M backward passes; a batch takes k products and a single product one. (reference_loop,
the slow baseline by construction, and linearize, which traces on every call, are never
candidates; auto leaves them out.)

Memory: what a strategy holds beyond its inputs and its result, estimated from the sizes:
``jacrev_chunked`` materialises J (M x P elements) for every product but the Jacobian itself;
the Jacobians of ``autograd_functional``, ``compiled`` and ``cuda_graphs`` build the M x M
identity as cotangents (``func_vmap`` and ``double_backward`` build it in chunks within their own
memory budget, gvp_bench.chunking).
A candidate whose estimate exceeds the budget is left out; on CUDA, calibration also measures
each candidate's peak (see calibration.py).
"""

WORK_RATIO = 32
_VMAPPED_JACOBIANS = ("func_vmap", "double_backward", "autograd_functional", "compiled", "cuda_graphs")
# the whole M x M identity at once (compiled and cuda_graphs: func_vmap's Jacobian, unchunked)
_IDENTITY_JACOBIANS = ("autograd_functional", "compiled", "cuda_graphs")


def _work(name, workload):
    """Products ``name`` computes for the workload (strategies it does not know: the fewest)."""
    fewest = min(workload.outputs, workload.parameters) if workload.product == "full_jacobian" else workload.batch
    if name == "jacrev_chunked":
        return workload.outputs
    if name == "forward_dual" and workload.product == "full_jacobian":
        return workload.parameters
    if name in _VMAPPED_JACOBIANS and workload.product == "full_jacobian":
        return workload.outputs
    return fewest


def extra_memory(name, workload):
    """Bytes ``name`` holds beyond the inputs and the result, as far as the sizes tell."""
    elements = 0
    if name == "jacrev_chunked" and workload.product != "full_jacobian":
        elements = workload.outputs * workload.parameters
    elif name in _IDENTITY_JACOBIANS and workload.product == "full_jacobian":
        elements = workload.outputs ** 2
    return elements * workload.itemsize


def _gigabytes(count):
    return f"{count / 2 ** 30:.3g} GiB"


def select(names, workload, budget):
    """The names worth trying, in the given order, and {name: why} for those left out."""
    work = {name: _work(name, workload) for name in names}
    least = max(min(work.values(), default=1), 1)
    kept, left_out = [], {}
    for name in names:
        needs = extra_memory(name, workload)
        if work[name] > WORK_RATIO * least:
            left_out[name] = f"{work[name]} products against {least}"
        elif needs > budget:
            left_out[name] = f"needs about {_gigabytes(needs)}, over the memory budget of {_gigabytes(budget)}"
        else:
            kept.append(name)
    return kept, left_out
