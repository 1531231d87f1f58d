"""One conformance cell: a strategy, a case, a function, a dtype and a device, against the oracle.

Each function is called with every accepted form of its vectors (a tensor for one param, a list,
a flat vector; cotangents shaped like the output or flat) and its results are checked for type,
shape, dtype, device, no autograd graph when create_graph is False, and values. VJPs are also
checked by the adjoint identity <u, J v> = <Jᵀu, v>; model cases check the buffers are unchanged;
second-order cases check create_graph=True results by differentiating them.
"""

from dataclasses import dataclass

import torch

from ..errors import UnsupportedError
from ..precision import strict_fp32
from ..registry import get_strategy
from ..second_order import batch_hvp, hvp
from .cases import HVP_FUNCTIONS
from .oracle import gradient_of_contraction, oracle

TOLERANCES = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-6, atol=1e-8)}
SECOND_ORDER_TOLERANCES = {torch.float32: dict(rtol=1e-3, atol=1e-4), torch.float64: dict(rtol=1e-5, atol=1e-6)}
BATCH = 3


@dataclass
class Outcome:
    status: str  # "pass", "fail", "unsupported" or "refused"
    detail: str = ""


def run_cell(strategy_name, case, function, dtype, device):
    """Check one cell; the outcome says pass, fail (with what differed), unsupported (with why) or refused (a
    case every strategy must refuse, refused with the expected error).

    The cell runs with TF32 off (gvp_bench.precision.strict_fp32): float32 results are compared with a
    float64 oracle at tolerances TF32's 10-bit mantissa cannot meet. The previous settings are restored."""
    try:
        with strict_fp32():
            if case.refused is not None:
                return _check_refused(get_strategy(strategy_name), case, function, dtype, device)
            if function in HVP_FUNCTIONS:
                _check_hvp(strategy_name, case, function, dtype, device)
                return Outcome("pass")
            _check_cell(get_strategy(strategy_name), case, function, dtype, device)
    except UnsupportedError as error:
        return Outcome("unsupported", error.reason)
    except AssertionError as error:
        return Outcome("fail", str(error))
    except Exception as error:  # a crash is a failure of the cell, reported with its type
        return Outcome("fail", f"{type(error).__name__}: {error}")
    return Outcome("pass")


def _close(what, actual, expected, dtype, tolerances=TOLERANCES):
    tolerance = tolerances[dtype]
    expected = expected.double()
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual.detach().double().cpu(), expected.cpu(), rtol=tolerance["rtol"],
                               atol=tolerance["atol"] * scale, msg=lambda m: f"{what}: {m}")


def _check_result(what, result, shape, dtype, device, create_graph):
    assert isinstance(result, torch.Tensor), f"{what}: expected a tensor, got {type(result).__name__}"
    assert tuple(result.shape) == tuple(shape), f"{what}: expected shape {tuple(shape)}, got {tuple(result.shape)}"
    assert result.dtype == dtype, f"{what}: expected dtype {dtype}, got {result.dtype}"
    assert result.device.type == torch.device(device).type, f"{what}: expected device {device}, got {result.device}"
    if not create_graph:
        assert not result.requires_grad, f"{what}: create_graph=False but the result carries an autograd graph"


def _split(flat, params):
    """Cut the last dimension of flat into pieces shaped like params."""
    lead = tuple(flat.shape[:-1])
    pieces = flat.split([p.numel() for p in params], dim=-1)
    return [piece.reshape(lead + tuple(p.shape)) for piece, p in zip(pieces, params)]


def _tangent_forms(flat, params):
    forms = {"list": _split(flat, params), "flat": flat}
    if len(params) == 1:
        forms["tensor"] = forms["list"][0]
    return forms


def _cotangent_forms(flat, shape):
    return {"shaped": flat.reshape(tuple(flat.shape[:-1]) + tuple(shape)), "flat": flat}


def _as_list(result, params, what):
    if len(params) == 1:
        assert isinstance(result, torch.Tensor), f"{what}: one param gives a bare tensor, got {type(result).__name__}"
        return [result]
    assert isinstance(result, (list, tuple)) and len(result) == len(params), \
        f"{what}: expected a list of {len(params)} tensors, got {type(result).__name__}"
    return list(result)


