"""Hessian-vector products H v of a scalar ``func`` with respect to ``params``, by named strategies.

H v is the derivative of the gradient along v; the strategies differ in which mode takes each of
the two derivatives:

- ``forward_over_reverse``: torch.func.jvp of torch.func.grad over the functional form
  (gvp_bench.functional): one forward-mode pass through the backward pass. torch.func's
  recommended HVP; usually the cheapest, where every operator has a forward-AD formula.
- ``reverse_over_forward``: torch.func.grad of the directional derivative <∇f, v> taken by
  torch.func.jvp: a backward pass through a forward-mode pass.
- ``reverse_over_reverse``: torch.autograd.grad twice on the recorded graph (the gradient with
  create_graph=True, then the gradient of <∇f, v>): reverse-mode formulas only, twice
  differentiable; a batch goes through ``is_grads_batched`` over one first backward pass.
- ``forward_dual_over_reverse``: the params as forward-mode dual tensors (tangent v) through one
  recorded forward and backward pass: the gradient's tangent is H v.
- ``autograd_functional``: torch.autograd.functional.hvp (reverse over reverse by the
  double-backward trick, on copies of the params).
- ``auto`` (the default): the first of forward_over_reverse and reverse_over_reverse that can.

:func:`ggn_vp` gives the Gauss-Newton product Jᵀ H J v of a loss over func()'s output, from two
first-order products of a registered strategy and the loss's own Hessian-vector product.

Batches (``batch_hvp``) run the torch.func strategies under vmap, the others row by row (or batched
backward passes). Each product keeps the contract of the first-order ones: the same argument
checks and typed errors, params left untouched, a substitution that refuses what it cannot see
(gvp_bench.blind_spots), and missing formulas as :class:`~gvp_bench.errors.UnsupportedError`.
Results carry no autograd graph.
"""

import torch
import torch.autograd.forward_ad as fwAD
from torch.func import grad, jvp, vmap

from .blind_spots import product_scope
from .errors import UnsupportedError, translate_missing_rules
from .functional import as_function_of, call_with
from .validation import check_batch_tangents, check_func, check_params, check_tangents, keyed, param_keys


def _scalar(output):
    """func()'s output as a 0-d tensor; an output of more than one element is a ValueError."""
    if output.numel() != 1:
        raise ValueError(f"func must return a scalar (one element) for a Hessian-vector product, "
                         f"got shape {tuple(output.shape)}")
    return output.reshape(())


def _scalar_function_of(func, params):
    function = as_function_of(func, params)
    return lambda *replacements: _scalar(function(*replacements))


def _detached(params):
    return tuple(p.detach() for p in params)


def _forward_over_reverse(func, params, tangents):
    gradient = grad(_scalar_function_of(func, params), argnums=tuple(range(len(params))))
    return jvp(gradient, _detached(params), tuple(tangents))[1]


def _reverse_over_forward(func, params, tangents):
    function = _scalar_function_of(func, params)
    directional = lambda *primals: jvp(function, primals, tuple(tangents))[1]  # noqa: E731
    return grad(directional, argnums=tuple(range(len(params))))(*_detached(params))


def _recorded_gradient(func, params):
    """(the gradient as a graph of live leaves standing for params, the leaves)."""
    live = tuple(p.detach().requires_grad_() for p in params)
    with torch.enable_grad():
        output = _scalar(call_with(func, params, live))
        if not output.requires_grad:
            return None, live
        gradient = torch.autograd.grad(output, live, create_graph=True, allow_unused=True)
    return gradient, live


def _reverse_over_reverse(func, params, tangents, batched=False):
    gradient, live = _recorded_gradient(func, params)
    batch = tangents[0].shape[:1] if batched else ()
    zeros = tuple(torch.zeros(tuple(batch) + tuple(p.shape), dtype=p.dtype, device=p.device) for p in params)
    used = [(g, t) for g, t in zip(gradient or (), tangents) if g is not None and g.requires_grad]
    if not used:
        return zeros
    grads, chosen = zip(*used)
    result = torch.autograd.grad(grads, live, chosen, allow_unused=True, is_grads_batched=batched)
    return tuple(z if r is None else r for r, z in zip(result, zeros))


def _forward_dual_over_reverse(func, params, tangents):
    with fwAD.dual_level(), torch.enable_grad():
        duals = tuple(fwAD.make_dual(p.detach().requires_grad_(), t) for p, t in zip(params, tangents))
        output = _scalar(call_with(func, params, duals))
        if not output.requires_grad:
            return tuple(torch.zeros_like(p) for p in params)
        gradient = torch.autograd.grad(output, duals, create_graph=True, allow_unused=True)
        results = []
        for g, p in zip(gradient, params):
            tangent = None if g is None else fwAD.unpack_dual(g).tangent
            results.append(torch.zeros_like(p) if tangent is None else tangent)
    return tuple(results)


