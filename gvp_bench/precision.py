"""TF32: the float32 precision of CUDA matmuls and cuDNN convolutions and RNNs, read and set.

On Ampere and later GPUs, TF32 computes float32 matmuls and convolutions with a 10-bit
mantissa (about 1e-3 relative error). torch's defaults: TF32 off for matmuls, on for cuDNN
(convolutions and RNNs). Conformance compares float32 results against a float64 oracle at
rtol 1e-4, which TF32 cannot meet, so :func:`strict_fp32` turns it off for the block and
restores the previous settings after. :func:`fp32_state` records the settings in a results
file's fingerprint, so that a TF32 run is told apart from a strict one.

torch has two APIs for these settings (the legacy ``allow_tf32`` flags and
``torch.set_float32_matmul_precision``, and the per-backend ``fp32_precision`` since torch 2.9);
reading a legacy flag raises once the two disagree, so the state is read through the new API and
the float32 matmul precision, and set through both, consistently.
"""

import contextlib

import torch

# (backend, operation) of the per-backend settings, as torch names them
_SETTINGS = (("cuda", "matmul"), ("cudnn", "conv"), ("cudnn", "rnn"))


def _backend(backend, operation):
    return getattr(getattr(torch.backends, backend), operation)


def fp32_state():
    """The float32 precision settings: each backend's ``fp32_precision`` ("ieee", "tf32", or "none":
    its parent's), the float32 matmul precision, and ``tf32``: whether any of them allows TF32."""
    state = {f"{backend}.{operation}": _backend(backend, operation).fp32_precision
             for backend, operation in _SETTINGS}
    state["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    state["tf32"] = "tf32" in state.values() or state["float32_matmul_precision"] != "highest"
    return state


@contextlib.contextmanager
def strict_fp32():
    """float32 matmuls, convolutions and RNNs in full float32 precision for the block (TF32 off)."""
    saved = fp32_state()
    cudnn_flag = _legacy_cudnn_flag()
    torch.backends.cuda.matmul.allow_tf32 = False  # the legacy flags keep both APIs in agreement
    torch.backends.cudnn.allow_tf32 = False
    for backend, operation in _SETTINGS:
        _backend(backend, operation).fp32_precision = "ieee"
    try:
        yield
    finally:
        if cudnn_flag is not None:
            torch.backends.cudnn.allow_tf32 = cudnn_flag
        torch.set_float32_matmul_precision(saved["float32_matmul_precision"])
        for backend, operation in _SETTINGS:
            _backend(backend, operation).fp32_precision = saved[f"{backend}.{operation}"]


def _legacy_cudnn_flag():
    """``torch.backends.cudnn.allow_tf32``, or None where the settings were made through both APIs in
    disagreement (torch then refuses to read it)."""
    try:
        return torch.backends.cudnn.allow_tf32
    except RuntimeError:
        return None
