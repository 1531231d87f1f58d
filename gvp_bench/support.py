"""What a strategy does not support, declared as data on its class.

A strategy lists what it refuses in its ``unsupported`` class attribute: a tuple of
:class:`Unsupported`, each naming features from :data:`FEATURES` and words of the reason its
:class:`~gvp_bench.errors.UnsupportedError` gives. The conformance harness reads the
declarations: a cell whose features a declaration names may be unsupported (with those words in
its reason); any other unsupported cell is a regression. The conformance matrix marks which
unsupported cells were declared, and ``docs/strategies.md`` lists them.
"""

from dataclasses import dataclass

FUNCTIONS = ("jvp", "vjp", "model_jvp", "model_vjp", "batch_jvp", "batch_vjp", "full_jacobian")

FEATURES = {
    **{function: f"the {function} function" for function in FUNCTIONS},
    "create_graph": "create_graph=True: results that can be differentiated again",
    "cpu": "params on the CPU",
    "cuda": "params on a CUDA device",
    "custom_function_jvp": "func calls a custom torch.autograd.Function that defines its own jvp",
    "custom_function_backward_only": "func calls a custom torch.autograd.Function with a backward formula only",
    "random_numbers": "func draws random numbers (dropout in train mode)",
    "random_state_closure": "func sets the random state on every call (model_closure of a model in train mode)",
    "recurrent_module": "func runs an nn.RNN, nn.GRU or nn.LSTM",
    "graph_outside_func": "func reads a tensor computed from a param outside func (an autograd graph to the param)",
    "product_of_product": "func itself calls a gvp-bench product (a second-order product by composition)",
    "no_forward_formula": "func runs an operator with no forward-mode formula in torch (_weight_norm_interface)",
    "parametrization": "a param is the original of a parametrization (torch.nn.utils.parametrize)",
    "sparse_gradients": "func runs an embedding with sparse=True (autograd's sparse gradients)",
    "saved_tensor_hooks": "func pushes saved-tensor hooks (a non-reentrant torch.utils.checkpoint, save_on_cpu)",
}


@dataclass(frozen=True)
class Unsupported:
    """A strategy refuses any call that exercises one of ``features`` (names from :data:`FEATURES`),
    raising UnsupportedError with ``reason`` among the words of its reason; ``why`` says why, in words."""

    features: tuple
    reason: str
    why: str

    def __post_init__(self):
        if isinstance(self.features, str):
            raise TypeError(f"features must be a tuple of feature names, got the string {self.features!r}")
        unknown = [feature for feature in self.features if feature not in FEATURES]
        if unknown:
            raise ValueError(f"unknown feature {', '.join(map(repr, unknown))}; valid features: {', '.join(FEATURES)}")

    def applies(self, features):
        """Whether a call exercising ``features`` (a set of names) is refused by this declaration."""
        return any(feature in features for feature in self.features)


def declared(strategy, features):
    """The declarations of ``strategy`` (a Strategy or its class) that refuse a call exercising ``features``."""
    return [entry for entry in getattr(strategy, "unsupported", ()) if entry.applies(set(features))]


def explains(strategy, features, reason):
    """Whether an UnsupportedError with ``reason`` is one ``strategy`` declared for a call exercising ``features``."""
    return any(entry.reason in reason for entry in declared(strategy, features))


def refusals_table(named):
    """A markdown table of what the strategies ``named`` ({name: Strategy}) declare they refuse, and why:
    docs/strategies.md holds it for the built-in strategies (a test keeps the two the same)."""
    lines = ["| strategy | refuses | why |", "|---|---|---|"]
    for name, strategy in named.items():
        for entry in strategy.unsupported:
            refused = "; ".join(FEATURES[feature] for feature in entry.features)
            lines.append(f"| `{name}` | {refused} | {entry.why} |")
    return "\n".join(lines) + "\n"
