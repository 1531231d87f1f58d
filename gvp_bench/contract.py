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
import contextlib
import operator
import warnings

import torch

from .blind_spots import product_scope
from .signature import signature
from .errors import UnsupportedError
from .model_call import model_closure
from .validation import (
    check_batch_tangents,
    check_func,
    check_model_form,
    check_params,
    check_tangents,
    keyed,
    param_keys,
)
from .workarounds import WorkaroundWarning, workaround_for


PRODUCTS = ("jvp", "vjp", "batch_jvp", "batch_vjp", "full_jacobian")  # what a strategy implements
_IMPLEMENTATIONS = {product: f"_{product}" for product in PRODUCTS}  # the method that computes each
_REQUIRES_GRAD = operator.attrgetter("requires_grad")
_IS_SPARSE = operator.attrgetter("is_sparse")


def _finish(results, create_graph):
    """A strategy's results as documented: a tensor, or a list of dense tensors (strategies may return any
    sequence; autograd gives nn.Embedding(sparse=True) sparse gradients), detached unless create_graph."""
    if isinstance(results, torch.Tensor):
        return results if create_graph or not results.requires_grad else results.detach()
    if any(map(_IS_SPARSE, results)):
        results = [r.to_dense() if r.is_sparse else r for r in results]
    if create_graph or not any(map(_REQUIRES_GRAD, results)):  # the usual case: nothing to detach
        return list(results)
    return [r.detach() if r.requires_grad else r for r in results]


