"""Synthetic results files, as ``gvp-bench run`` writes them, for the report, compare and recommend tests.

:func:`cells` draws a small suite from a numpy seed: three models, every strategy, every op, a
cost model in forward passes, lognormal timing noise, and the failures a real run has
(unsupported JVPs on the transformer, a timeout, an out-of-memory and an error). :func:`write`
stores cells with :class:`gvp_bench.results.ResultsWriter`, so the files are the real format.
"""

import numpy as np

from gvp_bench.results import ResultsWriter, new_header

MACHINE = dict(cpu="AMD EPYC 7763 64-Core Processor", cpu_cores=2, cpu_usable=2, gpu=None, gpu_count=0,
               torch="2.14.1", python="3.12.3", platform="Linux-6.8-x86_64", git_commit="0" * 40, threads=2)
FORWARD_S = {"mlp": 2e-3, "cnn": 5e-3, "transformer": 3e-3}
SIZES = {"mlp": ("tiny", "small"), "cnn": ("small",), "transformer": ("small",)}
INPUT_BYTES = {"mlp": 2 ** 20, "cnn": 4 * 2 ** 20, "transformer": 3 * 2 ** 20}
# per strategy: (cost of one product in forward passes, memory factor, extra memory factor per tangent)
STRATEGIES = {
    "double_backward": (4.0, 3.0, 1.0), "forward_dual": (2.5, 1.5, 0.1), "func_vmap": (2.8, 2.0, 1.5),
    "jacrev_chunked": (8.0, 6.0, 0.3), "reference_loop": (30.0, 3.0, 0.1),
    "autograd_functional": (5.0, 3.5, 1.0), "auto": (2.6, 1.5, 0.1),
}
OPS = ("jvp", "vjp", "model_jvp", "model_vjp", "batch_jvp", "batch_vjp", "full_jacobian")
KS = (4, 16)
RUNS = 15


def _failure(op, model, size, strategy, k):
    """The status and reason of a cell that does not run, or None."""
    if model == "transformer" and op in ("jvp", "model_jvp", "batch_jvp") and strategy != "double_backward" \
            and strategy != "auto":
        return "unsupported", "aten::_transformer_encoder_layer_fwd has no forward-mode AD formula"
    if strategy == "reference_loop" and op == "full_jacobian" and model == "cnn":
        return "timeout", "over the 60 s budget of a cell"
    if strategy == "jacrev_chunked" and op == "batch_vjp" and model == "cnn" and k == 16:
        return "oom", "out of memory: tried to allocate 3.00 GiB"
    if strategy == "autograd_functional" and op == "full_jacobian" and model == "transformer":
        return "error", "RuntimeError: vmap: inplace arithmetic(self, *extra_args) is not possible"
    return None


def _workloads(models):
    for model in models:
        for size in SIZES[model]:
            for op in OPS:
                for k in (KS if op.startswith("batch") else (None,)):
                    yield op, model, size, k


def ok_row(op, model, size, strategy, median, *, rng, noise=0.2, k=None, peak_bytes=2 ** 20, forward_s=1e-3,
           device="cpu", dtype="float32"):
    """A measured cell whose RUNS samples are lognormal around ``median`` with sigma ``noise``."""
    samples = median * np.exp(rng.normal(0, noise, RUNS))
    q1, q3 = np.percentile(samples, [25, 75])
    return dict(op=op, model=model, size=size, strategy=strategy, device=device, dtype=dtype, k=k, status="ok",
                samples_s=samples.tolist(), median_s=float(np.median(samples)), iqr_s=float(q3 - q1), runs=RUNS,
                peak_bytes=int(peak_bytes), forward_median_s=forward_s,
                forward_ratio=float(np.median(samples)) / forward_s, threads=2, workarounds=[])


def cells(seed=0, drift=1.0, cell_noise=0.0, sample_noise=0.2, models=tuple(SIZES)):
    """The rows of one synthetic run of ``models``. ``drift`` scales every time (the machine's speed that day),
    ``cell_noise`` is the lognormal sigma of a per-cell shift (load that comes and goes between
    cells), ``sample_noise`` the lognormal sigma of the samples within a cell."""
    rng = np.random.default_rng(seed)
    rows = []
    for op, model, size, k in _workloads(models):
        scale = 0.25 if size == "tiny" else 1.0
        forward = FORWARD_S[model] * scale * drift
        products = k or (40 * scale if op == "full_jacobian" else 1)
        for strategy, (cost, memory, per_tangent) in STRATEGIES.items():
            failure = _failure(op, model, size, strategy, k)
            if failure:
                rows.append(dict(op=op, model=model, size=size, strategy=strategy, device="cpu", dtype="float32",
                                 k=k, status=failure[0], error=failure[1], threads=2, forward_median_s=forward))
                continue
            median = forward * cost * products ** 0.8 * float(np.exp(rng.normal(0, cell_noise)))
            rows.append(ok_row(op, model, size, strategy, median, rng=rng, noise=sample_noise, k=k,
                               peak_bytes=INPUT_BYTES[model] * scale * (memory + per_tangent * products),
                               forward_s=forward))
    return rows


def write(path, rows, suite="quick", machine=MACHINE):
    """Store ``rows`` as one results file at ``path``."""
    with ResultsWriter(path, new_header(machine, suite)) as writer:
        for row in rows:
            writer.write(row)
    return path


def slower(rows, factor, **key):
    """A copy of ``rows`` with the samples of the one cell matching ``key`` ``factor`` times slower."""
    changed = []
    for row in rows:
        row = dict(row)
        if all(row.get(name) == value for name, value in key.items()):
            row["samples_s"] = [value * factor for value in row["samples_s"]]
            row["median_s"] *= factor
            row["iqr_s"] *= factor
            row["forward_ratio"] *= factor
        changed.append(row)
    return changed


PARAMETERS = {"tiny": 155, "small": 269_322, "medium": 1_863_690}  # the zoo mlp's, at three sizes
OVERHEAD_S = {"double_backward": 4e-4, "forward_dual": 1e-4, "func_vmap": 3e-4, "reference_loop": 2e-4}


def scaling_cells(seed=0, ops=("jvp", "vjp", "full_jacobian")):
    """The rows of a synthetic scaling run of the mlp over three sizes: each strategy's time is its cost in
    forward passes (:data:`STRATEGIES`) plus a fixed overhead per call, the forward pass grows with the
    parameters, so the forward ratios close up as the model grows; reference_loop's Jacobian of the
    largest size is skipped over the time budget."""
    rng = np.random.default_rng(seed)
    rows = []
    for size, parameters in PARAMETERS.items():
        forward = 2e-5 + parameters * 2e-9
        for op in ops:
            products = 10 if op == "full_jacobian" else 1
            for strategy, overhead in OVERHEAD_S.items():
                if strategy == "reference_loop" and op == "full_jacobian" and size == "medium":
                    rows.append(dict(op=op, model="mlp", size=size, strategy=strategy, device="cpu", dtype="float32",
                                     status="skipped", parameters=parameters, threads=2,
                                     error="one call takes 2.1 s: measuring it takes 4 calls at the least, past "
                                           "the cell budget of 3 s"))
                    continue
                median = products * (forward * STRATEGIES[strategy][0] + overhead)
                row = ok_row(op, "mlp", size, strategy, median, rng=rng, forward_s=forward,
                             peak_bytes=4 * parameters * (1 + STRATEGIES[strategy][1] * products / 10))
                rows.append(dict(row, parameters=parameters))
    return rows
