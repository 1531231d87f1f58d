"""``auto``: chooses a strategy per call by a documented rule, and falls back when it cannot.

The rule (from the measurements in DESIGN.md; issue 5 replaces it by measured choices):

- J v: forward_dual (fastest single JVP measured on MLP and CNN, CPU and GPU), then func_vmap,
  then double_backward (reverse-mode formulas only).
- vᵀJ: double_backward (one backward pass), then func_vmap.
- batches of J v: on CUDA func_vmap (one batched kernel instead of k launches), on the CPU the
  forward_dual loop (vmap gained nothing there and costs memory); the other next.
- batches of vᵀJ: on CUDA func_vmap, on the CPU forward_dual (one forward, a backward per row,
  which beat vmap(vjp) on the CPU); then double_backward.
- the full Jacobian: reverse mode (func_vmap, then jacrev_chunked) when the output has no more
  elements than the params, else forward mode (forward_dual) first.

A strategy that raises UnsupportedError (after its own workarounds) hands the call to the next
one; auto raises UnsupportedError listing every reason only when all of them fail.
``last_choice`` names the strategy that answered the latest call, ``last_workarounds`` what it
needed.
"""

import torch

from gvp_bench.contract import Strategy
from gvp_bench.errors import UnsupportedError
from gvp_bench.functional import call_with
from gvp_bench.registry import get_strategy

_BATCH_JVP = {"cuda": ("func_vmap", "forward_dual", "double_backward"),
              "cpu": ("forward_dual", "func_vmap", "double_backward")}
_BATCH_VJP = {"cuda": ("func_vmap", "double_backward", "forward_dual"),
              "cpu": ("forward_dual", "double_backward", "func_vmap")}
_REVERSE_JACOBIAN = ("func_vmap", "jacrev_chunked", "double_backward", "forward_dual")
_FORWARD_JACOBIAN = ("forward_dual", "func_vmap", "jacrev_chunked", "double_backward")


def _device_kind(params):
    return "cuda" if params[0].is_cuda else "cpu"


class Auto(Strategy):
    name = "auto"

    def __init__(self):
        self.last_choice = None

    def choose(self, op, func, params):
        """The strategy names auto tries for ``op``, in order."""
        if op == "jvp":
            return ("forward_dual", "func_vmap", "double_backward")
        if op == "vjp":
            return ("double_backward", "func_vmap")
        if op == "batch_jvp":
            return _BATCH_JVP[_device_kind(params)]
        if op == "batch_vjp":
            return _BATCH_VJP[_device_kind(params)]
        with torch.no_grad():
            outputs = call_with(func, params, params).numel()
        return _REVERSE_JACOBIAN if outputs <= sum(p.numel() for p in params) else _FORWARD_JACOBIAN

    def _first_that_can(self, op, func, params, *args):
        reasons = []
        for name in self.choose(op, func, params):
            strategy = get_strategy(name)
            try:
                result = strategy.compute(op, func, params, *args)
            except UnsupportedError as error:
                reasons.append(f"{name}: {error.reason}")
                continue
            self.last_choice = name
            return result
        raise UnsupportedError(self.name, "no strategy could compute it; " + "; ".join(reasons))

    def compute(self, product, func, params, *args):
        result = super().compute(product, func, params, *args)
        self.last_workarounds = get_strategy(self.last_choice).last_workarounds  # what the chosen one needed
        return result

    def _jvp(self, func, params, tangents, create_graph):
        return self._first_that_can("jvp", func, params, tangents, create_graph)

    def _vjp(self, func, params, v, create_graph):
        return self._first_that_can("vjp", func, params, v, create_graph)

    def _batch_jvp(self, func, params, tangents, create_graph):
        return self._first_that_can("batch_jvp", func, params, tangents, create_graph)

    def _batch_vjp(self, func, params, vs, create_graph):
        return self._first_that_can("batch_vjp", func, params, vs, create_graph)

    def _full_jacobian(self, func, params, create_graph):
        return self._first_that_can("full_jacobian", func, params, create_graph)
