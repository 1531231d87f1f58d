"""The products the JAX way, each a function of ``(params, x, *vectors)`` for ``jax.jit``.

jvp: ``jax.jvp`` (forward mode, one pass); vjp: the pullback of ``jax.vjp``; batches:
``jax.vmap`` over the tangents, or over the pullback of one ``jax.vjp``; the Jacobian:
``jax.jacfwd`` (one forward pass per parameter, vmapped) or ``jax.jacrev`` (one pullback per
output, vmapped), its blocks shaped (output numel, *param shape) as gvp_bench's full_jacobian
returns them. model_jvp and model_vjp are jvp and vjp: in JAX a model is already a function
of its parameters and input.
"""

import jax


def _jvp(apply):
    def jvp(params, x, tangents):
        return jax.jvp(lambda p: apply(p, x), (params,), (tangents,))[1]
    return jvp


def _vjp(apply):
    def vjp(params, x, cotangent):
        _, pullback = jax.vjp(lambda p: apply(p, x), params)
        return pullback(cotangent)[0]
    return vjp


def _batch_jvp(apply):
    return jax.vmap(_jvp(apply), in_axes=(None, None, 0))


def _batch_vjp(apply):
    def batch_vjp(params, x, cotangents):
        _, pullback = jax.vjp(lambda p: apply(p, x), params)
        return jax.vmap(pullback)(cotangents)[0]
    return batch_vjp


def _jacobian(transform):
    def make(apply):
        def full_jacobian(params, x):
            blocks = transform(apply)(params, x)
            return [block.reshape(-1, *param.shape) for block, param in zip(blocks, params)]
        return full_jacobian
    return make


PRODUCTS = {
    ("jax.jit", "jvp"): _jvp, ("jax.jit", "model_jvp"): _jvp,
    ("jax.jit", "vjp"): _vjp, ("jax.jit", "model_vjp"): _vjp,
    ("jax.jit", "batch_jvp"): _batch_jvp, ("jax.jit", "batch_vjp"): _batch_vjp,
    ("jax.jacfwd", "full_jacobian"): _jacobian(jax.jacfwd),
    ("jax.jacrev", "full_jacobian"): _jacobian(jax.jacrev),
}


def jitted(strategy, op, apply):
    """``jax.jit`` of the product ``op`` as ``strategy`` computes it, for the model ``apply``."""
    return jax.jit(PRODUCTS[strategy, op](apply))