def _autograd_functional(func, params, tangents):
    function = _scalar_function_of(func, params)
    return torch.autograd.functional.hvp(function, _detached(params), tuple(tangents))[1]


def _rows(single):
    """A batch product from a single one, row by row."""
    def batch(func, params, tangents):
        rows = [single(func, params, row) for row in zip(*tangents)]
        return tuple(torch.stack(per_param) for per_param in zip(*rows))
    return batch


def _vmapped(single):
    def batch(func, params, tangents):
        return vmap(lambda *row: single(func, params, row), randomness="same")(*tangents)
    return batch


# name -> (H v for one tangent per param, H v for a batch of them)
_PRODUCTS = {
    "forward_over_reverse": (_forward_over_reverse, _vmapped(_forward_over_reverse)),
    "reverse_over_forward": (_reverse_over_forward, _vmapped(_reverse_over_forward)),
    "reverse_over_reverse": (_reverse_over_reverse, lambda f, p, t: _reverse_over_reverse(f, p, t, batched=True)),
    "forward_dual_over_reverse": (_forward_dual_over_reverse, _rows(_forward_dual_over_reverse)),
    "autograd_functional": (_autograd_functional, _rows(_autograd_functional)),
}
_AUTO_ORDER = ("forward_over_reverse", "reverse_over_reverse")


def hvp_strategies():
    """The names of the Hessian-vector product strategies (``auto`` first)."""
    return ["auto"] + sorted(_PRODUCTS)


def _compute(name, batched, func, params, tangents):
    if name == "auto":
        reasons = []
        for candidate in _AUTO_ORDER:
            try:
                return _compute(candidate, batched, func, params, tangents)
            except UnsupportedError as error:
                reasons.append(f"{candidate}: {error.reason}")
        raise UnsupportedError("auto", "no Hessian-vector product strategy could compute it; " + "; ".join(reasons))
    if name not in _PRODUCTS:
        raise ValueError(f"unknown Hessian-vector product strategy {name!r}; valid names: "
                         f"{', '.join(hvp_strategies())}")
    product = _PRODUCTS[name][1 if batched else 0]
    with product_scope(name, "hvp", params):
        return tuple(r.detach() for r in product(func, params, tangents))


def ggn_vp(func, params, loss, v, *, strategy="auto"):
    """The Gauss-Newton product G v = Jᵀ H J v, J the Jacobian of func() (a model's output) with respect to
    params and H the Hessian of the scalar ``loss(output)`` with respect to the output: a list matching params
    (a tensor for one param); a dict under the same keys when params is a dict. ``v`` takes the forms of jvp's.

    J v and the final vᵀJ are first-order products by ``strategy`` (a registered strategy, as for jvp and vjp);
    H (J v) is forward-over-reverse through ``loss`` alone (torch.func), at the output without its graph.
    G is the Hessian of loss(func()) without the second derivative of func: positive semi-definite where
    the loss is convex in the output."""
    from . import api  # the public first-order products

    if not callable(loss):
        raise TypeError(f"loss must be a callable of func()'s output returning a scalar, got {type(loss).__name__}")
    jv = api.jvp(func, params, v, strategy=strategy)
    with torch.no_grad():
        output = func().detach()
    with translate_missing_rules("ggn_vp"):
        h_jv = jvp(grad(lambda out: _scalar(loss(out))), (output,), (jv,))[1]
    return api.vjp(func, params, h_jv, strategy=strategy)


def hvp(func, params, v, *, strategy="auto"):
    """H v for the scalar func() with respect to params: a list matching params (a tensor for one param); a dict
    under the same keys when params is a dict (``dict(model.named_parameters())``).

    ``v`` takes the forms of jvp's: a tensor for one param, a list matching params, a dict with the keys of
    dict params, or a flat vector."""
    check_func(func)
    keys, params = param_keys(params), check_params(params)
    _check_strategy_name(strategy)
    result = _compute(strategy, False, func, params, check_tangents(v, params, keys=keys))
    if keys is not None:
        return keyed(result, keys)
    return result[0] if len(params) == 1 else list(result)


def batch_hvp(func, params, vs, *, strategy="auto"):
    """H v for each vector of the batch vs: a list matching params (a dict under its keys) of
    (batch, *param shape) tensors. ``vs`` takes the forms of batch_jvp's."""
    check_func(func)
    keys, params = param_keys(params), check_params(params)
    _check_strategy_name(strategy)
    return keyed(list(_compute(strategy, True, func, params, check_batch_tangents(vs, params, keys=keys))), keys)


def _check_strategy_name(strategy):
    if not isinstance(strategy, str):
        raise TypeError(f"strategy must be the name of a Hessian-vector product strategy, got {type(strategy).__name__}")
