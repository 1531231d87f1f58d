"""Scoped workarounds for operators that lack a derivative rule a strategy needs.

Measured with torch 2.11 to 2.14: nn.TransformerEncoderLayer's fused fast path
(aten::_transformer_encoder_layer_fwd) has no forward-AD formula; the flash and
memory-efficient attention kernels have neither a forward-AD formula nor a double backward;
cuDNN's and oneDNN's RNN kernels have no forward-AD formula or double backward. Each has an
equivalent slower path. When a strategy raises UnsupportedError naming such an operator, the
contract retries the call inside the matching workaround's context (which restores the global
setting on exit), warns with :class:`WorkaroundWarning`, and records the names in the
strategy's ``last_workarounds``.
"""

import contextlib
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


class WorkaroundWarning(UserWarning):
    """A product was computed with a workaround (a slower but differentiable path)."""


@contextlib.contextmanager
def _mha_fast_path_off():
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


@contextlib.contextmanager
def _mkldnn_off():
    # Setting the flags also resets oneDNN's TF32 switch, which warns on builds without Intel GPU support.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "TF32 acceleration on top of oneDNN", UserWarning)
        flags = torch.backends.mkldnn.flags(enabled=False)
        flags.__enter__()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "TF32 acceleration on top of oneDNN", UserWarning)
            flags.__exit__(None, None, None)


@dataclass(frozen=True)
class Workaround:
    name: str
    description: str
    operators: tuple  # operator name prefixes (without "aten::") it avoids
    context: Callable


WORKAROUNDS = (
    Workaround("mha_fast_path_off", "the nn.MultiheadAttention / TransformerEncoderLayer fast path disabled",
               ("_transformer_encoder_layer_fwd", "_native_multi_head_attention", "_masked_softmax"),
               _mha_fast_path_off),
    Workaround("sdpa_math", "scaled_dot_product_attention on its math backend",
               ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_fused_attention", "_flash_attention",
                "_efficient_attention"),
               lambda: sdpa_kernel(SDPBackend.MATH)),
    Workaround("cudnn_off", "cuDNN disabled for the call (its RNN kernels lack forward AD and double backward)",
               ("_cudnn_rnn", "cudnn_rnn", "_cudnn"), lambda: torch.backends.cudnn.flags(enabled=False)),
    Workaround("mkldnn_off", "oneDNN (mkldnn) disabled for the call (its RNN kernel lacks forward AD)",
               ("mkldnn_rnn", "_mkldnn"), _mkldnn_off),
)


def workaround_for(operator):
    """The workaround that avoids ``operator``, or None."""
    if not operator:
        return None
    name = operator.split("::")[-1]
    for workaround in WORKAROUNDS:
        if name.startswith(workaround.operators):
            return workaround
    return None
