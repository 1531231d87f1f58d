"""JAX side by side: the zoo's mlp, cnn, scalar5 and elementwise written in JAX, measured in the
same ``gvp-bench run`` as the PyTorch strategies (``pip install -e ".[jax]"``).

Nothing here is a strategy of the API: these rows answer "would JAX be faster on this
workload?" and are never candidates for ``auto`` or ``gvp-bench recommend``. Their results rows
have ``framework`` ``"jax"`` and one of :data:`STRATEGIES` as their strategy:

- ``jax.jit``: ``jax.jit`` of ``jax.jvp`` (jvp, model_jvp), of ``jax.vjp`` (vjp, model_vjp), and of
  ``jax.vmap`` over them (batch_jvp, batch_vjp);
- ``jax.jacfwd`` and ``jax.jacrev``: ``jax.jit`` of each, for full_jacobian.

When JAX wins: where eager PyTorch is bound by per-operator overhead (small models, a GPU's
launches), once the compilation is paid: jax.jit compiles the whole product into one program,
where eager PyTorch dispatches operator by operator. The report puts the JAX rows beside the
fastest PyTorch strategy of each cell (docs/jax.md).

The modules: :mod:`.models` (the four models in JAX, their weights converted from the torch
model of the same seed), :mod:`.products` (the jitted products), :mod:`.cells` (a benchmark cell
built from the same workload, weights and vectors as the torch rows). Only this module is
imported without JAX installed.
"""

import functools
import importlib.util
import os
import sys

# Set before any module of this package imports JAX (this one runs first): JAX's GPU backend then allocates
# on demand instead of taking most of the device's memory up front, which would leave little to torch in the
# same process (its memory budgets are fractions of what is free).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

INSTALL_CUDA = "pip install -e '.[jax-cuda]' (jax[cuda13], a GPU jaxlib)"

FRAMEWORK = "jax"
MODELS = ("mlp", "cnn", "scalar5", "elementwise")
# strategy -> the ops it measures
STRATEGIES = {
    "jax.jit": ("jvp", "vjp", "model_jvp", "model_vjp", "batch_jvp", "batch_vjp"),
    "jax.jacfwd": ("full_jacobian",),
    "jax.jacrev": ("full_jacobian",),
}


def available():
    """Whether JAX can be imported here."""
    return importlib.util.find_spec("jax") is not None


@functools.cache
def devices():
    """The gvp-bench devices ("cpu", "cuda") JAX has a backend for here; none without JAX."""
    if not available():
        return ()
    from .models import jax_device

    found = []
    for device in ("cpu", "cuda"):
        try:
            jax_device(device)
        except RuntimeError:
            continue
        found.append(device)
    return tuple(found)


def missing_cuda_backend(devices_measured):
    """Why the JAX rows on CUDA are left out, or None: JAX is installed and the run measures CUDA, but its
    jaxlib has no GPU backend (the CPU jaxlib from PyPI)."""
    if "cuda" not in devices_measured or not available() or "cuda" in devices():
        return None
    return f"JAX here has no CUDA backend (a CPU jaxlib), so no JAX rows on cuda; for them: {INSTALL_CUDA}"


def measures(strategy, op, model, device):
    """Whether JAX side by side has a row for this cell."""
    return op in STRATEGIES.get(strategy, ()) and model in MODELS and device in devices()


def pool_threads():
    """The threads of XLA's CPU pool: it is sized by the CPUs this process may run on when JAX is
    imported, whatever torch's thread setting (see :func:`match_threads`)."""
    return len(os.sched_getaffinity(0))


def match_threads(threads):
    """Give XLA's CPU pool as many threads as torch has: before JAX is imported, pin this process to
    ``threads`` of the CPUs it may run on (as ``taskset`` would), since XLA sizes its pool by them.
    (The XLA flags ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` left
    three threads busy in jax.jit matrix products on the CPU.) Returns the CPUs the process could
    run on before, to restore after the run; None where it pinned nothing (JAX already imported,
    or no fewer threads than CPUs)."""
    cpus = sorted(os.sched_getaffinity(0))
    if "jax" in sys.modules or threads >= len(cpus):
        return None
    os.sched_setaffinity(0, cpus[:threads])
    return cpus
