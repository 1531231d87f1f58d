"""Turn a zero-argument closure over ``params`` into a function of those params.

torch.func and forward-mode AD need the params as inputs, but users write ``func`` as a
closure that indexes its tensors or calls an ``nn.Module``. :func:`as_function_of` gives
``f(*replacements)``: it runs ``func()`` under a ``TorchFunctionMode`` that swaps every
occurrence of a param in every torch call for its replacement. Custom
``torch.autograd.Function.apply`` calls, which torch-function modes do not see, get their
arguments swapped too (otherwise their derivative would flow to the original param and the
product would silently be zero). Nothing is rebound or mutated, so the params are untouched
and the substitution ends with the call.

A model's call (gvp_bench.model_call) over the model's trainable params is
called with its replacements instead: they are swapped in the module's own parameter dicts for
the call, as ``torch.func.functional_call`` does, at no cost per torch call.

Under torch.compile the ``Function.apply`` swap is left out (dynamo cannot trace a class being
patched); the compiled strategies call :func:`custom_functions_called` first and refuse a
func that passes a param straight to a custom Function, the one case the swap is needed for (and
one that calls a custom Function with its own jvp, which torch.compile does not follow).
"""

import contextlib
import operator
from typing import NamedTuple

import torch
from torch.autograd.function import Function
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map_only

from .blind_spots import CallWatch, run_operator
from .process_state import random_state_kept
from .validation import check_output


# The argument types that hold no tensor (anything else may be a container that pytree looks into).
_NOT_CONTAINERS = frozenset({int, float, bool, complex, str, type(None), torch.dtype, torch.device, torch.layout,
                             torch.memory_format})


def _holds_no_containers(values):
    return all(isinstance(v, torch.Tensor) or type(v) in _NOT_CONTAINERS for v in values)


class _Substitution(TorchFunctionMode):
    # Under torch.compile, params are found by identity, not by id(): dynamo would guard on each id(),
    # compiling anew for every new tensor.

    def __init__(self, pairs):
        super().__init__()
        self._pairs = pairs  # (param, replacement)
        if not torch.compiler.is_compiling():
            self._replacements = {id(p): r for p, r in pairs}
            self._watch = CallWatch([p for p, _ in pairs], [r for _, r in pairs])

    def _swap(self, tensor):
        if torch.compiler.is_compiling():
            return next((r for p, r in self._pairs if p is tensor), tensor)
        return self._replacements.get(id(tensor), tensor)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _holds_no_containers(args) and _holds_no_containers(kwargs.values()):
            # Most calls (F.linear(x, w, b), torch.tanh(h)) pass tensors and scalars alone: swapped here
            # without pytree, whose flattening of the arguments costs more than the operator on small tensors.
            swap = self._swap
            args = [swap(a) if isinstance(a, torch.Tensor) else a for a in args]
            kwargs = {k: swap(a) if isinstance(a, torch.Tensor) else a for k, a in kwargs.items()}
            inputs = (*args, *kwargs.values())
        else:
            args, kwargs = tree_map_only(torch.Tensor, self._swap, (args, kwargs))
            inputs = tree_flatten((args, kwargs))[0]
        if torch.compiler.is_compiling():
            return run_operator(func, args, kwargs)
        watch = self._watch
        for tensor in inputs:
            if isinstance(tensor, torch.Tensor):
                watch.check_input(tensor)
        output = run_operator(func, args, kwargs)
        watch.made(output)
        return output

    def __enter__(self):
        self._apply_scope = contextlib.ExitStack()
        if not torch.compiler.is_compiling():
            swap = self._swap
            self._apply_scope.enter_context(
                _function_apply_wrapped(lambda cls, args, kwargs: tree_map_only(torch.Tensor, swap, (args, kwargs)),
                                        after=self._watch.made))
        return super().__enter__()

    def __exit__(self, *exc_info):
        self._apply_scope.close()
        return super().__exit__(*exc_info)


@contextlib.contextmanager
def _function_apply_wrapped(before, after=None):
    """Custom ``Function.apply(*args, **kwargs)`` calls go through ``before(cls, args, kwargs)``, which
    returns the (args, kwargs) to apply, and their outputs through ``after`` (when given), for the duration
    of the block."""
    original_apply = Function.__dict__["apply"]

    def apply_through(cls, *args, **kwargs):
        args, kwargs = before(cls, args, kwargs)
        output = original_apply.__get__(None, cls)(*args, **kwargs)
        if after is not None:
            after(output)
        return output

    Function.apply = classmethod(apply_through)
    try:
        yield
    finally:
        Function.apply = original_apply


class CustomFunctions(NamedTuple):
    """The custom autograd.Function classes a func calls, by name: those it passes a param itself to, and
    those that define their own jvp."""
    given_params: list
    own_jvp: list


def custom_functions_called(func, params):
    """The custom autograd.Function classes func calls (:class:`CustomFunctions`), by one call of func without a
    graph that leaves the random state as it was; also checks func's output."""
    found = CustomFunctions([], [])

    def record(cls, args, kwargs):
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if any(t is p for t in tensors for p in params):
            found.given_params.append(cls.__name__)
        if cls.jvp is not Function.jvp:
            found.own_jvp.append(cls.__name__)
        return args, kwargs

    with random_state_kept(params), torch.no_grad(), _function_apply_wrapped(record):
        check_output(func())
    return found


def _same_tensors(these, those):
    return len(these) == len(those) and all(map(operator.is_, these, those))


def look_through_substitution(func, params):
    """One call of func under the substitution (by detached copies), without a graph, leaving the random state
    as it was: the eager check of what a substitution cannot see (gvp_bench.blind_spots.CallWatch), for the
    compiled strategies, whose substitution is traced."""
    with random_state_kept(params), torch.no_grad():
        call_with(func, params, [p.detach() for p in params])


def call_with(func, params, replacements):
    """func() with each params[i] replaced by replacements[i] for the duration of the call."""
    if all(map(operator.is_, replacements, params)):
        return check_output(func())
    trainable = getattr(func, "trainable_params", None)  # a model's call (gvp_bench.model_call)
    if trainable is not None and not torch.compiler.is_compiling() and _same_tensors(trainable(), params):
        return check_output(func(replacements))
    substitution = _Substitution([(p, r) for p, r in zip(params, replacements) if r is not p])
    with substitution:
        output = func()
    # func may return a param itself, which no torch call saw.
    return check_output(substitution._swap(output))


def as_function_of(func, params):
    """The function ``f(*replacements) = func()`` with the params replaced."""

    def function_of_params(*replacements):
        return call_with(func, params, replacements)

    return function_of_params


def primals_of(params, create_graph):
    """The params as inputs to a transform: connected to their autograd graph only when create_graph."""
    return params if create_graph else tuple(p.detach() for p in params)


class EmptyOutputPadding:
    """Works around torch's Jacobian routines that fail on an output with no elements
    (torch.func.jacrev(chunk_size=1) and torch.autograd.functional.jacobian(vectorize=True), torch 2.14):
    :meth:`pad` replaces such an output by one constant element, whose Jacobian row, zeros,
    :meth:`rows` then drops. The Jacobian of an output with no elements has no rows."""

    numel = None  # the number of elements of the latest output padded

    def pad(self, output):
        self.numel = output.numel()
        return output if self.numel else output.new_zeros(1)

    def rows(self, block, param):
        """A Jacobian block of the padded output as (output numel, *param shape)."""
        return block.reshape((max(self.numel, 1),) + tuple(param.shape))[:self.numel]
