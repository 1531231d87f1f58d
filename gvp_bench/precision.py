"""TF32: the float32 precision of CUDA matmuls and cuDNN convolutions and RNNs, read and set.

On Ampere and later GPUs, TF32 computes float32 matmuls and convolutions with a 10-bit
mantissa (about 1e-3 relative error). torch's defaults: TF32 off for matmuls, on for cuDNN
(convolutions and RNNs). Conformance compares float32 results against a float64 oracle at
rtol 1e-4, which TF32 cannot meet, so :func:`strict_fp32` turns it off for the block and
restores the previous settings after. :func:`fp32_state` records the settings in a results
file's fingerprint, so that a TF32 run is told apart from a strict one.

torch has two APIs for these settings: the legacy ones (``torch.set_float32_matmul_precision``,
which also sets oneDNN's matmul, and the ``allow_tf32`` flags) and, since torch 2.9, each
backend's ``fp32_precision``. Where the two disagree torch refuses to read a legacy setting (and
a matmul reading it), so the settings are made through the legacy setters first, which keep both
in agreement, and read through the new API; the legacy readings are saved only where torch gives them.
"""

import contextlib

import torch

# (backend, operation) of the per-backend settings, as torch names them: the CUDA ones, and oneDNN's
# matmul, which torch.set_float32_matmul_precision sets along with CUDA's
_CUDA = (("cuda", "matmul"), ("cudnn", "conv"), ("cudnn", "rnn"))
_SAVED = _CUDA + (("mkldnn", "matmul"),)


def _setting(backend, operation):
    return getattr(getattr(torch.backends, backend), operation)


def _effective(backend, operation):
    """The precision in force: the operation's own, else its backend's, else the global one ("none": full)."""
    for value in (_setting(backend, operation).fp32_precision,
                  getattr(getattr(torch.backends, backend), "fp32_precision", "none"), torch.backends.fp32_precision):
        if value != "none":
            return value
    return "none"


def _legacy(read):
    """A legacy reading, or None where torch refuses it (the two APIs were set in disagreement)."""
    try:
        return read()
    except RuntimeError:
        return None


def fp32_state():
    """The float32 precision in force for CUDA matmuls, cuDNN convolutions and RNNs ("ieee", "tf32", or
    "none": full precision), the float32 matmul precision (None where torch refuses to read it), and
    ``tf32``: whether any of them allows TF32."""
    state = {f"{backend}.{operation}": _effective(backend, operation) for backend, operation in _CUDA}
    state["float32_matmul_precision"] = _legacy(torch.get_float32_matmul_precision)
    state["tf32"] = "tf32" in state.values() or state["float32_matmul_precision"] not in ("highest", None)
    return state


@contextlib.contextmanager
def strict_fp32():
    """float32 matmuls, convolutions and RNNs in full float32 precision for the block (TF32 off)."""
    saved = {pair: _setting(*pair).fp32_precision for pair in _SAVED}
    matmul = _legacy(torch.get_float32_matmul_precision)
    cudnn = _legacy(lambda: torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    for backend, operation in _CUDA:
        _setting(backend, operation).fp32_precision = "ieee"
    try:
        yield
    finally:
        if cudnn is not None:
            torch.backends.cudnn.allow_tf32 = cudnn
        if matmul is not None:
            torch.set_float32_matmul_precision(matmul)
        for pair, value in saved.items():
            _setting(*pair).fp32_precision = value
