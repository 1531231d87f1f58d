"""Checks for your own test suite: "strategy X is still right on my model", in your CI.

:func:`assert_strategies_agree` computes each product with every strategy asked and with a
reference strategy, on the same vectors, and fails listing every product that differs.
:func:`check_conformance` runs the conformance harness on your model (every product, every
accepted form of its vectors, against a float64 finite-difference oracle: see
``gvp-bench conformance --workload``) and fails listing every failing cell. Both fail with an
``AssertionError``, so pytest shows them as test failures, and return what they found (the
products a strategy cannot compute among it, with the reason), so a test can also assert on it.
"""

import torch

from .conformance import own as own_conformance
from .conformance.checks import TOLERANCES
from .conformance.matrix import support_matrix
from .errors import UnsupportedError
from .registry import resolve, strategies as registered
from .validation import check_params
from .workload import CLOSURE_OPS, Workload

BATCH = 3  # vectors per batch product


def _tensors(result):
    """A product's result as a list of tensors, whatever its form (a tensor, a list, a dict)."""
    if isinstance(result, torch.Tensor):
        return [result]
    return list(result.values()) if isinstance(result, dict) else list(result)


def _vectors(op, params, output, generator):
    """The vectors ``op`` multiplies by, drawn from ``generator`` in the params' dtype and device."""
    def draw(shape, like):
        return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype=like.dtype, device=like.device)

    if op == "full_jacobian":
        return ()
    batch = (BATCH,) if op.startswith("batch_") else ()
    if op.endswith("jvp"):
        return ([draw(batch + tuple(p.shape), p) for p in params],)
    return (draw(batch + tuple(output.shape), output),)


def assert_strategies_agree(func, params, *, strategies=None, ops=CLOSURE_OPS, reference="reference_loop",
                            rtol=None, atol=None, allow_unsupported=True, seed=0):
    """Assert that every strategy gives ``reference``'s products of ``func`` at ``params`` (a list or dict).

    ``strategies``: names or Strategy instances (default: every registered strategy); ``ops``: among
    jvp, vjp, batch_jvp, batch_vjp, full_jacobian. Tolerances default to the conformance harness's
    for the params' dtype (relative to the largest reference value). A strategy that cannot compute
    a product (UnsupportedError) passes when ``allow_unsupported``, else fails.

    Returns ``{(strategy name, op): "pass" or "unsupported: <reason>"}``; raises AssertionError
    listing every product that differs, or failed.
    """
    tensors = list(check_params(params))
    unknown = [op for op in ops if op not in CLOSURE_OPS]
    if unknown:
        raise ValueError(f"ops must be among {', '.join(CLOSURE_OPS)}, got {', '.join(map(repr, unknown))}")
    tolerance = dict(TOLERANCES.get(tensors[0].dtype, TOLERANCES[torch.float32]))
    tolerance.update({name: value for name, value in (("rtol", rtol), ("atol", atol)) if value is not None})
    with torch.no_grad():
        output = func()
    generator = torch.Generator().manual_seed(seed)
    vectors = {op: _vectors(op, tensors, output, generator) for op in ops}
    reference = resolve(reference)
    expected = {op: _tensors(getattr(reference, op)(func, params, *vectors[op])) for op in ops}
    outcomes, failures = {}, []
    for strategy in map(resolve, strategies if strategies is not None else registered()):
        label = strategy.name or type(strategy).__name__
        for op in ops:
            try:
                actual = _tensors(getattr(strategy, op)(func, params, *vectors[op]))
                for index, (a, e) in enumerate(zip(actual, expected[op], strict=True)):
                    scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
                    torch.testing.assert_close(a, e, rtol=tolerance["rtol"], atol=tolerance["atol"] * scale,
                                               msg=lambda m, i=index: f"result {i}: {m}")
                outcomes[label, op] = "pass"
            except UnsupportedError as error:
                outcomes[label, op] = f"unsupported: {error.reason}"
                if not allow_unsupported:
                    failures.append(f"{label} {op}: unsupported: {error.reason}")
            except Exception as error:  # a wrong value, shape or form, or a crash: a failure of that product
                outcomes[label, op] = "fail"
                failures.append(f"{label} {op}: {type(error).__name__}: {_first_lines(error)}")
    if failures:
        raise AssertionError(f"{len(failures)} product(s) differ from {reference.name}'s:\n  " + "\n  ".join(failures))
    return outcomes


def check_conformance(target, inputs=None, *, strategies=None, dtypes=None, devices=None, name=None,
                      allow_unsupported=True):
    """Run the conformance harness on ``(model, x)``, ``(func, params)`` or a :class:`gvp_bench.Workload`.

    Every product of every strategy asked (names; default: every registered one) against a float64
    finite-difference oracle: a module in float32 and float64 (or ``dtypes``), a closure in its own
    dtype. Returns the support matrix (one row per cell: strategy, function, dtype, device, status,
    detail); raises AssertionError listing every failing cell (and every unsupported one unless
    ``allow_unsupported``).
    """
    workload = target if isinstance(target, Workload) else Workload(target, inputs, name=name)
    frame = support_matrix(list(own_conformance.cells([workload], strategies, dtypes, devices)))
    bad = frame[(frame.status == "fail") | ((frame.status == "unsupported") & (not allow_unsupported))]
    if len(bad):
        lines = [f"{row.strategy} {row.function} {row.dtype} {row.device}: {row.status}: "
                 f"{str(row.detail).splitlines()[0] if row.detail else ''}" for row in bad.itertuples()]
        raise AssertionError(f"{len(bad)} conformance cell(s) of {workload.name} failed:\n  " + "\n  ".join(lines))
    return frame


def _first_lines(error, count=3):
    return " ".join(line.strip() for line in str(error).splitlines()[:count] if line.strip())
