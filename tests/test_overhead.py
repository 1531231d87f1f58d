"""The wrapper's own cost cut: the model form cache (rebuilt on every change that matters), buffers copied
only where a call can update them, forward_dual's constant-input rule for linear layers (checked against
the conformance oracle with the rule on every linear layer), and the hand-written reference calls."""

import pytest
import torch
from torch import nn

import gvp_bench
from gvp_bench import linear_rule
from gvp_bench.bench import overhead, raw
from gvp_bench.conformance import CASES, run_cell
from gvp_bench.model_form import model_form


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).eval()


def _without_normalisation():
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).eval()


def test_the_form_is_kept_while_the_model_is_unchanged():
    model = _mlp()
    assert model_form(model) is model_form(model)
    assert model_form(model).params == tuple(model.parameters())


@pytest.mark.parametrize("change", ["train", "freeze", "replace", "add", "hook", "global_hook", "dtype", "new_param",
                                    "new_buffer", "new_child", "pre_hook", "bias_removed"])
def test_the_form_is_made_anew_when_the_model_changes(change):
    model = _mlp()
    before = model_form(model)
    handles = []
    if change == "train":
        model.train()
    elif change == "freeze":
        model[0].bias.requires_grad_(False)
    elif change == "replace":
        model[3].weight = nn.Parameter(torch.ones(2, 4))
    elif change == "add":
        model.append(nn.Linear(2, 2))
    elif change == "hook":
        handles.append(model[2].register_forward_hook(lambda *args: None))
    elif change == "global_hook":
        handles.append(nn.modules.module.register_module_forward_hook(lambda *args: None))
    elif change == "dtype":
        model[0].weight.data = model[0].weight.data.double()
    elif change == "new_param":  # on a layer that had none (its parameter dict was empty)
        model[2].register_parameter("scale", nn.Parameter(torch.ones(1)))
    elif change == "new_buffer":
        model[2].register_buffer("shift", torch.zeros(1))
    elif change == "new_child":  # under a layer that had no children
        model[0].add_module("extra", nn.Linear(2, 2))
    elif change == "pre_hook":
        handles.append(model[2].register_forward_pre_hook(lambda *args: None))
    elif change == "bias_removed":
        model[3].bias = None
    try:
        after = model_form(model)
        assert after is not before
        assert after.params == tuple(p for p in model.parameters() if p.requires_grad)
    finally:
        for handle in handles:
            handle.remove()


def test_a_model_without_normalisation_layers_keeps_its_form_through_what_cannot_change_it():
    """Its training flag and hooks decide no buffer's protection: the snapshot does not read them."""
    model = _without_normalisation()
    form = model_form(model)
    model.train()
    handle = model[1].register_forward_hook(lambda module, args, output: output * 2)
    try:
        assert model_form(model) is form
        x, u = torch.randn(5, 3), torch.randn(5, 2)
        params = tuple(model.parameters())
        expected = torch.autograd.grad(model(x), params, u)
        torch.testing.assert_close(gvp_bench.model_vjp(model, x, u, strategy="double_backward"), list(expected))
    finally:
        handle.remove()


@pytest.mark.parametrize("change", ["train", "hook"])
def test_a_normalisation_layer_alone_gets_a_new_form_when_its_buffers_become_updatable(change):
    model = nn.BatchNorm1d(4).eval()
    before = model_form(model)
    assert before.updatable == ()
    handle = model.register_forward_hook(lambda *args: None) if change == "hook" else model.train()
    try:
        assert len(model_form(model).updatable) == 3
    finally:
        if change == "hook":
            handle.remove()


def test_buffers_are_copied_only_where_a_call_can_update_them():
    model = _mlp()
    assert model_form(model).updatable == ()  # BatchNorm in eval mode only reads its statistics
    model.train()
    assert len(model_form(model).updatable) == 3  # running mean, variance and the count
    statistics = [b.clone() for b in model.buffers()]
    x = torch.randn(5, 3)
    gvp_bench.model_jvp(model, x, [torch.randn_like(p) for p in model.parameters()], strategy="forward_dual")
    gvp_bench.model_vjp(model, x, torch.randn(5, 2), strategy="double_backward")
    assert all(torch.equal(a, b) for a, b in zip(statistics, model.buffers()))


