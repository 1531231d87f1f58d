"""``autograd_functional``: torch.autograd.functional's jvp, vjp and jacobian(vectorize=True).

How: func becomes a function of its params (see gvp_bench.functional) and is handed to
torch.autograd.functional. Its jvp is the double-backward trick (its documentation says it
is not the fastest way), vjp one backward pass; batches are a Python loop over vectors, and
the Jacobian is ``jacobian(vectorize=True)``, vmap over the backward pass.

When it wins: rarely on speed; it is what many users call today, so it is measured as the
"before" of a switch. Its vectorised Jacobian is competitive for small outputs.
"""

import torch
from torch.autograd import functional as autograd_functional

from gvp_bench.kit import (SUBSTITUTION_BLIND_SPOTS, EmptyOutputPadding, Strategy, as_function_of,
                           check_batch_cotangents, check_cotangent, primals_of, require_batch)


def _checked_against_output(func, params, v, batched):
    """The functional form, which checks v against its output and returns the output shaped like
    v (like one row of v when batched), so that a flat v is accepted."""
    function = as_function_of(func, params)

    def function_shaped_like_v(*replacements):
        output = function(*replacements)
        if batched:
            check_batch_cotangents(v, output)
            return output.reshape(v.shape[1:])
        check_cotangent(v, output)
        return output.reshape(v.shape)

    return function_shaped_like_v


class AutogradFunctional(Strategy):
    name = "autograd_functional"
    unsupported = SUBSTITUTION_BLIND_SPOTS

    def _jvp(self, func, params, tangents, create_graph):
        primals = primals_of(params, create_graph)
        return autograd_functional.jvp(as_function_of(func, params), primals, tangents, create_graph=create_graph)[1]

    def _batch_jvp(self, func, params, tangents, create_graph):
        return torch.stack([self._jvp(func, params, row, create_graph) for row in zip(*tangents)])

    def _vjp(self, func, params, v, create_graph):
        function = _checked_against_output(func, params, v, batched=False)
        return autograd_functional.vjp(function, primals_of(params, create_graph), v, create_graph=create_graph)[1]

    def _batch_vjp(self, func, params, vs, create_graph):
        function = _checked_against_output(func, params, vs, batched=True)
        primals = primals_of(params, create_graph)
        rows = [autograd_functional.vjp(function, primals, u, create_graph=create_graph)[1]
                for u in require_batch(vs)]
        return tuple(torch.stack(per_param) for per_param in zip(*rows))

    def _full_jacobian(self, func, params, create_graph):
        function, padding = as_function_of(func, params), EmptyOutputPadding()
        blocks = autograd_functional.jacobian(lambda *replacements: padding.pad(function(*replacements)),
                                              primals_of(params, create_graph), create_graph=create_graph,
                                              vectorize=True)
        return tuple(padding.rows(b, p) for b, p in zip(blocks, params))
