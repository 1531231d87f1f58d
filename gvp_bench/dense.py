"""Products with a materialised Jacobian, shared by the strategies that build J first
(jacrev_chunked, and reference_loop's J v).

J is held as one (output numel, param numel) matrix per param, each in its param's dtype, as reverse
mode gives it. The products have the contract's dtypes whatever the mix of dtypes: J v the output's,
vᵀJ each param's. In the products a term with a zero factor is zero, whatever the other factor:
a NaN or inf in the vectors (or in J) reaches only the results it has a nonzero term in, as it does
through the graph in forward and reverse mode (README.md, "Guarantees"), where a plain matrix
product (IEEE 0 · NaN = NaN) would spread it over every result.
"""

import math

import torch


def _times_transposed(vectors, matrix):
    """vectors @ matrix.T for (batch, n) vectors and an (m, n) matrix of one dtype, where a term with a
    zero factor is zero whatever the other factor is: NaN and inf reach a result only through nonzero
    terms, with IEEE arithmetic's value there (NaN; ±inf, or NaN where +inf and -inf meet)."""
    if bool(torch.isfinite(vectors).all() & torch.isfinite(matrix).all()):
        return vectors @ matrix.T  # the usual case: one matrix product (the check costs one GPU synchronisation)
    products = _finite(vectors) @ _finite(matrix).T

    def count(in_vectors, in_matrix):
        """How many terms j have in_vectors[b, j] and in_matrix[i, j], as a (batch, m) matrix."""
        return in_vectors.to(vectors.dtype) @ in_matrix.to(vectors.dtype).T

    v, a, inf = vectors, matrix, math.inf
    nan = count(v != 0, a.isnan()) + count(v.isnan(), a != 0)
    positive = count(v > 0, a == inf) + count(v < 0, a == -inf) + count(v == inf, a > 0) + count(v == -inf, a < 0)
    negative = count(v < 0, a == inf) + count(v > 0, a == -inf) + count(v == -inf, a > 0) + count(v == inf, a < 0)
    products = torch.where(positive > 0, inf, torch.where(negative > 0, -inf, products))
    return torch.where((nan > 0) | ((positive > 0) & (negative > 0)), math.nan, products)


def _finite(tensor):
    return torch.where(torch.isfinite(tensor), tensor, 0)


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
