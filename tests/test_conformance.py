"""Every registered strategy x every case x every function x float32/float64 x cpu (and cuda).

A cell passes, or is unsupported with its reason (shown as a skip). For the built-in strategies
the unsupported cells are listed below: any other unsupported cell is a regression.
"""

import pytest
import torch

import gvp_bench
from gvp_bench.conformance import CASES, run_cell
from conftest import DEVICES

CELLS = [
    pytest.param(strategy, case, function, id=f"{strategy}-{case.name}-{function}")
    for case in CASES for function in case.functions for strategy in gvp_bench.strategies()
]

BUILT_IN = {"auto", "autograd_functional", "double_backward", "forward_dual", "func_vmap", "jacrev_chunked",
            "linearize", "reference_loop"}
EXPECTED_UNSUPPORTED = {
    ("forward_dual", "custom_function_backward_only"): "defines no jvp",
    ("func_vmap", "custom_function_backward_only"): "setup_context",
    ("jacrev_chunked", "custom_function_backward_only"): "setup_context",
    ("linearize", "custom_function_backward_only"): "defines no jvp",
    ("linearize", "dropout_train"): "draws random numbers",
    # the other second-order cases: linearize's J v carries no graph
    **{("linearize", case): "create_graph=True" for case in ("documented_example", "second_order", "mlp_frozen")},
}
# Whole functions a strategy does not offer, in every case.
EXPECTED_UNSUPPORTED_FUNCTIONS = {
    ("linearize", "vjp"): "J v only",
    ("linearize", "model_vjp"): "J v only",
    ("linearize", "batch_vjp"): "J v only",
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("strategy,case,function", CELLS)
def test_cell(strategy, case, function, dtype, device):
    outcome = run_cell(strategy, case, function, dtype, device)
    if outcome.status == "unsupported":
        if strategy in BUILT_IN:
            expected = (EXPECTED_UNSUPPORTED_FUNCTIONS.get((strategy, function))
                        or EXPECTED_UNSUPPORTED.get((strategy, case.name)))
            assert expected is not None and expected in outcome.detail, f"unexpectedly unsupported: {outcome.detail}"
        pytest.skip(f"unsupported: {outcome.detail}")
    assert outcome.status == "pass", outcome.detail
