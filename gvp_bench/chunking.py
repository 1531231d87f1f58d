"""Memory-budgeted chunking: how many rows of a batched product or a Jacobian to compute at once.

Strategies that batch rows (func_vmap and linearize with vmap, double_backward with
``is_grads_batched``, jacrev_chunked's rows of J) hold every row's intermediates at once, so a
batch takes about k times the memory of a loop over it. They take the
:class:`Chunked` options:

- ``chunk_size``: rows at once; an int, ``None`` (all rows at once) or ``"auto"`` (the default):
  as many as fit the memory budget;
- ``memory_budget`` (with ``"auto"`` only): bytes (an int), or a fraction of the memory free on
  the params' device (a float in (0, 1]; default 0.5, as auto's): on CUDA ``torch.cuda.mem_get_info``'s
  free bytes plus what torch's caching allocator has reserved but not allocated (so the budget does not
  shrink with the blocks earlier work left cached), ``MemAvailable`` on the CPU
  (gvp_bench.memory).

``"auto"`` chooses ``(budget - held) // row``, at least 1 and at most the number of rows, where

- ``row``, one row's cost, is twice the bytes one forward pass of func allocates (every
  intermediate, counted by a dispatch mode in one forward pass without grad; a row's tangents or
  cotangents of them, with their derivative rules' temporaries, took a little more than that), plus
  one row of the vectors and of the result (P + M elements);
- ``held``, what the product holds whatever the chunk, is one forward pass's intermediates (the
  activations reverse mode saves, the constants linearize folds) and its result twice (the
  chunks, then their concatenation).

That counting forward pass is the price of ``"auto"``: it runs once per workload (func's code and
the shapes it captures, the params' shapes, dtypes and device, as auto's signature; two closures
alike in these share the count, which can change their chunk size, never their results) and is
remembered for the process; later calls pay the workload key and a read of the free memory (at
most every FREE_MEMORY_MAX_AGE_S; a call within that of the last read reuses it). An
int ``chunk_size`` skips both. When even one row does not fit, the chunk is 1 and the peak will
exceed the budget: a :class:`MemoryBudgetWarning` says so. The strategy records what it chose in
``last_chunk_size`` and ``last_memory_budget_bytes`` (the engine writes both into its results rows).
"""

import math
import warnings
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .signature import function_key
from .functional import call_with
from .process_state import random_state_kept
from .memory import DEFAULT_MEMORY_FRACTION, budget_bytes, check_memory_budget

AUTO = "auto"
# One row's tangents or cotangents of a forward pass's intermediates, with the temporaries of their
# derivative rules: a little more than the forward pass's bytes per row (func_vmap's batch_jvp of
# tests/test_chunking.py's MLP, CPU), so twice, for a margin.
ROW_FORWARD_PASSES = 2
# A reading of the free memory is reused for this long: repeated products pay the workload key alone (reading
# MemAvailable was most of what chunk_size="auto" added to a call).
FREE_MEMORY_MAX_AGE_S = 0.1
MAX_REMEMBERED = 4096  # workloads whose forward size is remembered; the oldest is forgotten first


class MemoryBudgetWarning(UserWarning):
    """Not even one row of a chunked product fits the memory budget: its peak will exceed it."""


def check_chunk_size(chunk_size):
    """chunk_size as given, or ValueError naming it."""
    if chunk_size is None or (isinstance(chunk_size, str) and chunk_size == AUTO):
        return chunk_size
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, None (all rows at once) or 'auto', got {chunk_size!r}")
    return chunk_size


class _Allocations(TorchDispatchMode):
    """Counts the bytes of the new tensors operations return (a view or an in-place result shares an
    input's storage and is not counted)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        inputs = {t.untyped_storage().data_ptr() for t in tensors}
        for tensor in tree_flatten(result)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().data_ptr() not in inputs:
                self.bytes += tensor.untyped_storage().nbytes()
        return result


@dataclass(frozen=True)
class ForwardSize:
    bytes: int     # what one forward pass allocates
    outputs: int   # M: func()'s output elements
    itemsize: int  # the largest element size among the output and the params


_sizes = {}


def forward_size(func, params):
    """One forward pass's size, measured once per workload (func's code and the shapes it captures,
    the params' shapes, dtypes and device: gvp_bench.signature) and remembered for the process."""
    key = (function_key(func), tuple((p.shape, p.dtype, p.device) for p in params))
    if key not in _sizes:
        if len(_sizes) >= MAX_REMEMBERED:
            del _sizes[next(iter(_sizes))]
        counter = _Allocations()
        with random_state_kept(params), torch.no_grad(), counter:
            output = call_with(func, params, params)
        itemsize = max([output.element_size()] + [p.element_size() for p in params])
        _sizes[key] = ForwardSize(counter.bytes, output.numel(), itemsize)
    return _sizes[key]


