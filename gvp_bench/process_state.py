"""The process-wide state a product may enter: read it, and put back what a call left entered.

torch keeps state for the whole thread that transforms and contexts enter and leave: the
functorch transform stack (torch.func's grad, jvp, vmap levels), forward-AD dual levels,
saved-tensor hooks (their stack, and whether they are disabled, as torch.func and
torch.compile's tracing do), torch-function and dispatch modes, grad mode, and the backend
flags the workarounds switch (cuDNN, oneDNN, the attention kernels, the MultiheadAttention fast
path). A context that is left by an error without unwinding leaves it entered, and every later
call of the process then fails or computes in the wrong mode. torch.compile does this: when
inductor fails on a graph it traced inside ``disable_saved_tensors_hooks`` (a reentrant
``torch.utils.checkpoint`` under torch.func), the saved-tensor hooks stay disabled, and every
later torch.func product with a non-reentrant checkpoint raises.

:func:`snapshot` reads the state (a tuple of a few dozen cheap readings), :func:`restore` puts
back what differs and names it, and :func:`left_as_found` does both around a block that raises
(any exception, KeyboardInterrupt included). The random state is not restored: the
contract scopes its own changes of it (``torch.random.fork_rng``), and a func that draws random
numbers moves the generator as calling it would. :func:`random_state` reads it, for checks.
"""

from typing import NamedTuple

import torch
from torch.autograd import forward_ad

_C = torch._C
_mha = torch.backends.mha


class ProcessState(NamedTuple):
    """One reading of the state :func:`restore` can put back, flat (one reading per field) to be cheap."""
    grad_enabled: bool
    forward_grad_enabled: bool
    anomaly_enabled: bool
    anomaly_check_nan: bool
    functorch_depth: int                   # functorch's dynamic layer stack (torch.func transforms)
    functorch_inplace_requires_grad: bool
    functorch_single_level_function: bool
    forward_ad_level: int                  # -1 outside every dual level
    saved_tensors_hooks: object            # the top (pack, unpack) pair, or None
    saved_tensors_hooks_disabled: object   # the error message they raise while disabled, or None
    saved_tensors_hooks_tracing: bool
    torch_function_modes: int
    dispatch_modes: int                    # the fake, proxy and functional modes included
    only_lift_cpu_tensors: bool            # set by a fake-tensor mode (torch.compile's tracing)
    default_dtype: torch.dtype
    cudnn_enabled: bool
    mkldnn_enabled: bool
    mha_fast_path: bool
    sdp_flash: bool
    sdp_mem_efficient: bool
    sdp_math: bool
    sdp_cudnn: bool
    sdp_overrideable: bool
    sdp_priority: tuple


def snapshot():
    """The current :class:`ProcessState` (made without the NamedTuple's Python-level constructor: it is read on
    every call)."""
    tracing = _C._autograd._saved_tensors_hooks_set_tracing(False)  # torch reads it only by setting it
    _C._autograd._saved_tensors_hooks_set_tracing(tracing)
    return tuple.__new__(ProcessState, (
        torch.is_grad_enabled(), _C._is_fwd_grad_enabled(), _C.is_anomaly_enabled(), _C.is_anomaly_check_nan_enabled(),
        _C._functorch.get_dynamic_layer_stack_depth(), _C._functorch.get_inplace_requires_grad_allowed(),
        _C._functorch.get_single_level_autograd_function_allowed(), forward_ad._current_level,
        _C._autograd._top_saved_tensors_default_hooks(True),
        _C._autograd._saved_tensors_hooks_get_disabled_error_message(), tracing,
        _C._len_torch_function_stack(), _C._len_torch_dispatch_stack(),
        _C._only_lift_cpu_tensors(), torch.get_default_dtype(),
        _C._get_cudnn_enabled(), _C._get_mkldnn_enabled(), _mha._is_fastpath_enabled,
        _C._get_flash_sdp_enabled(), _C._get_mem_efficient_sdp_enabled(), _C._get_math_sdp_enabled(),
        _C._get_cudnn_sdp_enabled(), _C._get_overrideable_sdp_enabled(), tuple(_C._get_sdp_priority_order())))


def _put_back_saved_tensors_hooks(before):
    while True:
        top = _C._autograd._top_saved_tensors_default_hooks(True)
        if top is None or top == before.saved_tensors_hooks:
            return
        _C._autograd._pop_saved_tensors_default_hooks()


def _put_back_saved_tensors_hooks_disabled(before):
    if before.saved_tensors_hooks_disabled is None:
        _C._autograd._saved_tensors_hooks_enable()
    else:
        _C._autograd._saved_tensors_hooks_disable(before.saved_tensors_hooks_disabled)


def _pop_until(length, read, pop):
    while read() > length:
        pop()


