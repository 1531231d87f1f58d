"""Every registered strategy x every case x every function x float32/float64 x cpu (and cuda).

A cell passes, or is unsupported with its reason (shown as a skip). For the built-in strategies
the unsupported cells are listed below: any other unsupported cell is a regression.

Strategies whose first call per workload compiles (compiled, cuda_graphs: seconds per cell on 2
cores, 16 minutes for all of compiled's cells under load) run here on a representative subset of
the cases, COMPILED_CASES. linearize traces func on every call (about 1 s per zoo RNN or transformer
cell, 72 s for all its cells): it runs on every case but the zoo's, and on the zoo's models in eval
mode that are no RNN (LINEARIZE_ZOO_CASES). ``gvp-bench conformance --strategies
compiled,cuda_graphs,linearize`` runs them all.
"""

import pytest
import torch

import gvp_bench
from gvp_bench.conformance import CASES, run_cell
from conftest import DEVICES

# The analytic Jacobian (its create_graph refused after the first-order checks); a 0-d param; unused params; a
# custom autograd.Function (refused in part); BatchNorm in train mode (the closure's random state set around the
# compiled product) and eval mode (buffers); dropout's one mask (first-order checks, then create_graph refused).
COMPILED_CASES = ("documented_example", "matrix_output", "unused_params", "custom_function", "batchnorm_train",
                  "batchnorm_eval", "dropout_train",
                  # what it refuses before compiling (gvp_bench.blind_spots)
                  "derived_outside_func", "weight_norm", "hessian_by_composition", "embedding_max_norm",
                  "float16_params", "overlapping_params")
LINEARIZE_ZOO_CASES = ("zoo_mlp_eval", "zoo_cnn_eval", "zoo_transformer_eval", "zoo_scalar5_eval", "zoo_tall_eval")


def checked_in_ci(strategy, case):
    if gvp_bench.get_strategy(strategy).costly_first_call:
        return case.name in COMPILED_CASES
    if strategy == "linearize":
        return not case.name.startswith("zoo_") or case.name in LINEARIZE_ZOO_CASES
    return True


CELLS = [
    pytest.param(strategy, case, function, id=f"{strategy}-{case.name}-{function}")
    for case in CASES for function in case.functions for strategy in gvp_bench.strategies()
    if checked_in_ci(strategy, case)
]

BUILT_IN = {"auto", "autograd_functional", "double_backward", "forward_dual", "func_vmap", "jacrev_chunked",
            "linearize", "reference_loop", "compiled", "cuda_graphs"}
EXPECTED_UNSUPPORTED = {
    ("forward_dual", "custom_function_backward_only"): "defines no jvp",
    ("func_vmap", "custom_function_backward_only"): "setup_context",
    ("jacrev_chunked", "custom_function_backward_only"): "setup_context",
    ("compiled", "custom_function"): "Unsupported custom jvp",
    ("linearize", "custom_function_backward_only"): "defines no jvp",
    ("linearize", "dropout_train"): "draws random numbers",
    # the other second-order cases: linearize's J v carries no graph
    **{("linearize", case): "create_graph=True" for case in ("documented_example", "second_order", "mlp_frozen")},
    # What a substitution of params cannot see (gvp_bench.blind_spots): a graph to a param made outside func,
    # a product computed inside func by another strategy; torch.compile and parametrizations.
    **{(strategy, case): "cannot follow that graph"
       for strategy in ("autograd_functional", "forward_dual", "func_vmap", "jacrev_chunked", "linearize", "compiled")
       for case in ("derived_outside_func", "derived_view_outside_func")},
    **{(strategy, case): "a product of a product"
       for strategy in ("autograd_functional", "forward_dual", "func_vmap", "jacrev_chunked", "linearize", "compiled")
       for case in ("hessian_by_composition", "hessian_by_composition_functional")},
    **{(strategy, "weight_norm"): "_weight_norm_interface" for strategy in ("forward_dual", "func_vmap", "linearize")},
    ("compiled", "weight_norm"): "parametrized tensor",
    ("compiled", "parametrize_symmetric"): "parametrized tensor",
    # autograd's sparse gradients of F.embedding(sparse=True) where a batch or a J v reshapes them
    ("double_backward", "embedding_sparse"): "sparse gradients",
    ("reference_loop", "embedding_sparse"): "sparse gradients",
}
# Cases whose model_jvp / model_vjp compiled refuses as it refuses their closure.
COMPILED_REFUSES_MODEL_TOO = {"weight_norm", "parametrize_symmetric"}
# Whole functions a strategy does not offer, in every case.
EXPECTED_UNSUPPORTED_FUNCTIONS = {
    ("linearize", "vjp"): "J v only",
    ("linearize", "model_vjp"): "J v only",
    ("linearize", "batch_vjp"): "J v only",
}


def expected_unsupported(strategy, case, function, device):
    """What the reason of an expected unsupported cell says, or None."""
    if strategy == "cuda_graphs" and device == "cpu":
        return "CUDA graphs record CUDA kernels"
    if strategy in ("compiled", "cuda_graphs"):
        closure_reason = EXPECTED_UNSUPPORTED.get(("compiled", case.name))
        if closure_reason and (not function.startswith("model_") or case.name in COMPILED_REFUSES_MODEL_TOO):
            return closure_reason
        return "create_graph=True" if case.second_order else None  # checked after the first-order products
    return EXPECTED_UNSUPPORTED_FUNCTIONS.get((strategy, function)) or EXPECTED_UNSUPPORTED.get((strategy, case.name))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("strategy,case,function", CELLS)
def test_cell(strategy, case, function, dtype, device):
    outcome = run_cell(strategy, case, function, dtype, device)
    if outcome.status == "unsupported":
        if strategy in BUILT_IN:
            expected = expected_unsupported(strategy, case, function, device)
            case_reason = EXPECTED_UNSUPPORTED.get((strategy, case.name))  # found first where func runs first
            assert (expected is not None and expected in outcome.detail) or (case_reason and case_reason in outcome.detail), \
                f"unexpectedly unsupported: {outcome.detail}"
        pytest.skip(f"unsupported: {outcome.detail}")
    assert outcome.status in ("pass", "refused"), outcome.detail  # refused: the case's typed error, as expected
