"""The kit for writing a strategy: everything a strategy module needs, in one public module.

A strategy is one file: a subclass of :class:`Strategy` that sets ``name``, implements the five
products on checked arguments (``_jvp``, ``_vjp``, ``_batch_jvp``, ``_batch_vjp``,
``_full_jacobian``), and declares what it refuses in ``unsupported`` (:class:`Unsupported`
entries naming :data:`FEATURES`); it joins through an entry point in the group
``gvp_bench.strategies``. The contract validates the input, derives ``model_jvp`` /
``model_vjp``, turns torch's missing-formula errors into :class:`UnsupportedError` and detaches
results, so a strategy does none of that. ``docs/adding-a-strategy.md`` walks through an example.

What the products receive: ``params`` as a tuple of tensors; JVP tangents as a tuple matching
params (batches with the batch dimension first); VJP cotangents as the user gave them, to check
with :func:`check_cotangent` / :func:`check_batch_cotangents` once func()'s output is known.

The helpers, by job:

- the functional form of ``func`` (torch.func needs the params as inputs): :func:`as_function_of`,
  :func:`call_with`, :func:`primals_of`, :class:`EmptyOutputPadding`;
- reverse mode with torch.autograd: :func:`forward_with_graph`, :func:`grad_or_zeros`,
  :func:`reverse_vjp`, :func:`identity_cotangents`, :func:`zeros_for`;
- products with a materialised Jacobian: :func:`jacobian_vector_products`,
  :func:`vector_jacobian_products`;
- rows in memory-budgeted chunks: :class:`Chunked` (the ``chunk_size`` / ``memory_budget``
  options), :func:`in_chunks`, :func:`forward_mode_jacobian`;
- building on other strategies: :meth:`Strategy.implementation` (another strategy's product on
  checked arguments), :class:`Delegating` (all five products through one method),
  :func:`get_strategy`;
- models: :func:`model_closure`, :func:`buffers_protected_call`, :func:`one_random_state`, :func:`split_random_state`,
  :func:`check_model`;
- caching per workload: :func:`signature`;
- what every strategy that substitutes params cannot see, to add to its ``unsupported``:
  :data:`SUBSTITUTION_BLIND_SPOTS`; and what forward mode cannot do: :data:`NO_FORWARD_FORMULA`.
"""

from .blind_spots import SUBSTITUTION_BLIND_SPOTS
from .chunking import Chunked, forward_mode_jacobian, in_chunks
from .contract import PRODUCTS, Delegating, Strategy
from .model_call import buffers_protected_call, model_closure, one_random_state, split_random_state
from .dense import jacobian_vector_products, vector_jacobian_products
from .errors import UnsupportedError
from .functional import EmptyOutputPadding, as_function_of, call_with, custom_functions_called, primals_of
from .registry import get_strategy
from .reverse import forward_with_graph, grad_or_zeros, identity_cotangents, reverse_vjp, zeros_for
from .signature import signature
from .support import FEATURES, NO_FORWARD_FORMULA, Unsupported
from .validation import check_batch_cotangents, check_cotangent, check_model, require_batch

__all__ = [
    "Strategy", "Delegating", "PRODUCTS", "Unsupported", "FEATURES", "UnsupportedError", "SUBSTITUTION_BLIND_SPOTS",
    "NO_FORWARD_FORMULA",
    "as_function_of", "call_with", "primals_of", "EmptyOutputPadding", "custom_functions_called",
    "forward_with_graph", "grad_or_zeros", "reverse_vjp", "identity_cotangents", "zeros_for",
    "jacobian_vector_products", "vector_jacobian_products",
    "Chunked", "in_chunks", "forward_mode_jacobian",
    "get_strategy", "model_closure", "buffers_protected_call", "one_random_state", "split_random_state",
    "check_model",
    "check_cotangent", "check_batch_cotangents", "require_batch", "signature",
]