def test_a_hook_makes_every_buffer_updatable():
    model = _mlp()
    def count_calls(module, args):
        module.running_mean.add_(1)

    handle = model[1].register_forward_pre_hook(count_calls)
    try:
        before = model[1].running_mean.clone()
        gvp_bench.model_vjp(model, torch.randn(5, 3), torch.randn(5, 2), strategy="double_backward")
        assert torch.equal(model[1].running_mean, before)
    finally:
        handle.remove()


def test_the_form_does_not_keep_the_model_alive():
    import gc
    import weakref

    model = nn.Linear(2, 2)
    model_form(model)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


MODEL_CASES = [case for case in CASES if case.is_model]


@pytest.mark.parametrize("case", MODEL_CASES, ids=[case.name for case in MODEL_CASES])
def test_forward_dual_with_the_constant_input_rule_on_every_linear_layer(case, monkeypatch):
    monkeypatch.setattr(linear_rule, "MIN_WEIGHTS", 0)
    expected = ("refused",) if case.refused else ("pass", "unsupported")  # refused: as every strategy must
    for function in ("model_jvp", "jvp"):
        outcome = run_cell("forward_dual", case, function, torch.float64, "cpu")
        assert outcome.status in expected, outcome.detail


def test_the_constant_input_rule_runs_where_the_input_has_no_tangent(monkeypatch):
    monkeypatch.setattr(linear_rule, "MIN_WEIGHTS", 0)
    calls = []
    monkeypatch.setattr(linear_rule._LinearOfConstantInput, "jvp",
                        staticmethod(lambda ctx, *tangents: calls.append(1) or torch.nn.functional.linear(
                            ctx.saved_tensors[0], tangents[1], tangents[2])))
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    v = [torch.randn_like(p) for p in model.parameters()]
    ours = gvp_bench.model_jvp(model, x, v, strategy="forward_dual")
    assert calls == [1]  # the first layer only: the second one's input carries a tangent
    torch.testing.assert_close(ours, raw.model_jvp(model)(x, v))
    assert "forward" not in model[0].__dict__  # the layers' own forward is back


def test_the_hand_written_calls_agree_with_the_strategies():
    model = _mlp()
    x = torch.randn(5, 3)
    v = [torch.randn_like(p) for p in model.parameters()]
    u = torch.randn(5, 2)
    expected = gvp_bench.model_jvp(model, x, v, strategy="forward_dual")
    torch.testing.assert_close(raw.model_jvp(model)(x, v), expected)
    torch.testing.assert_close(raw.model_func_jvp(model)(x, v), expected)
    for ours, theirs in zip(gvp_bench.model_vjp(model, x, u, strategy="double_backward"), raw.model_vjp(model)(x, u)):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("strategy", ["double_backward", "forward_dual", "reference_loop"])
def test_vjp_goes_to_autograds_engine_without_grads_wrapper(strategy, monkeypatch):
    """The usual vᵀJ skips torch.autograd.grad's Python wrapper (its checks of the cotangent repeat
    check_cotangent's) and answers as grad does, unused params included."""
    model = _without_normalisation()
    unused = nn.Parameter(torch.ones(2))
    params = [*model.parameters(), unused]
    x, u = torch.randn(5, 3), torch.randn(5, 2)
    expected = torch.autograd.grad(model(x), params[:-1], u)
    monkeypatch.setattr(torch.autograd, "grad", _refused)
    got = gvp_bench.vjp(lambda: model(x), params, u, strategy=strategy)
    assert all(torch.equal(g, e) for g, e in zip(got, expected)) and torch.equal(got[-1], torch.zeros(2))
    with pytest.raises(ValueError, match="v must have func"):
        gvp_bench.vjp(lambda: model(x), params, torch.ones(5, 3), strategy=strategy)