class Strategy(abc.ABC):
    """One way of computing J v, vᵀJ and J for ``func``, a zero-argument closure over ``params``.

    Subclasses set ``name``, implement the five products below and declare what they refuse in
    ``unsupported`` (gvp_bench.support); they receive params as a tuple, JVP tangents as a tuple
    matching params (batches with the batch dimension first), and VJP cotangents raw, to check with
    ``check_cotangent`` once they know func()'s output. gvp_bench.kit gathers what they need.
    """

    name = None
    unsupported = ()  # what it refuses: gvp_bench.support.Unsupported declarations, read by the conformance harness
    last_workarounds = ()  # the workarounds the latest call needed, by name
    latest_call_defaults = {}  # attributes that describe the latest call, set to these values as each call starts
    costly_first_call = False  # True where the first call per workload compiles or captures (seconds): auto never times it
    records_on_second_call = False  # True where the second call per workload records a CUDA graph (cuda_graphs)

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

    def implementation(self, product):
        """The bound method that computes ``product`` on checked arguments, ``_<product>``: no validation,
        no workarounds, no error translation. For a strategy that builds on another one's products."""
        if product not in PRODUCTS:
            raise ValueError(f"unknown product {product!r}; valid products: {', '.join(PRODUCTS)}")
        return getattr(self, _IMPLEMENTATIONS[product])

    def compute(self, product, func, params, *args):
        """Run the product ``_<product>`` on checked arguments, with the workarounds it needs.

        torch's missing-formula errors become UnsupportedError; when the operator named has a
        scoped workaround (gvp_bench.workarounds), the product is run again inside it. The
        workarounds a workload needed are remembered under its signature (see
        gvp_bench.signature), so later calls start inside them instead of failing
        first; the signature is only taken once some workload of this strategy has needed a
        workaround. Each attempt runs in a :class:`~gvp_bench.blind_spots.product_scope`: one that fails
        leaves the process state as it found it, however it fails (gvp_bench.process_state), so a failed
        attempt cannot break the retry, nor any later call.
        """
        remembered = self.__dict__.setdefault("_workarounds_by_workload", {})
        key = signature(product, func, params, args) if remembered else None
        needed = list(remembered.get(key, ())) if remembered else []
        self.__dict__.update(self.latest_call_defaults)
        implementation = getattr(self, _IMPLEMENTATIONS[product])
        while True:
            try:
                with product_scope(self.name, product, params):
                    if needed:
                        with contextlib.ExitStack() as scope:
                            for workaround in needed:
                                scope.enter_context(workaround.context())
                            result = implementation(func, params, *args)
                    else:
                        result = implementation(func, params, *args)
                break
            except UnsupportedError as error:
                workaround = workaround_for(error.operator)
                if workaround is None or workaround in needed:
                    raise
                needed.append(workaround)
        self.last_workarounds = tuple(w.name for w in needed) if needed else ()
        if needed:
            remembered[key if key is not None else signature(product, func, params, args)] = tuple(needed)
            for workaround in needed:
                warnings.warn(f"gvp_bench: {self.name} {product} ran with {workaround.description} "
                              f"({workaround.name})", WorkaroundWarning, stacklevel=3)
        return result

    # The documented API, the same for every strategy.

    def jvp(self, func, params, v, create_graph=False):
        """J v for func at params; a tensor shaped like func()'s output."""
        check_func(func)
        keys, params = param_keys(params), check_params(params)
        return self._checked_jvp(func, params, v, create_graph, keys)

    def _checked_jvp(self, func, params, v, create_graph, keys=None):
        tangents = check_tangents(v, params, keys=keys)
        return _finish(self.compute("jvp", func, params, tangents, create_graph), create_graph)

    def vjp(self, func, params, v, create_graph=False):
        """vᵀJ for func at params: a list matching params, or a tensor when params holds one tensor;
        a dict under the same keys when params is a dict."""
        check_func(func)
        keys, params = param_keys(params), check_params(params)
        return self._checked_vjp(func, params, v, create_graph, keys)

    def _checked_vjp(self, func, params, v, create_graph, keys=None):
        grads = _finish(self.compute("vjp", func, params, v, create_graph), create_graph)
        if keys is not None:
            return keyed(grads, keys)
        return grads[0] if len(params) == 1 else grads

    def model_jvp(self, model, x, v, create_graph=False):
        """J v for model(x) with respect to the model's parameters that require grad."""
        form = check_model_form(model, x)
        return self._checked_jvp(model_closure(model, x, form), form.params, v, create_graph)

    def model_vjp(self, model, x, v, create_graph=False):
        """vᵀJ for model(x) with respect to the model's parameters that require grad."""
        form = check_model_form(model, x)
        return self._checked_vjp(model_closure(model, x, form), form.params, v, create_graph)

    def batch_jvp(self, func, params, vs, create_graph=False):
        """J v for each vector of the batch vs; a (batch, *output shape) tensor."""
        check_func(func)
        keys, params = param_keys(params), check_params(params)
        tangents = check_batch_tangents(vs, params, keys=keys)
        return _finish(self.compute("batch_jvp", func, params, tangents, create_graph), create_graph)

    def batch_vjp(self, func, params, vs, create_graph=False):
        """vᵀJ for each row of vs; a list matching params (a dict under its keys) of (batch, *param shape) tensors."""
        check_func(func)
        keys, params = param_keys(params), check_params(params)
        return keyed(_finish(self.compute("batch_vjp", func, params, vs, create_graph), create_graph), keys)

    def full_jacobian(self, func, params, create_graph=False):
        """J as a list matching params (a dict under its keys) of (output numel, *param shape) tensors."""
        check_func(func)
        keys, params = param_keys(params), check_params(params)
        return keyed(_finish(self.compute("full_jacobian", func, params, create_graph), create_graph), keys)

    def release(self):
        """Free what the strategy keeps per workload between calls (compiled graphs, CUDA graphs and their memory
        pools); later calls build it again. The benchmark runner calls it after each cell."""

    def __repr__(self):
        return f"<gvp_bench strategy {self.name!r}>"


def _delegated(product):
    def implementation(self, func, params, *args):
        return self.delegate(product, func, params, *args)

    implementation.__name__ = implementation.__qualname__ = f"_{product}"
    implementation.__doc__ = f"{product}, handed to :meth:`Delegating.delegate`."
    return implementation


class Delegating(Strategy):
    """A strategy whose five products all go through one method, :meth:`delegate` (``auto`` hands them
    to the strategy it chooses, ``compiled`` to a compiled product)."""

    _jvp, _vjp, _batch_jvp, _batch_vjp, _full_jacobian = map(_delegated, PRODUCTS)

    @abc.abstractmethod
    def delegate(self, product, func, params, *args):
        """``product`` (one of PRODUCTS) on checked arguments; args as the product's ``_<product>`` takes them."""
