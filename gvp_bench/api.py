"""The public functions: the documented signatures plus ``strategy``, delegating to the registry.

``strategy`` is a registered name (see :func:`gvp_bench.strategies`) or a Strategy instance
(``gvp_bench.get_strategy("jacrev_chunked", chunk_size=8)``). The default, ``"auto"``,
chooses per call.
"""

from .registry import resolve


def jvp(func, params, v, create_graph=False, *, strategy="auto"):
    """J v of ``func()`` with respect to ``params``: a tensor shaped like the output."""
    return resolve(strategy).jvp(func, params, v, create_graph)


def vjp(func, params, v, create_graph=False, *, strategy="auto"):
    """vᵀJ: a list matching ``params`` (a tensor when params holds one tensor); a dict under the same keys
    when params is a dict (``dict(model.named_parameters())``)."""
    return resolve(strategy).vjp(func, params, v, create_graph)


def model_jvp(model, x, v, create_graph=False, *, strategy="auto"):
    """J v of ``model(x)`` with respect to the model's parameters that require grad."""
    return resolve(strategy).model_jvp(model, x, v, create_graph)


def model_vjp(model, x, v, create_graph=False, *, strategy="auto"):
    """vᵀJ of ``model(x)`` with respect to the model's parameters that require grad."""
    return resolve(strategy).model_vjp(model, x, v, create_graph)


def batch_jvp(func, params, vs, create_graph=False, *, strategy="auto"):
    """J v for each vector in the batch ``vs``: a (batch, *output shape) tensor."""
    return resolve(strategy).batch_jvp(func, params, vs, create_graph)


def batch_vjp(func, params, vs, create_graph=False, *, strategy="auto"):
    """vᵀJ for each row of ``vs``: a list matching params of (batch, *param shape) tensors."""
    return resolve(strategy).batch_vjp(func, params, vs, create_graph)


def full_jacobian(func, params, create_graph=False, *, strategy="auto"):
    """J: a list matching params of (output numel, *param shape) tensors."""
    return resolve(strategy).full_jacobian(func, params, create_graph)
