"""The zoo: deterministic models in sizes, and the scoped workarounds strategies need on them."""

import warnings

import pytest
import torch

import gvp_bench
from gvp_bench import zoo
from gvp_bench.workarounds import WorkaroundWarning


def test_zoo_has_the_architectures_the_issue_names():
    assert {"mlp", "cnn", "resnet", "transformer", "lstm", "gru", "embedding", "scalar5", "elementwise", "tall",
            "wide"} <= set(zoo.names())


@pytest.mark.parametrize("name", zoo.names())
def test_models_are_built_deterministically_from_the_seed(name):
    first, again, other = zoo.build(name, seed=3), zoo.build(name, seed=3), zoo.build(name, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))
    assert torch.equal(first.x, again.x)
    if name != "scalar5":  # its point is fixed: (x0, 1, 1, 1, 1)
        assert not all(torch.equal(a, b) for a, b in zip(first.params, other.params))
    assert first.parameter_count == sum(p.numel() for p in first.params) <= 300
    assert first.output_size == first.model(first.x).numel()


def test_tiers_grow_and_flops_are_counted_where_torch_counts_them():
    counts = [zoo.build("mlp", size).parameter_count for size in zoo.SIZES]
    assert counts == sorted(counts) and counts[0] < counts[-1]
    assert zoo.build("mlp", "small").flops == 2 * 32 * (784 * 256 + 256 * 256 + 256 * 10)
    assert zoo.build("scalar5").flops is None  # no matrix products: the counter counts nothing


def test_scalar5_gives_seed_002s_table():
    model = zoo.build("scalar5", dtype=torch.float64)
    (jacobian,) = gvp_bench.full_jacobian(model.func(), model.params)
    expected = torch.tensor([[2.0 * x0, 3, 4, 5, 6] for x0 in range(1, 10)], dtype=torch.float64)
    assert torch.equal(jacobian, expected)


def test_bad_names_and_sizes_are_refused():
    with pytest.raises(ValueError, match="valid names"):
        zoo.build("alexnet")
    with pytest.raises(ValueError, match="valid sizes"):
        zoo.build("mlp", "huge")
    with pytest.raises(ValueError, match="mode"):
        zoo.build("mlp", mode="inference")


def _global_settings():
    return (torch.backends.mha.get_fastpath_enabled(), torch.backends.cudnn.enabled, torch.backends.mkldnn.enabled,
            torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled(),
            torch.backends.cuda.math_sdp_enabled())


@pytest.mark.parametrize("strategy", ["forward_dual", "func_vmap", "double_backward"])
def test_transformer_workaround_is_scoped_warned_and_recorded(strategy):
    model = zoo.build("transformer", "tiny", mode="eval")
    before = _global_settings()
    chosen = gvp_bench.get_strategy(strategy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gvp_bench.model_jvp(model.model, model.x, [torch.ones_like(p) for p in model.params], strategy=chosen)
    assert _global_settings() == before
    assert chosen.last_workarounds, "the transformer needs a workaround for J v"
    named = [str(w.message) for w in caught if issubclass(w.category, WorkaroundWarning)]
    assert any(name in message for name in chosen.last_workarounds for message in named)


def test_a_workaround_free_call_records_none():
    model = zoo.build("mlp")
    chosen = gvp_bench.get_strategy("forward_dual")
    gvp_bench.model_jvp(model.model, model.x, [torch.ones_like(p) for p in model.params], strategy=chosen)
    assert chosen.last_workarounds == ()


def test_a_workload_needing_a_workaround_starts_inside_it_the_next_time():
    model = zoo.build("transformer", "tiny", mode="eval")
    chosen = type(gvp_bench.get_strategy("forward_dual"))()  # a fresh instance: nothing remembered
    attempts = []
    product = chosen._jvp
    chosen._jvp = lambda *args: attempts.append(1) or product(*args)
    tangents = [torch.ones_like(p) for p in model.params]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkaroundWarning)
        first = gvp_bench.model_jvp(model.model, model.x, tangents, strategy=chosen)
        needed = len(chosen.last_workarounds)
        assert needed and len(attempts) == 1 + needed  # failed once per workaround, then ran inside them all
        again = gvp_bench.model_jvp(model.model, model.x, tangents, strategy=chosen)
    assert len(attempts) == 2 + needed and len(chosen.last_workarounds) == needed
    assert torch.equal(first, again)
