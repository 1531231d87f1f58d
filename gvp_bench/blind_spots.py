"""What a strategy cannot see, found rather than guessed, so that no strategy silently disagrees.

Strategies differentiate ``func`` in two ways. The autograd-based ones (double_backward,
reference_loop, the reverse-mode products of forward_dual) record func() on the params and
follow autograd's graph. The functional ones (torch.func, forward-mode dual tensors,
torch.autograd.functional, torch.compile) substitute each param by a replacement for the call
(gvp_bench.functional) and see only what flows from the replacements. Where the two could differ,
this module detects it, cheaply, on every call:

- :class:`CallWatch` rides in the substitution mode: a tensor that reaches one of func's
  operators, was not made during the call, is not a param, and whose autograd graph reaches a
  param (``S = W + W.T`` computed outside func) is invisible to a substitution, so the functional
  strategy raises :class:`UnsupportedError` naming it (the autograd-based ones follow the graph).
  It also makes an embedding's padding rows constants in forward mode, as torch's backward rule
  makes them in reverse mode, and its gradients dense (see :func:`run_operator`).
- :class:`product_scope` (around every attempt at a product): func must not modify a param in place
  (``nn.Embedding(max_norm=...)`` renormalises its weight): the params' version counters are compared.
  The same object also does what every attempt needs besides: it puts back the process state a
  failed attempt left changed and names torch's missing derivative formulas (one object, as it runs
  on every call).
- :func:`check_distinct_storage`: two params that are views of one tensor (``[W, W[0]]``) have
  no single answer (a substitution treats them as independent, autograd as a view).
- :func:`check_supported_dtype`: float32 and float64 only; float16 and bfloat16 are refused with a
  TypeError naming the dtype, the same from every strategy.
- :class:`product_scope` also: a product computed inside another strategy's func (a Hessian-vector
  product by composition) is allowed only where the outer strategy differentiates through
  autograd's graph; elsewhere it raises UnsupportedError instead of returning silent zeros.
"""

import contextlib
import operator
import threading

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from . import process_state
from .errors import UnsupportedError, missing_rule
from .support import Unsupported

SUPPORTED_DTYPES = (torch.float32, torch.float64)
_VERSION = operator.attrgetter("_version")


def check_supported_dtype(name, tensor):
    """A TypeError naming ``name`` when tensor's floating dtype is not float32 or float64."""
    if tensor.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name} has dtype {tensor.dtype}; gvp_bench computes in float32 and float64 only "
                        f"(half precision products differ between strategies by their rounding order)")


def check_distinct_storage(params):
    """A ValueError when a param is a view of another param, or two params are views of one tensor."""
    if not any(p._is_view() for p in params):
        return
    owners = {}
    for index, param in enumerate(params):
        base = param._base if param._is_view() else param
        if id(base) in owners:
            raise ValueError(f"params[{index}] and params[{owners[id(base)]}] share storage (one is a view of the "
                             f"other, or both of one tensor); a product with respect to both has no single "
                             f"meaning: pass the tensor they view once")
        owners[id(base)] = index


