"""The products the JAX way, each a function of ``(params, x, *vectors)`` for ``jax.jit``.

jvp: ``jax.jvp`` (forward mode, one pass); vjp: the pullback of ``jax.vjp``; batches:
``jax.vmap`` over the tangents, or over the pullback of one ``jax.vjp``; the Jacobian:
``jax.jacfwd`` (one forward pass per parameter, vmapped) or ``jax.jacrev`` (one pullback per
output, vmapped), its blocks shaped (output numel, *param shape) as gvp_bench's full_jacobian
returns them. model_jvp and model_vjp return the model's output too, ``(output, product)``:
the forward pass included, as every torch strategy computes it; jvp and vjp return the product
alone, so XLA may leave out what only the output needs (the last layer's primal, for the mlp).
"""

import jax


def _model_jvp(apply):
    def model_jvp(params, x, tangents):
        return jax.jvp(lambda p: apply(p, x), (params,), (tangents,))  # (output, J v)
    return model_jvp


def _jvp(apply):
    model_jvp = _model_jvp(apply)
    return lambda params, x, tangents: model_jvp(params, x, tangents)[1]


def _model_vjp(apply):
    def model_vjp(params, x, cotangent):
        output, pullback = jax.vjp(lambda p: apply(p, x), params)
        return output, pullback(cotangent)[0]
    return model_vjp


def _vjp(apply):
    model_vjp = _model_vjp(apply)
    return lambda params, x, cotangent: model_vjp(params, x, cotangent)[1]


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
    ("jax.jit", "jvp"): _jvp, ("jax.jit", "model_jvp"): _model_jvp,
    ("jax.jit", "vjp"): _vjp, ("jax.jit", "model_vjp"): _model_vjp,
    ("jax.jit", "batch_jvp"): _batch_jvp, ("jax.jit", "batch_vjp"): _batch_vjp,
    ("jax.jacfwd", "full_jacobian"): _jacobian(jax.jacfwd),
    ("jax.jacrev", "full_jacobian"): _jacobian(jax.jacrev),
}


def jitted(strategy, op, apply):
    """``jax.jit`` of the product ``op`` as ``strategy`` computes it, for the model ``apply``."""
    return jax.jit(PRODUCTS[strategy, op](apply))