class _Cell:
    """The inputs of one cell, drawn from a fixed seed, and the products the oracle expects."""

    def __init__(self, strategy, case, dtype, device):
        self.strategy, self.case, self.dtype, self.device = strategy, case, dtype, device
        self.problem = case.problem(dtype, device)
        self.jacobian, self.output_shape = oracle(case, torch.device(device).type)
        outputs, total = self.jacobian.shape
        generator = torch.Generator().manual_seed(1234)
        draw = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
        self.v, self.u, self.vs, self.us = draw(total), draw(outputs), draw(BATCH, total), draw(BATCH, outputs)

    def cast(self, tensor):
        return tensor.to(dtype=self.dtype, device=self.device)

    def call(self, function, vector, create_graph=False):
        """The strategy's function on this problem with vector (None for full_jacobian)."""
        method = getattr(self.strategy, function)
        problem = self.problem
        if function.startswith("model_"):
            with self.case.seeded():
                return method(problem.model, problem.x, vector, create_graph)
        if function == "full_jacobian":
            return method(problem.func, problem.params, create_graph)
        return method(problem.func, problem.params, vector, create_graph)

    def check(self, function):
        params, jacobian, shape = self.problem.params, self.jacobian, self.output_shape
        outputs = jacobian.shape[0]
        kind = function.removeprefix("model_")
        if kind == "jvp":
            for form, v in _tangent_forms(self.cast(self.v), params).items():
                result = self.call(function, v)
                _check_result(f"{function} with {form} v", result, shape, self.dtype, self.device, False)
                _close(f"{function} with {form} v", result, (jacobian @ self.v).reshape(shape), self.dtype)
        elif kind == "vjp":
            expected = _split(self.u @ jacobian, params)
            for form, u in _cotangent_forms(self.cast(self.u), shape).items():
                result = _as_list(self.call(function, u), params, f"{function} with {form} v")
                for index, (r, e, p) in enumerate(zip(result, expected, params)):
                    what = f"{function} with {form} v, params[{index}]"
                    _check_result(what, r, p.shape, self.dtype, self.device, False)
                    _close(what, r, e, self.dtype)
            self.check_adjoint(function)
        elif kind == "batch_jvp":
            expected = (self.vs @ jacobian.T).reshape((BATCH,) + shape)
            for form, vs in _tangent_forms(self.cast(self.vs), params).items():
                result = self.call(function, vs)
                _check_result(f"{function} with {form} vs", result, (BATCH,) + shape, self.dtype, self.device, False)
                _close(f"{function} with {form} vs", result, expected, self.dtype)
        elif kind == "batch_vjp":
            expected = _split(self.us @ jacobian, params)
            for form, us in _cotangent_forms(self.cast(self.us), shape).items():
                result = self.call(function, us)
                assert isinstance(result, (list, tuple)) and len(result) == len(params), \
                    f"{function}: expected a list of {len(params)} tensors, got {type(result).__name__}"
                for index, (r, e, p) in enumerate(zip(result, expected, params)):
                    what = f"{function} with {form} vs, params[{index}]"
                    _check_result(what, r, (BATCH,) + tuple(p.shape), self.dtype, self.device, False)
                    _close(what, r, e, self.dtype)
        else:
            result = self.call(function, None)
            assert isinstance(result, (list, tuple)) and len(result) == len(params), \
                f"{function}: expected a list of {len(params)} tensors, got {type(result).__name__}"
            for index, (r, e, p) in enumerate(zip(result, _split(jacobian, params), params)):
                what = f"{function}, params[{index}]"
                _check_result(what, r, (outputs,) + tuple(p.shape), self.dtype, self.device, False)
                _close(what, r, e, self.dtype)

    def check_adjoint(self, function):
        """<u, J v> = <Jᵀu, v> with the strategy's own jvp and vjp."""
        jvp_function = function.replace("vjp", "jvp")
        try:
            jv = self.call(jvp_function, self.cast(self.v)).reshape(-1)
        except UnsupportedError:  # no J v to compare with; the VJP itself was checked against the oracle
            return
        vj = _as_list(self.call(function, self.cast(self.u)), self.problem.params, function)
        left = (self.cast(self.u) * jv).sum()
        right = sum((g * v).sum() for g, v in zip(vj, _split(self.cast(self.v), self.problem.params)))
        _close(f"adjoint identity <u, J v> = <Jᵀu, v> ({jvp_function}, {function})", left.reshape(1),
               right.reshape(1).double(), self.dtype)

    def check_second_order(self, function):
        """create_graph=True: the gradient of <W, result> matches finite differences of the oracle."""
        params, jacobian = self.problem.params, self.jacobian
        outputs, total = jacobian.shape
        kind = function.removeprefix("model_")
        weights = torch.Generator().manual_seed(99)
        draw = lambda *shape: torch.randn(*shape, generator=weights, dtype=torch.float64)  # noqa: E731
        if kind == "jvp":
            w = draw(outputs)
            results, contraction = [self.call(function, self.cast(self.v), True)], torch.outer(w, self.v)
            weights_flat = [w]
        elif kind == "vjp":
            w = draw(total)
            results = _as_list(self.call(function, self.cast(self.u), True), params, function)
            contraction, weights_flat = torch.outer(self.u, w), _split(w, params)
        elif kind == "batch_jvp":
            w = draw(BATCH, outputs)
            results, contraction, weights_flat = [self.call(function, self.cast(self.vs), True)], w.T @ self.vs, [w]
        elif kind == "batch_vjp":
            w = draw(BATCH, total)
            results = list(self.call(function, self.cast(self.us), True))
            contraction, weights_flat = self.us.T @ w, _split(w, params)
        else:
            w = draw(outputs, total)
            results, contraction, weights_flat = list(self.call(function, None, True)), w, _split(w, params)
        contracted = sum((r.reshape(-1) * self.cast(wf).reshape(-1)).sum() for r, wf in zip(results, weights_flat))
        if contracted.requires_grad:
            gradient = torch.autograd.grad(contracted, params, allow_unused=True, materialize_grads=True)
            actual = torch.cat([g.reshape(-1) for g in gradient])
        else:
            actual = torch.zeros(total, dtype=self.dtype)
        expected = gradient_of_contraction(self.case, torch.device(self.device).type, contraction)
        _close(f"{function} with create_graph=True, gradient of <W, result>", actual, expected, self.dtype,
               SECOND_ORDER_TOLERANCES)


