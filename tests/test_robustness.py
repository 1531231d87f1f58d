"""A failed call leaves the process as it found it, and every strategy answers right afterwards.

For every strategy, a set of failing calls (func raises, a derivative rule raises, out of memory,
KeyboardInterrupt, func leaves contexts entered and raises), each checked the way torch's own tests
check (the process state before == after), followed by the same succeeding calls of every strategy,
which must answer as they did before any failure. Compilation failures (a reentrant checkpoint under
``compiled``) have their own, slower test.
"""

import warnings

import pytest
import torch
from torch.autograd import forward_ad
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.checkpoint import checkpoint

import gvp_bench
from gvp_bench import process_state
from gvp_bench.autotune.calibration import Calibration
from implementations import auto as auto_module

STRATEGIES = gvp_bench.strategies()
NOT_COMPILING = [name for name in STRATEGIES if name != "compiled"]  # compiled's failures: their own test


class Boom(Exception):
    """func's own exception: it must come out unchanged."""


def assert_left_as_found(before, random_before):
    assert process_state.changed(before, process_state.snapshot()) == []
    assert all(torch.equal(a, b) for a, b in zip(random_before, process_state.random_state()))


# The problem: J of tanh(W x + b), with and without a non-reentrant checkpoint (which needs saved-tensor hooks).

W = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
B = torch.randn(3, dtype=torch.float64, requires_grad=True)
X = torch.randn(4, dtype=torch.float64)
PARAMS = [W, B]


def plain():
    return torch.tanh(W @ X + B)


def checkpointed():
    return torch.tanh(checkpoint(lambda t: W @ t + B, X, use_reentrant=False))


def jacobian():
    derivative = 1 - plain().detach() ** 2
    return derivative[:, None, None] * torch.eye(3, dtype=torch.float64)[:, :, None] * X, torch.diag(derivative)


TANGENTS = [torch.ones(3, 4, dtype=torch.float64), torch.arange(3, dtype=torch.float64)]
COTANGENT = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def expected_jvp():
    jw, jb = jacobian()
    return (jw * TANGENTS[0]).sum((1, 2)) + jb @ TANGENTS[1]


def expected_vjp():
    jw, jb = jacobian()
    return [torch.einsum("i,ijk->jk", COTANGENT, jw), COTANGENT @ jb]


GOOD_CALLS = {"jvp of a checkpointed func": lambda s: s.jvp(checkpointed, PARAMS, TANGENTS),
              "vjp of a plain func": lambda s: s.vjp(plain, PARAMS, COTANGENT)}
EXPECTED = {"jvp of a checkpointed func": expected_jvp, "vjp of a plain func": expected_vjp}


def answer(name, call):
    """What strategy ``name`` answers to a good call: its result, or "unsupported"."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return GOOD_CALLS[call](gvp_bench.get_strategy(name))
    except gvp_bench.UnsupportedError:
        return "unsupported"


@pytest.fixture(scope="module")
def answers_before_any_failure():
    """Each strategy's answer to each good call in a clean process (compiled: the plain vjp only, to keep
    compilation to one graph; on CUDA-less machines cuda_graphs answers eagerly or not at all)."""
    answers = {}
    for name in STRATEGIES:
        for call in GOOD_CALLS:
            answers[name, call] = answer(name, call)
            if not isinstance(answers[name, call], str):
                torch.testing.assert_close(answers[name, call], EXPECTED[call]())
    return answers


# The failing closures.

class RaisingRule(torch.autograd.Function):
    """A custom function whose derivative rules raise func's own exception."""
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x * 2

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        raise Boom("in backward")

    @staticmethod
    def jvp(ctx, tangent):
        raise Boom("in jvp")


BOOM = Boom("in func")


