"""gvp-bench: Jacobian-vector products for PyTorch, by interchangeable strategies."""

from .autotune import configure_auto
from .api import batch_jvp, batch_vjp, full_jacobian, jvp, model_jvp, model_vjp, vjp
from .contract import Strategy
from .errors import UnsupportedError
from .registry import get_strategy, register, strategies, unregister
from .second_order import batch_hvp, ggn_vp, hvp, hvp_strategies
from .workload import Workload


def __getattr__(name):
    """``benchmark`` on first use: it loads the benchmark engine, which the other functions do not need."""
    if name == "benchmark":
        from .bench.own import benchmark

        return benchmark
    raise AttributeError(f"module 'gvp_bench' has no attribute {name!r}")

__all__ = [
    "jvp", "vjp", "model_jvp", "model_vjp", "batch_jvp", "batch_vjp", "full_jacobian",
    "hvp", "batch_hvp", "hvp_strategies", "ggn_vp",
    "configure_auto", "strategies", "get_strategy", "register", "unregister", "Strategy", "UnsupportedError",
    "Workload", "benchmark",
]
