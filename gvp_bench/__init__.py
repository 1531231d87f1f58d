"""gvp-bench: Jacobian-vector products for PyTorch, by interchangeable strategies.

The names below are imported on first use (PEP 562), so that ``import gvp_bench`` and the command
line's ``--help`` do not import torch.
"""

import importlib

_EXPORTS = {
    "jvp": ".api", "vjp": ".api", "model_jvp": ".api", "model_vjp": ".api", "batch_jvp": ".api",
    "batch_vjp": ".api", "full_jacobian": ".api",
    "hvp": ".second_order", "batch_hvp": ".second_order", "hvp_strategies": ".second_order", "ggn_vp": ".second_order",
    "configure_auto": ".autotune",
    "strategies": ".registry", "get_strategy": ".registry", "register": ".registry", "unregister": ".registry",
    "Strategy": ".contract", "UnsupportedError": ".errors",
    "Workload": ".workload", "benchmark": ".bench.own",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gvp_bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