class Chunked:
    """The ``chunk_size`` and ``memory_budget`` options of a strategy that computes rows in chunks."""

    last_chunk_size = None           # rows at once in the latest chunked product (None: it did not chunk)
    last_memory_budget_bytes = None  # the budget it was chosen under (None: chunk_size given, or free memory unknown)
    latest_call_defaults = {"last_chunk_size": None, "last_memory_budget_bytes": None}  # (see Strategy)

    def __init__(self, chunk_size=AUTO, memory_budget=None):
        self.chunk_size = check_chunk_size(chunk_size)
        if memory_budget is not None and self.chunk_size != AUTO:
            raise ValueError(f"memory_budget applies to chunk_size='auto' only, not chunk_size={chunk_size!r}")
        self.memory_budget = DEFAULT_MEMORY_FRACTION if memory_budget is None else check_memory_budget(memory_budget)

    def _rows_per_chunk(self, func, params, rows, result_row):
        """How many of ``rows`` rows (None: as many as func()'s output has elements, J's rows) to
        compute at once; ``result_row`` ("outputs" or "parameters") says what one row of the result
        holds. None: all at once (chunk_size=None with rows not known)."""
        budget = None
        if self.chunk_size == AUTO:
            budget = budget_bytes(self.memory_budget, params[0].device, FREE_MEMORY_MAX_AGE_S)
            chunk = self._fitting(func, params, rows, result_row, budget)
        elif self.chunk_size is None:
            chunk = rows
        else:
            chunk = self.chunk_size if rows is None else min(rows, self.chunk_size)
        self.last_chunk_size = None if chunk is None else max(chunk, 1)
        self.last_memory_budget_bytes = int(budget) if budget is not None and math.isfinite(budget) else None
        return self.last_chunk_size

    def _fitting(self, func, params, rows, result_row, budget):
        size = forward_size(func, params)
        rows = size.outputs if rows is None else rows
        parameters = sum(p.numel() for p in params)
        row = ROW_FORWARD_PASSES * size.bytes + (parameters + size.outputs) * size.itemsize
        held = size.bytes + 2 * rows * (size.outputs if result_row == "outputs" else parameters) * size.itemsize
        if rows and row + held > budget:
            warnings.warn(f"gvp_bench: one row needs about {row + held} bytes with the result, over the memory "
                          f"budget of {budget:.0f} bytes; computing one row at a time", MemoryBudgetWarning,
                          stacklevel=4)
            return 1
        return int(min(rows, (budget - held) // row)) if row else rows  # (an unknown budget is inf)


def in_chunks(compute, rows, chunk):
    """``compute(start, stop)`` for consecutive chunks of ``rows`` rows, concatenated along the first
    dimension; compute returns a tensor or a sequence of tensors (one per param)."""
    if chunk >= rows:
        return compute(0, rows)
    parts = [compute(start, min(start + chunk, rows)) for start in range(0, rows, chunk)]
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return tuple(torch.cat(per_param) for per_param in zip(*parts))


def identity_tangents(params, start, stop):
    """Rows ``start`` to ``stop`` of the identity over all param elements, cut like params: a
    tuple of (stop - start, *param shape) tangents, the columns ``start:stop`` of J pushed forward."""
    sizes = [p.numel() for p in params]
    tangents, offset = [], 0
    rows = torch.arange(stop - start)
    for param, size in zip(params, sizes):
        block = torch.zeros(stop - start, size, dtype=param.dtype, device=param.device)
        hit = (rows + start >= offset) & (rows + start < offset + size)
        block[rows[hit], (rows[hit] + start - offset)] = 1
        tangents.append(block.reshape((stop - start,) + tuple(param.shape)))
        offset += size
    return tuple(tangents)


def forward_mode_jacobian(columns, params, chunk, output_numel):
    """J's blocks from its columns pushed forward ``chunk`` at a time: ``columns(tangents)`` gives J
    times a batch of identity tangents, (batch, *output shape) in the output's dtype; each block gets
    its param's dtype. ``output_numel()`` gives M when no param has elements (no columns to push)."""
    parameters = sum(p.numel() for p in params)
    if parameters == 0:
        jacobian = torch.zeros(output_numel(), 0)
    else:
        pushed = in_chunks(lambda start, stop: columns(identity_tangents(params, start, stop)), parameters, chunk)
        jacobian = pushed.reshape(parameters, math.prod(pushed.shape[1:])).T
    blocks = jacobian.split([p.numel() for p in params], dim=1)
    return tuple(b.reshape((jacobian.shape[0],) + tuple(p.shape)).to(dtype=p.dtype, device=p.device)
                 for b, p in zip(blocks, params))
