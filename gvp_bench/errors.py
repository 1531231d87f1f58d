"""The typed errors every strategy raises.

Bad input is a ``ValueError`` (wrong count, shape, device, batch size) or a ``TypeError``
(not a tensor, not callable, wrong dtype); the message names the argument. A strategy that
cannot compute a product raises :class:`UnsupportedError` naming the operator or feature.
"""

import contextlib
import re


class UnsupportedError(NotImplementedError):
    """This strategy cannot compute this product; the message says which operator or feature, and why."""

    def __init__(self, strategy, reason, operator=None):
        self.strategy = strategy
        self.reason = reason
        self.operator = operator
        super().__init__(f"strategy {strategy!r} cannot do this: {reason}")


# Messages torch raises when a derivative rule is missing, and the operator they name.
_MISSING_RULES = [
    (re.compile(r"Trying to use forward AD with (\S+) that does not support it"), "has no forward-AD formula"),
    (re.compile(r"derivative for (\S+) is not implemented"), "has no derivative formula"),
    (re.compile(r"the derivative for '?([\w.:]+)'? is not implemented"), "has no derivative formula"),
    (re.compile(r"Batching rule not implemented for (\S+)"), "has no vmap batching rule"),
    (re.compile(r"(custom autograd.Function)s? to use it with forward mode AD"), "defines no jvp"),
    (re.compile(r"In order to use an (autograd.Function) with functorch transforms"),
     "does not support torch.func transforms (it needs a setup_context staticmethod)"),
    (re.compile(r"Could not run '([\w:]+)' with arguments from the 'Sparse"), "has no kernel for sparse gradients"),
    (re.compile(r"(\w+) is not implemented for sparse tensors"), "has no kernel for sparse gradients"),
    (re.compile(r"attempted to call in-place operation \((\S+)\) that would mutate a captured Tensor"),
     "mutates a tensor captured by func in place, which torch.func transforms forbid"),
    # aten/src/ATen/native/cudnn/RNN.cpp: a cuDNN RNN run in eval mode keeps no reserve space for its backward
    (re.compile(r"(cudnn RNN) backward can only be called in training mode"),
     "has no backward pass in eval mode (cuDNN keeps its reserve space in training mode only)"),
]


# Messages that name a kernel rather than an operator: the operator they stand for.
_OPERATOR_NAMES = {"cudnn RNN": "_cudnn_rnn_backward"}


@contextlib.contextmanager
def translate_missing_rules(strategy):
    """Turn torch's "no formula for operator X" errors into :class:`UnsupportedError` naming X."""
    try:
        yield
    except (NotImplementedError, RuntimeError) as error:
        if isinstance(error, UnsupportedError):
            raise
        message = str(error)
        for pattern, what in _MISSING_RULES:
            match = pattern.search(message)
            if match:
                operator = _OPERATOR_NAMES.get(match.group(1), match.group(1)).strip("'\".,")
                raise UnsupportedError(strategy, f"operator {operator} {what}", operator) from error
        raise