class PassingThrough(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def raises():
    plain()
    raise BOOM


def rule_raises():
    return RaisingRule.apply(plain())


def out_of_memory():
    plain()
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (simulated)")


def interrupted():
    plain()
    raise KeyboardInterrupt


def leaves_contexts_entered():
    """func enters what a context manager would and raises before leaving it."""
    torch._C._autograd._saved_tensors_hooks_disable("left disabled by func")
    torch.backends.mha.set_fastpath_enabled(False)
    torch.backends.cudnn.enabled = False
    torch.backends.cuda.enable_flash_sdp(False)
    torch.set_default_dtype(torch.float64)
    PassingThrough().__enter__()
    raise BOOM


FAILING = {"func raises": (raises, (Boom,)),
           "a derivative rule raises": (rule_raises, (Boom, gvp_bench.UnsupportedError)),
           "out of memory": (out_of_memory, (torch.OutOfMemoryError,)),
           "KeyboardInterrupt": (interrupted, (KeyboardInterrupt,)),
           "func leaves contexts entered": (leaves_contexts_entered, (Boom,))}


def failing_calls(name):
    strategy = gvp_bench.get_strategy(name)
    for failure, (func, raised) in FAILING.items():
        yield f"jvp, {failure}", lambda func=func: strategy.jvp(func, PARAMS, TANGENTS), raised
        yield f"vjp, {failure}", lambda func=func: strategy.vjp(func, PARAMS, COTANGENT), raised


@pytest.mark.parametrize("name", NOT_COMPILING)
def test_failing_calls_leave_the_process_as_found_and_every_strategy_answers_after(name, answers_before_any_failure):
    for what, call, raised in failing_calls(name):
        before, random_before = process_state.snapshot(), process_state.random_state()
        with pytest.raises(raised) as caught:
            call()
        assert_left_as_found(before, random_before)
        if caught.type is Boom and "func" in str(caught.value):
            assert caught.value is BOOM, what  # func's own exception, unchanged
    for other in STRATEGIES:
        for good in GOOD_CALLS:
            expected = answers_before_any_failure[other, good]
            now = answer(other, good)
            if isinstance(expected, str):
                assert now == expected, (other, good)
            else:
                torch.testing.assert_close(now, expected, msg=f"{other}, {good}, after {name}'s failures")


def test_compiled_after_a_failed_compilation_leaves_the_process_as_found(answers_before_any_failure):
    """inductor fails on a reentrant checkpoint (BackendCompilerFailed), which used to leave saved-tensor hooks
    disabled: every torch.func product with a non-reentrant checkpoint then raised."""
    def reentrant():
        return torch.tanh(checkpoint(lambda t: W @ t + B, X, use_reentrant=True))

    compiled = gvp_bench.get_strategy("compiled")
    before, random_before = process_state.snapshot(), process_state.random_state()
    with pytest.raises(gvp_bench.UnsupportedError):
        compiled.vjp(reentrant, PARAMS, COTANGENT)
    assert_left_as_found(before, random_before)
    with pytest.raises(Boom):  # func's own exception, found by the eager product once dynamo observed it
        compiled.jvp(raises, PARAMS, TANGENTS)
    assert_left_as_found(before, random_before)
    for other in STRATEGIES:
        for good in GOOD_CALLS:
            expected, now = answers_before_any_failure[other, good], answer(other, good)
            if isinstance(expected, str):
                assert now == expected, (other, good)
            else:
                torch.testing.assert_close(now, expected)


def test_every_part_of_the_state_is_put_back():
    """Each part :func:`process_state.restore` knows, changed the way a context left open changes it."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    left_open = []  # generator context managers restore when collected: keep them alive while the test checks
    before = process_state.snapshot()
    with pytest.raises(Boom):
        with process_state.left_as_found():
            torch._C._set_grad_enabled(False)
            torch._C._set_fwd_grad_enabled(False)
            torch.autograd.set_detect_anomaly(True, check_nan=False)
            torch._C._functorch._vmap_increment_nesting(2, "error")
            torch._C._functorch.set_inplace_requires_grad_allowed(True)
            torch._C._functorch.set_single_level_autograd_function_allowed(True)
            forward_ad.enter_dual_level()
            left_open.append(torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t))
            left_open[-1].__enter__()
            torch._C._autograd._saved_tensors_hooks_disable("disabled", False)  # with hooks pushed
            torch._C._autograd._saved_tensors_hooks_set_tracing(True)
            TorchFunctionMode().__enter__()
            TorchDispatchMode().__enter__()
            left_open.append(FakeTensorMode())
            left_open[-1].__enter__()
            torch.set_default_dtype(torch.float64)
            torch.backends.cudnn.enabled = torch.backends.mkldnn.enabled = False
            torch.backends.mha.set_fastpath_enabled(False)
            left_open.append(torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH], set_priority=True))
            left_open[-1].__enter__()
            torch.backends.cuda.enable_math_sdp(False)
            assert set(process_state.changed(before, process_state.snapshot())) == set(before._fields)
            raise Boom
    assert process_state.changed(before, process_state.snapshot()) == []
    torch.testing.assert_close(gvp_bench.jvp(checkpointed, PARAMS, TANGENTS, strategy="func_vmap"), expected_jvp())


def test_auto_hands_over_on_any_failure_and_says_which(monkeypatch):
    """A candidate that raises something other than UnsupportedError is not the answer, nor the cached choice."""
    class Broken(gvp_bench.Strategy):
        def _fail(self, *args):
            torch.autograd.graph.disable_saved_tensors_hooks("left disabled by a broken strategy").__enter__()
            raise RuntimeError("a bug of this strategy")

        _jvp = _vjp = _batch_jvp = _batch_vjp = _full_jacobian = _fail

    gvp_bench.register("broken_for_test", Broken)
    try:
        gvp_bench.configure_auto(mode="calibrate")
        monkeypatch.setattr(auto_module, "calibrate",
                            lambda strategies, *args: Calibration(times={"broken_for_test": 1e-4, "func_vmap": 1e-3}))
        before = process_state.snapshot()
        with pytest.warns(auto_module.HandoverWarning, match="broken_for_test .*RuntimeError: a bug"):
            result = gvp_bench.jvp(checkpointed, PARAMS, TANGENTS)
        torch.testing.assert_close(result, expected_jvp())
        auto = gvp_bench.get_strategy("auto")
        assert auto.last_choice == "func_vmap" and "handed over from broken_for_test" in auto.last_reason
        assert process_state.changed(before, process_state.snapshot()) == []
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the cached choice answers: nothing fails, nothing is handed over
            gvp_bench.jvp(checkpointed, PARAMS, TANGENTS)
        assert auto.last_choice == "func_vmap"
    finally:
        gvp_bench.unregister("broken_for_test")
        gvp_bench.configure_auto()


def test_auto_raises_funcs_own_exception_when_every_candidate_does():
    gvp_bench.configure_auto(mode="calibrate")
    try:
        with pytest.raises(Boom) as caught:
            gvp_bench.vjp(raises, PARAMS, COTANGENT)
        assert caught.value is BOOM
    finally:
        gvp_bench.configure_auto()