# How to put back each field, innermost first: the modes and levels a failed call entered last are left first.
_PUT_BACK = {
    "torch_function_modes": lambda before: _pop_until(before.torch_function_modes, _C._len_torch_function_stack,
                                                      _C._pop_torch_function_stack),
    "dispatch_modes": lambda before: _pop_until(before.dispatch_modes, _C._len_torch_dispatch_stack,
                                                lambda: _C._pop_torch_dispatch_stack(None)),
    "functorch_depth": lambda before: _C._functorch.pop_dynamic_layer_stack_and_undo_to_depth(before.functorch_depth),
    "forward_ad_level": lambda before: _pop_until(before.forward_ad_level, lambda: forward_ad._current_level,
                                                  forward_ad.exit_dual_level),
    "saved_tensors_hooks": _put_back_saved_tensors_hooks,
    "saved_tensors_hooks_disabled": _put_back_saved_tensors_hooks_disabled,
    "saved_tensors_hooks_tracing": lambda before: _C._autograd._saved_tensors_hooks_set_tracing(
        before.saved_tensors_hooks_tracing),
    "grad_enabled": lambda before: _C._set_grad_enabled(before.grad_enabled),
    "forward_grad_enabled": lambda before: _C._set_fwd_grad_enabled(before.forward_grad_enabled),
    "anomaly_enabled": lambda before: _C.set_anomaly_enabled(before.anomaly_enabled, before.anomaly_check_nan),
    "anomaly_check_nan": lambda before: _C.set_anomaly_enabled(before.anomaly_enabled, before.anomaly_check_nan),
    "functorch_inplace_requires_grad": lambda before: _C._functorch.set_inplace_requires_grad_allowed(
        before.functorch_inplace_requires_grad),
    "functorch_single_level_function": lambda before: _C._functorch.set_single_level_autograd_function_allowed(
        before.functorch_single_level_function),
    "only_lift_cpu_tensors": lambda before: _C._set_only_lift_cpu_tensors(before.only_lift_cpu_tensors),
    "default_dtype": lambda before: torch.set_default_dtype(before.default_dtype),
    "cudnn_enabled": lambda before: _C._set_cudnn_enabled(before.cudnn_enabled),
    "mkldnn_enabled": lambda before: _C._set_mkldnn_enabled(before.mkldnn_enabled),
    "mha_fast_path": lambda before: _mha.set_fastpath_enabled(before.mha_fast_path),
    "sdp_flash": lambda before: _C._set_sdp_use_flash(before.sdp_flash),
    "sdp_mem_efficient": lambda before: _C._set_sdp_use_mem_efficient(before.sdp_mem_efficient),
    "sdp_math": lambda before: _C._set_sdp_use_math(before.sdp_math),
    "sdp_cudnn": lambda before: _C._set_sdp_use_cudnn(before.sdp_cudnn),
    "sdp_overrideable": lambda before: _C._set_sdp_use_overrideable(before.sdp_overrideable),
    "sdp_priority": lambda before: _C._set_sdp_priority_order(list(before.sdp_priority)),
}


def changed(before, after):
    """The names of the fields that differ between two readings."""
    return [name for name, old, new in zip(ProcessState._fields, before, after) if old != new]


def restore(before):
    """Put back every part of the state that differs from ``before``; the names of those parts (empty: none)."""
    names = changed(before, snapshot())
    for name in _PUT_BACK:
        if name in names:
            _PUT_BACK[name](before)
    return names


class left_as_found:
    """Run the block; if it raises, put back whatever part of the state it left changed.

    A block that ends normally left its contexts the way it entered them (they unwind on the way out), so only a
    failure is checked: the reading afterwards is saved on every call that succeeds. Every attempt at a product
    gets the same from its gvp_bench.blind_spots.product_scope."""

    __slots__ = ("before",)

    def __enter__(self):
        self.before = snapshot()

    def __exit__(self, exc_type, *exc_info):
        if exc_type is not None:
            restore(self.before)


def cuda_devices(tensors):
    """The indices of the CUDA devices ``tensors`` are on, sorted (for ``torch.random.fork_rng``)."""
    return sorted({t.device.index or 0 for t in tensors if t.is_cuda})


def random_state_kept(tensors):
    """A context in which a call may draw random numbers and leave the generators as they were: the CPU's, and
    those of the CUDA devices ``tensors`` are on (``torch.random.fork_rng``). For calls of func that probe it."""
    return torch.random.fork_rng(devices=cuda_devices(tensors))


def random_state():
    """The CPU generator's state and, where CUDA is initialised, every CUDA generator's (for checks)."""
    cuda = tuple(torch.cuda.get_rng_state_all()) if torch.cuda.is_initialized() else ()
    return (torch.get_rng_state(), *cuda)
