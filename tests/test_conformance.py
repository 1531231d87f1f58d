"""Every registered strategy x every case x every function x float32/float64 x cpu (and cuda).

A cell passes, or is unsupported with its reason (shown as a skip). A strategy declares what it
refuses in its ``unsupported`` class data (gvp_bench.support): any other unsupported cell is a
regression, for every registered strategy.

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
from gvp_bench import support
from gvp_bench.conformance import CASES, run_cell
from conftest import DEVICES

# The analytic Jacobian (its create_graph refused after the first-order checks); a 0-d param; unused params; a
# custom autograd.Function (refused: it would differentiate the forward, not the Function's own jvp); BatchNorm in
# train mode (the closure's random state set around the compiled product) and eval mode (buffers); dropout's one
# mask (first-order checks, then create_graph refused).
COMPILED_CASES = ("documented_example", "matrix_output", "unused_params", "custom_function", "batchnorm_train",
                  "batchnorm_eval", "dropout_train",
                  # what it refuses before compiling (gvp_bench.blind_spots)
                  "derived_outside_func", "weight_norm", "hessian_by_composition", "embedding_max_norm",
                  "float16_params", "overlapping_params", "custom_function_rules")
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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("strategy,case,function", CELLS)
def test_cell(strategy, case, function, dtype, device):
    outcome = run_cell(strategy, case, function, dtype, device)
    if outcome.status == "unsupported":
        declared, features = gvp_bench.get_strategy(strategy), case.exercises(function, device)
        assert support.explains(declared, features, outcome.detail), \
            f"unsupported, but not as {strategy}'s unsupported data declares: {outcome.detail}"
        pytest.skip(f"unsupported: {outcome.detail}")
    assert outcome.status in ("pass", "refused"), outcome.detail  # refused: the case's typed error, as expected
