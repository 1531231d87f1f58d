"""What identifies a workload: its signature (paid on every call) and its size.

The signature is what ``auto`` caches its choice under (and the contract the workarounds a
workload needed, compiled its graphs, chunking its forward size): the product, the params' shapes and dtype,
their device, the vectors' shapes (so the batch size k), ``create_graph``, and what the
function is: its code object and the shapes of the tensors and the classes of the modules its
closure captures (and the closures of the functions it captures, two levels down), so
``model_jvp`` on two models, or on two input shapes, are two workloads. Two workloads that share a signature
share a choice, which can only cost speed: every strategy gives the same answer.

The size (:class:`Workload`) is what results and the candidate filters compare: parameter
count P, output size M, batch size k and element size; it is measured once per signature.
"""

import operator
from dataclasses import dataclass

import torch
from torch import nn

from .functional import call_with
from .model_call import ModelCall
from .process_state import random_state_kept

_SHAPE = operator.attrgetter("shape")
_CLOSURE_DEPTH = 2  # how deep the closures a closure captures are read


def _captured(value, depth):
    if isinstance(value, torch.Tensor):
        return value.shape, value.dtype
    if isinstance(value, nn.Module):
        return type(value), value.training
    if depth and (isinstance(value, ModelCall) or callable(value) and hasattr(value, "__code__")):
        return function_key(value, depth - 1)
    return type(value)


def function_key(func, depth=_CLOSURE_DEPTH):
    """What the function is: its code and what its closure captures, or its type; a model's call
    (gvp_bench.model_call) says it itself: the model's class and mode, the input's shape and dtype."""
    if isinstance(func, ModelCall):
        return func.key()
    code = getattr(func, "__code__", None)
    if code is None:
        return type(func)
    captured = []
    for cell in getattr(func, "__closure__", None) or ():
        try:
            captured.append(_captured(cell.cell_contents, depth))
        except ValueError:  # a cell not yet filled
            captured.append(None)
    return code, tuple(captured)


def _vectors_key(product, args):
    """The vectors' shapes where they are not the params': k for batch_jvp, v's shape for the VJPs."""
    if product == "batch_jvp":
        return args[0][0].shape[0]
    if product in ("vjp", "batch_vjp"):
        vectors = args[0]
        return vectors.shape if isinstance(vectors, torch.Tensor) else type(vectors)  # else: the product rejects it
    return None


def _shapes(func, params):
    """The params' shapes; of a model's params (a ModelCall's, with its checked form), those read when the form
    was made: only assigning ``param.data`` a tensor of another shape changes them since, which a form does not
    see (it would cost a read of every shape on every call), and a stale signature can only cost speed."""
    form = func.form if isinstance(func, ModelCall) else None
    return form.shapes if form is not None and form.params is params else tuple(map(_SHAPE, params))


def signature(product, func, params, args):
    """The key auto caches its choice under; ``args`` are the product's arguments after params
    (the vectors, then create_graph). Params' dtypes agree in practice: the first one's stands for all."""
    first = params[0]
    return (product, first.device, first.dtype, _shapes(func, params), _vectors_key(product, args),
            bool(args[-1]), function_key(func))


@dataclass(frozen=True)
class Workload:
    product: str   # jvp, vjp, batch_jvp, batch_vjp or full_jacobian
    device: torch.device
    dtype: torch.dtype
    parameters: int  # P: elements in params
    outputs: int     # M: elements in func()'s output
    batch: int       # k: vectors in the batch, 1 for single products and the Jacobian

    @property
    def itemsize(self):
        return torch.empty((), dtype=self.dtype).element_size()


def _output_size(func, params):
    """func()'s output size, by one forward pass without a graph or a trace in the random state."""
    with random_state_kept(params), torch.no_grad():
        return call_with(func, params, params).numel()


def measure(product, func, params, args):
    """The workload's size; runs func once when the vectors do not tell the output size."""
    vectors = args[0] if product != "full_jacobian" else None
    batch = 1
    if product == "batch_jvp":
        batch = vectors[0].shape[0]
    if product == "vjp" and isinstance(vectors, torch.Tensor):
        outputs = vectors.numel()
    elif product == "batch_vjp" and isinstance(vectors, torch.Tensor) and vectors.dim() and len(vectors):
        batch = vectors.shape[0]
        outputs = vectors.numel() // batch
    else:  # J v, or vectors the product will reject with the error every strategy gives
        outputs = _output_size(func, params)
    first = params[0]
    return Workload(product, first.device, first.dtype, sum(p.numel() for p in params), outputs, batch)
