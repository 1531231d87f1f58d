"""Differential test: generated closures mixing what a strategy may not see (tensors derived from params
outside func, views, detached copies, embeddings with padding or sparse gradients, in-place updates of a
param, half precision), where every pair of strategies must agree or raise a typed error.

Agreement is checked on J v and vᵀJ of every strategy that answers, across strategies (each pair's
answers equal, and <u, J v> of one equal to <Jᵀu, v> of every other: so auto's jvp and vjp are adjoint
whichever strategies answer them). An error is a typed one (UnsupportedError, ValueError, TypeError);
a ValueError or TypeError is about func or the input, so every strategy raises the same type.
"""

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import Phase, given, settings, strategies as st

import gvp_bench
from random_closures import STRATEGIES

CAPTURES = {
    "none": None,
    "symmetric_part": lambda w: w + w.T,
    "transposed_view": lambda w: w.t(),
    "detached": lambda w: (w * 2).detach(),
    "from_frozen": lambda w: torch.ones_like(w).requires_grad_() * 2,  # a graph to a leaf that is no param
}
EMBEDDINGS = {
    "plain": {},
    "padding_first": {"padding_idx": 0},
    "padding_last": {"padding_idx": -1},
    "sparse": {"sparse": True},
    "sparse_padding": {"sparse": True, "padding_idx": 1},
}
TYPED = (gvp_bench.UnsupportedError, ValueError, TypeError)


def build(capture, embedding, in_place, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    draw = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)  # noqa: E731
    w, table = draw(3, 3).requires_grad_(), draw(4, 3).requires_grad_()
    c, indices = draw(3), torch.randint(0, 4, (5,), generator=generator)
    captured = CAPTURES[capture](w) if CAPTURES[capture] else None
    options = EMBEDDINGS[embedding]

    def func():
        if in_place:
            with torch.no_grad():
                table.mul_(1.0)
        rows = F.embedding(indices, table, **options)
        matrix = w if captured is None else captured + w
        return torch.tanh(rows @ (matrix @ c))

    return func, [w, table]


@settings(max_examples=max(1, settings.default.max_examples // 5), phases=[Phase.explicit, Phase.generate])
@given(capture=st.sampled_from(sorted(CAPTURES)), embedding=st.sampled_from(sorted(EMBEDDINGS)),
       in_place=st.booleans(), dtype=st.sampled_from([torch.float64, torch.float32, torch.bfloat16]),
       seed=st.integers(0, 2 ** 16))
def test_every_pair_of_strategies_agrees_or_raises_a_typed_error(capture, embedding, in_place, dtype, seed):
    answers, errors = {}, {}
    for name, strategy in sorted(STRATEGIES.items()):
        func, params = build(capture, embedding, in_place, dtype, seed)
        v = [torch.ones_like(p) * 0.5 for p in params]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for product in ("jvp", "vjp"):
                try:
                    if product == "jvp":
                        answers[name, product] = strategy.jvp(func, params, v)
                    else:
                        u = torch.linspace(-1, 1, 5, dtype=dtype)
                        answers[name, product] = strategy.vjp(func, params, u)
                except TYPED as error:
                    errors[name, product] = error
    for (name, product), error in errors.items():  # an error about func or the input: every strategy's
        if not isinstance(error, gvp_bench.UnsupportedError):
            assert all(type(other) is type(error) for (_, p), other in errors.items() if p == product) \
                and not any(p == product for (_, p) in answers), (name, product, error, answers.keys())
    jvps = {name: r for (name, product), r in answers.items() if product == "jvp"}
    vjps = {name: r for (name, product), r in answers.items() if product == "vjp"}
    for first in jvps:
        for second in jvps:
            torch.testing.assert_close(jvps[first], jvps[second], msg=f"jvp: {first} against {second}")
    for first in vjps:
        for second in vjps:
            for a, b in zip(vjps[first], vjps[second]):
                torch.testing.assert_close(a, b, msg=f"vjp: {first} against {second}")
    u = torch.linspace(-1, 1, 5, dtype=torch.float64)
    for jvp_name, jv in jvps.items():
        for vjp_name, vj in vjps.items():
            left = (u * jv.double()).sum()
            right = sum((g.double() * 0.5).sum() for g in vj)
            torch.testing.assert_close(left, right, msg=f"adjoint identity: {jvp_name}'s jvp, {vjp_name}'s vjp")
    assert answers or errors


@pytest.mark.parametrize("capture", ["symmetric_part", "transposed_view"])
def test_auto_is_adjoint_on_a_tensor_derived_outside_func(capture):
    """The issue's case: auto's jvp and vjp come from strategies that follow the same graph."""
    func, params = build(capture, "plain", False, torch.float64, 0)
    v = [torch.ones_like(p) for p in params]
    u = torch.linspace(-1, 1, 5, dtype=torch.float64)
    jv = gvp_bench.jvp(func, params, v)
    vj = gvp_bench.vjp(func, params, u)
    torch.testing.assert_close((u * jv).sum(), sum((g * t).sum() for g, t in zip(vj, v)))
    with pytest.raises(gvp_bench.UnsupportedError, match="computed from params\\[0\\] outside func"):
        gvp_bench.jvp(func, params, v, strategy="func_vmap")


def test_a_derived_tensor_passed_inside_a_list_is_found():
    w = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    symmetric = w + w.T
    func = lambda: torch.cat([symmetric, w]).sum(0)  # noqa: E731
    expected = gvp_bench.jvp(func, [w], torch.ones(3, 3, dtype=torch.float64), strategy="double_backward")
    torch.testing.assert_close(expected, torch.full((3,), 9.0, dtype=torch.float64))
    with pytest.raises(gvp_bench.UnsupportedError, match="outside func"):
        gvp_bench.jvp(func, [w], torch.ones(3, 3, dtype=torch.float64), strategy="func_vmap")