def _buffers(problem):
    return {name: b.clone() for name, b in problem.model.named_buffers()} if problem.model is not None else {}


def _check_cell(strategy, case, function, dtype, device):
    cell = _Cell(strategy, case, dtype, device)
    before = _buffers(cell.problem)
    cell.check(function)
    if case.second_order:
        cell.check_second_order(function)
    for name, buffer in _buffers(cell.problem).items():
        assert torch.equal(buffer, before[name]), f"{function} changed the model's buffer {name!r}"


def _check_refused(strategy, case, function, dtype, device):
    """A case every strategy must refuse: the function raises the case's error type with its words."""
    error_type, words = case.refused
    problem = case.problem(dtype, device)
    params = problem.params
    tangents = [torch.zeros_like(p) for p in params]
    with torch.no_grad():
        cotangent = torch.zeros_like(problem.func())
    arguments = {
        "jvp": (problem.func, params, tangents), "vjp": (problem.func, params, cotangent),
        "batch_jvp": (problem.func, params, [t.unsqueeze(0) for t in tangents]),
        "batch_vjp": (problem.func, params, cotangent.unsqueeze(0)), "full_jacobian": (problem.func, params),
        "model_jvp": (problem.model, problem.x, tangents), "model_vjp": (problem.model, problem.x, cotangent),
    }
    try:
        getattr(strategy, function)(*arguments[function])
    except error_type as error:
        assert words in str(error), f"{function} raised {error_type.__name__} without {words!r}: {error}"
        return Outcome("refused", f"{error_type.__name__}: {error}")
    raise AssertionError(f"{function} did not raise {error_type.__name__} ({words})")


def _check_hvp(strategy_name, case, function, dtype, device):
    """hvp / batch_hvp of a scalar case: each H v is the gradient of <v, ∇f> by finite differences of the
    oracle's Jacobian (the gradient), with every form of v."""
    cell = _Cell(None, case, dtype, device)
    params = cell.problem.params
    expected = torch.stack([gradient_of_contraction(case, torch.device(device).type, row.reshape(1, -1))
                            for row in cell.vs])
    if function == "hvp":
        for form, v in _tangent_forms(cell.cast(cell.vs[0]), params).items():
            result = _as_list(hvp(cell.problem.func, params, v, strategy=strategy_name), params, f"hvp with {form} v")
            for index, (r, e, p) in enumerate(zip(result, _split(expected[0], params), params)):
                what = f"hvp with {form} v, params[{index}]"
                _check_result(what, r, p.shape, dtype, device, False)
                _close(what, r, e, dtype, SECOND_ORDER_TOLERANCES)
        return
    for form, vs in _tangent_forms(cell.cast(cell.vs), params).items():
        result = batch_hvp(cell.problem.func, params, vs, strategy=strategy_name)
        for index, (r, e, p) in enumerate(zip(result, _split(expected, params), params)):
            what = f"batch_hvp with {form} vs, params[{index}]"
            _check_result(what, r, (BATCH,) + tuple(p.shape), dtype, device, False)
            _close(what, r, e, dtype, SECOND_ORDER_TOLERANCES)