def _reaches(grad_fn, leaves, nodes):
    """The index of the param autograd's graph from grad_fn reaches (a leaf param by id, a non-leaf one by its
    grad_fn), or None."""
    seen, stack = set(), [grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node in nodes:
            return nodes[node]
        variable = getattr(node, "variable", None)
        if variable is not None and id(variable) in leaves:
            return leaves[id(variable)]
        stack.extend(next_node for next_node, _ in node.next_functions)
    return None


class CallWatch:
    """What the substitution mode sees during one call of func: the tensors made during the call, and the
    captured tensors that reach a param by a graph the substitution cannot follow."""

    def __init__(self, params, replacements):
        self._params = {id(p): index for index, p in enumerate(params)}
        self._param_nodes = {p.grad_fn: index for index, p in enumerate(params) if p.grad_fn is not None}
        self._made = {id(r) for r in replacements}  # the substitution's own tensors are the params' stand-ins

    def made(self, result):
        """Record the tensor(s) an operator returned as made during the call."""
        if isinstance(result, torch.Tensor):
            self._made.add(id(result))
        elif isinstance(result, (tuple, list)):
            for item in result:
                if isinstance(item, torch.Tensor):
                    self._made.add(id(item))

    def check_input(self, tensor):
        """Refuse a tensor that was neither made in the call nor a param, yet carries a graph to a param.

        Only tensors with a grad_fn are looked at (leaves cannot reach a param); a tensor alive before the
        call cannot share an id with one made during it, so the ids of made tensors suffice."""
        if tensor.grad_fn is None or id(tensor) in self._made or id(tensor) in self._params:
            return
        index = _reaches(tensor.grad_fn, self._params, self._param_nodes)
        if index is not None:
            raise UnsupportedError(
                running_strategy(), f"func reads a tensor computed from params[{index}] outside func (it carries "
                f"{type(tensor.grad_fn).__name__} to params[{index}]); this strategy substitutes the params and "
                f"cannot follow that graph: compute the tensor inside func (or detach it to make it a constant)")


def run_operator(function, args, kwargs):
    """``function(*args, **kwargs)``, with F.embedding differentiated as reverse mode does in every mode.

    torch's backward rule for ``embedding(padding_idx=p)`` gives the padding row no gradient, while its
    forward-AD rule carries the tangent through it; J v and vᵀJ would then not be adjoint. Replacing the
    padding positions by their detached values changes no value and no reverse-mode derivative.
    ``sparse=True`` (sparse gradients, which the products' dense results and torch.func cannot hold) is
    computed with dense gradients: the same values."""
    if function is not F.embedding:
        return function(*args, **kwargs)
    kwargs = dict(kwargs, sparse=False)
    output = function(*args, **kwargs)
    padding_idx = kwargs.get("padding_idx", args[2] if len(args) > 2 else None)
    if padding_idx is None:
        return output
    indices, weight = args[0], args[1]
    if padding_idx < 0:
        padding_idx += weight.shape[0]
    at_padding = (indices == padding_idx).unsqueeze(-1)
    return torch.where(at_padding, output.detach(), output)


@contextlib.contextmanager
def parametrizations_refused(strategy, why):
    """Raise UnsupportedError if func evaluates a torch.nn.utils.parametrize parametrization in the block."""
    found = []

    def note(module, inputs):
        if isinstance(module, parametrize.ParametrizationList):
            found.append(type(module[0]).__name__)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(note)
    try:
        yield
    finally:
        handle.remove()
    if found:
        raise UnsupportedError(strategy, f"func computes a parametrized tensor ({found[0]}, "
                                         f"torch.nn.utils.parametrize): {why}")


# Products computed inside another strategy's func: composition (a Hessian-vector product as a JVP of a VJP).

_running = threading.local()

# The products each strategy computes by recording func() on the params themselves and differentiating
# through autograd's graph: an inner product's create_graph=True result, connected to the params by that
# graph, is differentiated correctly. The other products substitute the params, and the inner strategy's own
# differentiation hides the replacement from them (silent zeros, or torch.func errors).
GRAPH_PRODUCTS = {
    "double_backward": {"jvp", "vjp", "batch_jvp", "batch_vjp", "full_jacobian"},
    "reference_loop": {"jvp", "vjp", "batch_jvp", "batch_vjp", "full_jacobian"},
    "forward_dual": {"vjp", "batch_vjp"},
}


def running_strategy():
    """The name of the strategy whose product is being computed on this thread (None outside any)."""
    stack = getattr(_running, "stack", None)
    return stack[-1][0] if stack else None


class product_scope:
    """One attempt at a product of ``strategy``, a context manager (a class, with one object doing all of it: it
    runs on every call). It

    - refuses a product computed inside another strategy's product unless they compose (see GRAPH_PRODUCTS):
      the outer product follows autograd's graph, on params that all require grad (the others it replaces);
    - puts back the process state the block left changed when it raises (gvp_bench.process_state: a failed
      attempt cannot break a retry, nor any later call);
    - raises ValueError on leaving if the block modified a param in place (its version counter moved), also
      when the block failed: the in-place update is then the likely cause, and the one named;
    - turns torch's "no formula for operator X" errors into UnsupportedError naming X."""

    __slots__ = ("_frame", "_versions", "_stack", "_state")

    def __init__(self, strategy, product, params):
        self._frame = (strategy, product, params)

    def __enter__(self):
        strategy, product, params = self._frame
        stack = _running.__dict__.setdefault("stack", [])
        if stack:
            outer, outer_product, outer_params = stack[-1]
            if not (outer_product in GRAPH_PRODUCTS.get(outer, ()) and all(p.requires_grad for p in outer_params)):
                raise UnsupportedError(
                    strategy, f"called inside {outer!r}'s {outer_product} (a product of a product): {outer!r} "
                    f"substitutes the params and cannot see through {strategy!r}'s own differentiation; "
                    f"compose under an outer strategy that follows autograd's graph "
                    f"({', '.join(sorted(GRAPH_PRODUCTS))}) on params that require grad, or use gvp_bench.hvp")
        self._versions = list(map(_VERSION, params))
        stack.append(self._frame)
        self._stack = stack
        self._state = process_state.snapshot()
        return self

    def __exit__(self, kind, error, traceback):
        self._stack.pop()
        if kind is not None:
            process_state.restore(self._state)  # what the failed attempt left changed, if anything
        params = self._frame[2]
        if list(map(_VERSION, params)) != self._versions:
            index = next(i for i, (p, version) in enumerate(zip(params, self._versions)) if p._version != version)
            raise ValueError(f"func modified params[{index}] in place (nn.Embedding(max_norm=...) renormalises "
                             f"its weight so, as does any in-place update of a param inside func); params must be "
                             f"left untouched: do the update outside func")
        unsupported = missing_rule(self._frame[0], error) if kind is not None else None
        if unsupported is not None:
            raise unsupported from error
        return False


# What a strategy that substitutes params inside the call (gvp_bench.functional) cannot see: declared by
# each such strategy in its ``unsupported`` data (gvp_bench.support).
SUBSTITUTION_BLIND_SPOTS = (
    Unsupported(("graph_outside_func",), "cannot follow that graph",
                "the params are substituted inside func's call: a tensor computed from a param before the call "
                "keeps the graph to the original param, which the substituted products cannot follow"),
    Unsupported(("product_of_product",), "a product of a product",
                "a product inside func runs under this strategy's substitution or transform, which the inner "
                "product cannot differentiate through: only strategies that follow autograd's graph compose"),
)
