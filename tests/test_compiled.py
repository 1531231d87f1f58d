"""The compiled strategies: compiled once per workload, never stale, recompiled on a new shape.

What they compute is checked by the conformance harness (tests/test_conformance.py); here, what
compiling adds: a later call at new values gives the new answer from the same compiled graph, a
new shape compiles anew, and what torch.compile cannot follow is refused, not answered wrongly.
"""

import pytest
import torch
from torch._dynamo.utils import counters

import gvp_bench
from gvp_bench import zoo
from gvp_bench.autotune.config import AutoSettings
from gvp_bench.conformance.cases import CubeBackwardOnly
from gvp_bench.model_call import model_closure
from gvp_bench.implementations.auto import Auto

EAGER = gvp_bench.get_strategy("func_vmap")


def _graphs_compiled():
    return counters["stats"]["unique_graphs"]


def test_model_jvp_at_new_values_is_right_from_the_one_compiled_graph():
    compiled = gvp_bench.get_strategy("compiled")
    entry = zoo.build("mlp", "tiny", seed=0, mode="eval")
    tangent = [torch.randn_like(p) for p in entry.params]
    before = _graphs_compiled()
    first = compiled.model_jvp(entry.model, entry.x, tangent)
    torch.testing.assert_close(first, EAGER.model_jvp(entry.model, entry.x, tangent))
    with torch.no_grad():  # new parameter values in place, a new input and a new model of the same shapes
        for p in entry.params:
            p.mul_(-1.5)
    other = zoo.build("mlp", "tiny", seed=1, mode="eval")
    for model, x in ((entry.model, entry.x), (entry.model, entry.x + 1), (other.model, other.x)):
        result = compiled.model_jvp(model, x, tangent)  # model_jvp makes a new closure every call
        torch.testing.assert_close(result, EAGER.model_jvp(model, x, tangent))
        assert not torch.allclose(result, first)
    assert _graphs_compiled() - before == 1


def _closure_over(data, w):
    return lambda: torch.tanh(w * data).cumsum(0)


def test_a_new_shape_compiles_anew_and_captured_tensors_are_inputs():
    compiled = gvp_bench.get_strategy("compiled")
    before = _graphs_compiled()
    for size, scale in ((3, 1.0), (3, -2.0), (5, 1.0)):  # new captured values, then a new shape
        w, data = torch.randn(size, requires_grad=True), scale * torch.randn(size)
        for function in ("jvp", "vjp"):
            args = (_closure_over(data, w), [w], torch.randn(size))
            torch.testing.assert_close(getattr(compiled, function)(*args), getattr(EAGER, function)(*args))
    assert _graphs_compiled() - before == 4  # jvp and vjp, at each of the two shapes


def test_a_param_given_straight_to_a_custom_function_is_refused():
    w = torch.randn(3, requires_grad=True)
    with pytest.raises(gvp_bench.UnsupportedError, match="CubeBackwardOnly"):
        gvp_bench.get_strategy("compiled").vjp(lambda: CubeBackwardOnly.apply(w), [w], torch.ones(3))


def test_model_jvp_in_train_mode_uses_one_dropout_mask_as_eager_does():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2)).train()
    x, v = torch.randn(3, 4), [torch.randn_like(p) for p in model.parameters()]
    for call in (lambda strategy: strategy.model_jvp(model, x, v),  # the closure's random state, set outside
                 lambda strategy: strategy.jvp(model_closure(model, x), list(model.parameters()), v)):
        results = []
        for strategy in (gvp_bench.get_strategy("compiled"), EAGER):
            torch.manual_seed(0)
            results.append(call(strategy))
        torch.testing.assert_close(*results)


def test_a_closure_over_a_model_in_train_mode_without_random_operations_compiles():
    """model_closure's random state (gvp_bench.model_call.split_random_state) is set around the compiled product:
    dynamo never traces its restoring of the generator."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.LayerNorm(4), torch.nn.GELU(),
                                torch.nn.Flatten(0), torch.nn.Linear(12, 2)).train()
    x, params = torch.randn(2, 6), list(model.parameters())
    vs = [torch.randn((2,) + tuple(p.shape)) for p in params]
    for function, args in (("batch_jvp", (vs,)), ("vjp", (torch.randn(2),))):
        result, expected = (getattr(strategy, function)(model_closure(model, x), params, *args)
                            for strategy in (gvp_bench.get_strategy("compiled"), EAGER))
        torch.testing.assert_close(result, expected)


def test_bad_input_raises_what_every_strategy_raises():
    w = torch.randn(3, requires_grad=True)
    with pytest.raises(ValueError, match="output shape"):
        gvp_bench.get_strategy("compiled").vjp(lambda: w.sin(), [w], torch.ones(4))


def test_auto_times_strategies_whose_first_call_compiles_only_when_configured_to():
    default = Auto()._candidates(("forward_dual",), AutoSettings("measured", (), 0.5))
    assert "compiled" not in default and "cuda_graphs" not in default and "func_vmap" in default
    configured = Auto()._candidates(("forward_dual",), AutoSettings("measured", (), 0.5, compile=True))
    assert "compiled" in configured and "cuda_graphs" in configured


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal; CUDA is checked below")
def test_cuda_graphs_refuses_the_cpu():
    w = torch.randn(3, requires_grad=True)
    with pytest.raises(gvp_bench.UnsupportedError, match="CUDA graphs record CUDA kernels"):
        gvp_bench.get_strategy("cuda_graphs").jvp(lambda: w.sin(), [w], torch.ones(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_graphs_replays_give_each_call_its_own_results():
    strategy = gvp_bench.get_strategy("cuda_graphs")
    entry = zoo.build("mlp", "tiny", seed=0, mode="eval", device="cuda")
    tangents = [[torch.randn_like(p) for p in entry.params] for _ in range(3)]
    results = [strategy.model_jvp(entry.model, entry.x, tangent) for tangent in tangents]
    for result, tangent in zip(results, tangents):  # the later replays did not overwrite the earlier results
        torch.testing.assert_close(result, EAGER.model_jvp(entry.model, entry.x, tangent))