def _refused(*args, **kwargs):
    raise AssertionError("torch.autograd.grad called")


class _Recording(torch.overrides.TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.add(func)
        return func(*args, **(kwargs or {}))


def test_vjp_under_a_torch_function_mode_goes_through_torch_autograd_grad():
    """grad hands a call with torch-function overrides to them; the engine path must not skip that."""
    model = _without_normalisation()
    x, u = torch.randn(5, 3), torch.randn(5, 2)
    expected = torch.autograd.grad(model(x), list(model.parameters()), u)
    with _Recording() as mode:
        got = gvp_bench.model_vjp(model, x, u, strategy="double_backward")
    assert torch.autograd.grad in mode.seen
    assert all(torch.allclose(g, e) for g, e in zip(got, expected))


def test_overhead_measures_every_contender(monkeypatch):
    monkeypatch.setattr(overhead, "_ROUND_SECONDS", 0.001)
    rows = overhead.measure(["mlp/tiny"], rounds=1, jvp_strategies=["forward_dual"], vjp_strategies=["double_backward"])
    assert {(row["op"], row["strategy"]) for row in rows} == {
        ("model_jvp", "raw.forward_ad"), ("model_jvp", "forward_dual"),
        ("model_vjp", "raw.autograd_grad"), ("model_vjp", "double_backward")}
    assert all(row["seconds"] > 0 for row in rows)
    assert "| mlp/tiny | model_jvp | forward_dual |" in overhead.table(rows)


def test_the_checked_hand_written_calls_answer_as_the_hand_written_call():
    model, x, u = _mlp(), torch.randn(5, 3), torch.randn(5, 2)
    expected = raw.model_vjp(model)(x, u)
    calls = overhead.checked_calls(model, x, u)
    assert list(calls) == ["checks: form", "checks: scope", "checks: form + scope"]
    for name, call in calls.items():
        for ours, theirs in zip(call(), expected):
            torch.testing.assert_close(ours, theirs, msg=name)


def test_jax_gets_torchs_threads_by_pinning_the_process_before_jax_is_imported(monkeypatch):
    import os
    import sys

    from gvp_bench import jax_side

    cpus = sorted(os.sched_getaffinity(0))
    assert jax_side.match_threads(len(cpus)) is None  # as many threads as CPUs: nothing to pin
    monkeypatch.setitem(sys.modules, "jax", object())
    assert jax_side.match_threads(1) is None  # JAX imported: its pool is sized already
    monkeypatch.delitem(sys.modules, "jax")
    if len(cpus) > 1:
        try:
            assert jax_side.match_threads(1) == cpus
            assert jax_side.pool_threads() == 1
        finally:
            os.sched_setaffinity(0, cpus)


class _KeepsAParamInAList(nn.Module):
    """A module that reaches its weight through a plain list too, which swapping the parameter dict misses."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.also = [self.linear.weight]

    def forward(self, x):
        return self.linear(x) + x[:, :2] @ self.also[0][:, :2].T


def test_a_param_kept_elsewhere_is_substituted_by_the_torch_function_mode():
    model = _KeepsAParamInAList().double()
    assert model_form(model).swappable_params == ()
    x = torch.randn(4, 3, dtype=torch.float64)
    v = [torch.randn_like(p) for p in model.parameters()]
    expected = torch.func.jvp(lambda *ps: torch.func.functional_call(model, dict(zip(["linear.weight", "linear.bias"], ps)), (x,))
                              + x[:, :2] @ ps[0][:, :2].T, tuple(p.detach() for p in model.parameters()), tuple(v))[1]
    for name in ("forward_dual", "func_vmap", "double_backward"):
        torch.testing.assert_close(gvp_bench.model_jvp(model, x, v, strategy=name), expected)
