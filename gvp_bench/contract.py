"""The contract every strategy keeps, and the checks that make every strategy keep it.

A strategy subclasses :class:`Strategy` and implements five products on arguments that are
already checked and normalised (``_jvp``, ``_vjp``, ``_batch_jvp``, ``_batch_vjp``,
``_full_jacobian``). The seven public functions, with the documented signatures, are defined
here once: they validate the input (the same error types from every strategy), derive
``model_jvp`` / ``model_vjp`` from a closure over the model, turn torch's missing-formula
errors into :class:`~gvp_bench.errors.UnsupportedError`, and detach results when
``create_graph`` is False.
"""

import abc

import torch

from .errors import translate_missing_rules
from .validation import (
    check_batch_tangents,
    check_func,
    check_model,
    check_params,
    check_tangents,
)


def model_closure(model, x):
    """``func`` for model_jvp / model_vjp: ``model(x)`` with the model's buffers protected.

    The call runs on fresh copies of the buffers, so whatever it updates in place (BatchNorm
    running statistics in train mode) lands on the copies: the model's buffers are exactly as
    before, and torch.func transforms never see a captured tensor mutated.
    """
    buffers = dict(model.named_buffers())

    def call_model():
        if not buffers:
            return model(x)
        copies = {name: buffer.clone() for name, buffer in buffers.items()}
        return torch.func.functional_call(model, copies, (x,), strict=False)

    return call_model


def _finish(results, create_graph):
    if create_graph:
        return results
    if isinstance(results, torch.Tensor):
        return results.detach()
    return [r.detach() for r in results]


class Strategy(abc.ABC):
    """One way of computing J v, vᵀJ and J for ``func``, a zero-argument closure over ``params``.

    Subclasses set ``name`` and implement the five products below; they receive params as a
    tuple, JVP tangents as a tuple matching params (batches with the batch dimension first),
    and VJP cotangents raw, to check with ``check_cotangent`` once they know func()'s output.
    """

    name = None

    # The products a strategy implements, on checked arguments.

    @abc.abstractmethod
    def _jvp(self, func, params, tangents, create_graph):
        """J v as a tensor shaped like func()'s output."""

    @abc.abstractmethod
    def _vjp(self, func, params, v, create_graph):
        """vᵀJ as a sequence of tensors matching params."""

    @abc.abstractmethod
    def _batch_jvp(self, func, params, tangents, create_graph):
        """A (batch, *output shape) tensor of J v, one per row of the batched tangents."""

    @abc.abstractmethod
    def _batch_vjp(self, func, params, vs, create_graph):
        """A sequence matching params of (batch, *param shape) tensors."""

    @abc.abstractmethod
    def _full_jacobian(self, func, params, create_graph):
        """A sequence matching params of (output numel, *param shape) tensors."""

    # The documented API, the same for every strategy.

    def jvp(self, func, params, v, create_graph=False):
        """J v for func at params; a tensor shaped like func()'s output."""
        check_func(func)
        params = check_params(params)
        tangents = check_tangents(v, params)
        with translate_missing_rules(self.name):
            return _finish(self._jvp(func, params, tangents, create_graph), create_graph)

    def vjp(self, func, params, v, create_graph=False):
        """vᵀJ for func at params: a list matching params, or a tensor when params holds one tensor."""
        check_func(func)
        params = check_params(params)
        with translate_missing_rules(self.name):
            grads = _finish(self._vjp(func, params, v, create_graph), create_graph)
        return grads[0] if len(params) == 1 else grads

    def model_jvp(self, model, x, v, create_graph=False):
        """J v for model(x) with respect to the model's parameters that require grad."""
        params = check_model(model, x)
        return self.jvp(model_closure(model, x), params, v, create_graph)

    def model_vjp(self, model, x, v, create_graph=False):
        """vᵀJ for model(x) with respect to the model's parameters that require grad."""
        params = check_model(model, x)
        return self.vjp(model_closure(model, x), params, v, create_graph)

    def batch_jvp(self, func, params, vs, create_graph=False):
        """J v for each vector of the batch vs; a (batch, *output shape) tensor."""
        check_func(func)
        params = check_params(params)
        tangents = check_batch_tangents(vs, params)
        with translate_missing_rules(self.name):
            return _finish(self._batch_jvp(func, params, tangents, create_graph), create_graph)

    def batch_vjp(self, func, params, vs, create_graph=False):
        """vᵀJ for each row of vs; a list matching params of (batch, *param shape) tensors."""
        check_func(func)
        params = check_params(params)
        with translate_missing_rules(self.name):
            return _finish(self._batch_vjp(func, params, vs, create_graph), create_graph)

    def full_jacobian(self, func, params, create_graph=False):
        """J as a list matching params of (output numel, *param shape) tensors."""
        check_func(func)
        params = check_params(params)
        with translate_missing_rules(self.name):
            return _finish(self._full_jacobian(func, params, create_graph), create_graph)

    def __repr__(self):
        return f"<gvp_bench strategy {self.name!r}>"
