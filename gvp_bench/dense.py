"""Products with a materialised Jacobian, shared by the strategies that build J first
(jacrev_chunked, and reference_loop's J v).

J is held as one (output numel, param numel) matrix per param, each in its param's dtype, as reverse
mode gives it. The products have the contract's dtypes whatever the mix of dtypes: J v the output's,
vᵀJ each param's.
"""

import torch


def _times_transposed(vectors, matrix):
    """vectors @ matrix.T for (batch, n) vectors and an (m, n) matrix of one dtype."""
    return vectors @ matrix.T


def jacobian_vector_products(matrices, tangents, output, batch=None):
    """J v from the per-param matrices and tangents, in the output's dtype and shape; with ``batch``,
    tangents carry a batch dimension first and the result is (batch, *output shape)."""
    rows = 1 if batch is None else batch
    products = output.new_zeros(rows, output.numel())
    for matrix, tangent in zip(matrices, tangents):
        products = products + _times_transposed(tangent.reshape(rows, matrix.shape[1]), matrix).to(output.dtype)
    return products.reshape(tuple(output.shape) if batch is None else (batch,) + tuple(output.shape))


def vector_jacobian_products(matrices, cotangents, params, batch=None):
    """vᵀJ from the per-param matrices and a cotangent shaped like the output, one tensor per param in
    its shape and dtype; with ``batch``, cotangents and results carry a batch dimension first."""
    rows = 1 if batch is None else batch
    lead = () if batch is None else (batch,)
    flat = cotangents.reshape(rows, matrices[0].shape[0])
    return tuple(_times_transposed(flat.to(matrix.dtype), matrix.T).reshape(lead + tuple(param.shape))
                 for matrix, param in zip(matrices, params))
