"""The typed errors every strategy raises.

Bad input is a ``ValueError`` (wrong count, shape, device, batch size) or a ``TypeError``
(not a tensor, not callable, wrong dtype); the message names the argument. A strategy that
cannot compute a product raises :class:`UnsupportedError` naming the operator or feature.
"""

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
    (re.compile(r"torch\.func\.\{grad, vjp, jacrev, hessian\} don't yet support (saved tensor hooks)"),
     "(a non-reentrant torch.utils.checkpoint, save_on_cpu) are not supported by torch.func's reverse mode"),
    (re.compile(r"You are attempting to call (Tensor.requires_grad_)\(\)"),
     "is called by func (or torch.autograd.functional inside it), which torch.func transforms forbid"),
    # aten/src/ATen/native/cudnn/RNN.cpp: a cuDNN RNN run in eval mode keeps no reserve space for its backward
    (re.compile(r"(cudnn RNN) backward can only be called in training mode"),
     "has no backward pass in eval mode (cuDNN keeps its reserve space in training mode only)"),
]


# Messages that name a kernel rather than an operator: the operator they stand for.
_OPERATOR_NAMES = {"cudnn RNN": "_cudnn_rnn_backward"}


def missing_rule(strategy, error):
    """The :class:`UnsupportedError` naming the operator when ``error`` is torch's "no formula for operator X"
    error, else None."""
    if not isinstance(error, (NotImplementedError, RuntimeError)) or isinstance(error, UnsupportedError):
        return None
    message = str(error)
    for pattern, what in _MISSING_RULES:
        match = pattern.search(message)
        if match:
            operator = _OPERATOR_NAMES.get(match.group(1), match.group(1)).strip("'\".,")
            return UnsupportedError(strategy, f"operator {operator} {what}", operator)
    return None


class translate_missing_rules:
    """Turn torch's "no formula for operator X" errors into :class:`UnsupportedError` naming X (a context
    manager)."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        unsupported = missing_rule(self.strategy, error)
        if unsupported is not None:
            raise unsupported from error
        return False


def one_line(error, with_type=True):
    """``error``'s first non-blank line, after its type's name unless ``with_type`` is False."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if not with_type:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
