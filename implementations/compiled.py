"""``compiled``: torch.compile (inductor) of func_vmap's products: torch.func.jvp, vjp and vmap.

How: each product is func_vmap's (torch.func over the functional form, see
gvp_bench.functional), compiled by torch.compile with ``fullgraph=True`` and static shapes. func,
the params and the vectors are the compiled function's arguments, so dynamo traces through func
and lifts what it reads (the params, tensors its closure captures, a module's parameters and
buffers) as inputs of the graph, with guards on their shapes, dtypes and the code of func:
nothing is baked in, and a later call at new values gives the new answer. A compiled product is
kept per workload signature (gvp_bench.signature: the product, shapes, dtypes, device,
create_graph and what func is), each with a code object of its own, as dynamo keeps at most
``recompile_limit`` graphs per code object; model_jvp's closure, new on every call, has the same
signature and reuses the compiled graph. A new shape is a new signature and compiles anew.

What it refuses (UnsupportedError, with dynamo's reason): what dynamo cannot capture in one graph
(no fallback to eager at a graph break), what the backend fails to compile (inductor's
BackendCompilerFailed, as on a reentrant ``torch.utils.checkpoint``; the state the failed compilation
left entered is put back first), among them a func that sets the generator's state itself, and a param
passed straight to a custom autograd.Function (the
substitution of params cannot follow it under torch.compile; found by one eager call of func
before compiling), a tensor computed from a param outside func and a torch.nn.utils.parametrize
parametrization (found by one eager call of func under the substitution: compiled, it would give zeros),
and saved-tensor hooks in func (a non-reentrant ``torch.utils.checkpoint``, found by one more eager
call with them disabled: the compiled jvp through one answered zeros).
gvp-bench's own closure over a model in train mode (model_jvp's, a workload's: model_closure), which starts
every call from one random state, runs with that state set once around the compiled product instead
(gvp_bench.model_call.split_random_state): its graph runs the forward once, and inductor draws random numbers
as eager does (``fallback_random``), so dropout uses one mask, the same as the other strategies'.
It also refuses ``create_graph=True``: its results could be differentiated once but not twice.
Batches and Jacobians are computed with all their rows at once (func_vmap with ``chunk_size=None``):
it takes no memory budget.

When it wins: repeated products at fixed shapes whose time goes on launching many small
operators (launch-bound models on the GPU, small models on the CPU), where inductor fuses them.
Its first call per workload compiles, which takes seconds, more for the first in a process, which
starts inductor: it pays off only over many calls (auto never calibrates it unless allowed to
compile; the benchmark records the first call as ``first_call_s``).
"""

import contextlib
import os
import re
import types

import torch

from gvp_bench.kit import (NO_FORWARD_FORMULA, SUBSTITUTION_BLIND_SPOTS, Delegating, Unsupported,
                           UnsupportedError, custom_functions_called, get_strategy, signature,
                           split_random_state)
from gvp_bench.blind_spots import parametrizations_refused
from gvp_bench.functional import look_through_substitution
from gvp_bench.process_state import left_as_found, random_state_kept

NO_SECOND_ORDER = ("create_graph=True: torch.compile's graphs can be differentiated once, not twice "
                   "(aot_autograd has no double backward), and second-order products need that")


def _eager():
    """The eager products compiled: func_vmap's, with all rows at once (a chunk size chosen from the free
    memory on every call cannot live inside a graph)."""
    return get_strategy("func_vmap", chunk_size=None)


def _with_own_code(method):
    """``method`` bound to a copy of its function with a code object of its own (dynamo keeps a code object's
    compiled graphs together, at most ``recompile_limit`` of them, then runs it eagerly)."""
    function = method.__func__
    copy = types.FunctionType(function.__code__.replace(), function.__globals__, function.__name__,
                              function.__defaults__, function.__closure__)
    return types.MethodType(copy, method.__self__)


def _why(error):
    """Dynamo's reason in one line, with the innermost function of the traced code it stopped in."""
    lines = str(error).splitlines()
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', str(error))
    if not frames:
        return lines[0]
    path, line, function = frames[-1]
    return f"{lines[0]} (in {function}, {os.path.basename(path)}:{line})"


_HOOKS_PROBE = "gvp_bench: compiled probes func for saved-tensor hooks"


def _uses_saved_tensors_hooks(func, params):
    """Whether func pushes saved-tensor hooks (a non-reentrant torch.utils.checkpoint, save_on_cpu), by one call
    of func with them disabled, leaving the random state as it was. func's own errors are left to the product."""
    try:
        with random_state_kept(params), torch.autograd.graph.disable_saved_tensors_hooks(_HOOKS_PROBE):
            func()
    except RuntimeError as error:
        return _HOOKS_PROBE in str(error)
    except Exception:  # noqa: BLE001 - func's own error: the product raises it
        return False
    return False


class Compiled(Delegating):
    name = "compiled"
    costly_first_call = True
    unsupported = (
        Unsupported(("create_graph",), "create_graph=True", NO_SECOND_ORDER),
        Unsupported(("custom_function_jvp",), "Unsupported custom jvp",
                    "dynamo cannot trace a custom autograd.Function's own jvp into the graph; for J v it would "
                    "differentiate the Function's forward instead, so every such func is refused"),
        Unsupported(("recurrent_module",), "Attempted to wrap RNN, GRU, or LSTM",
                    "dynamo does not capture torch's recurrent modules in a graph"),
        Unsupported(("parametrization",), "parametrized tensor",
                    "torch.compile of the substitution gives zeros for a parametrization's original"),
        NO_FORWARD_FORMULA,  # its J v products are func_vmap's, in forward mode
        Unsupported(("saved_tensor_hooks",), "saved-tensor hooks",
                    "torch.compile's graph of torch.func.jvp through saved-tensor hooks answered zeros"),
    ) + SUBSTITUTION_BLIND_SPOTS
    # inductor's options: random operations as in eager (the same numbers from the same random state)
    compile_options = {"fallback_random": True}

    def __init__(self):
        self._compiled = {}  # workload signature -> compiled product
        self._eager = _eager()
        self._refused = {}   # workload signature -> why torch.compile failed on it

    def release(self):
        """Drop the compiled products and reset dynamo (its caches, and the CUDA-graph trees with their memory
        pools): process-wide, so other torch.compile'd code here compiles again too."""
        if self._compiled:
            self._compiled.clear()
            torch._dynamo.reset()

    def delegate(self, product, func, params, *args):
        """The compiled product for this workload signature, compiled on its first call."""
        if args[-1]:
            self._refuse(product, func, params, args, NO_SECOND_ORDER)
        key = signature(product, func, params, args)
        if key in self._refused:  # dynamo would fail the same way again, after seconds of tracing
            self._refuse(product, func, params, args, self._refused[key])
        compiled = self._compiled.get(key)
        if compiled is None:
            with parametrizations_refused(self.name, "torch.compile of the substitution gives zeros for its "
                                                     "originals"):
                custom = custom_functions_called(func, params)
            look_through_substitution(func, params)
            if custom.given_params:
                raise UnsupportedError(self.name, f"func passes a param itself to the custom autograd.Function "
                                                  f"{custom.given_params[0]}, which torch.compile does not substitute")
            if custom.own_jvp:
                raise UnsupportedError(self.name, f"Unsupported custom jvp: func calls the custom autograd.Function "
                                                  f"{custom.own_jvp[0]}, whose own jvp torch.compile does not "
                                                  f"follow (it differentiates the forward instead)")
            if _uses_saved_tensors_hooks(func, params):
                raise UnsupportedError(self.name, "func uses saved-tensor hooks (a non-reentrant torch.utils.checkpoint, "
                                                  "save_on_cpu): torch.compile's graph of torch.func.jvp through them "
                                                  "answered zeros")
            compiled = torch.compile(_with_own_code(self._eager.implementation(product)), fullgraph=True,
                                     dynamic=False, options=self.compile_options)
            self._compiled[key] = compiled
        traced, random_state = split_random_state(func)
        try:
            with left_as_found(), (random_state() if random_state else contextlib.nullcontext()):
                return compiled(traced, params, *args)
        except torch._dynamo.exc.Unsupported as error:
            reason = f"torch.compile cannot capture it in one graph: {_why(error)}"
        except torch._dynamo.exc.TorchDynamoException as error:  # among them inductor's BackendCompilerFailed
            reason = f"torch.compile failed ({type(error).__name__}): {_why(error)}"
        self._eager.implementation(product)(func, params, *args)  # func's own error or a missing formula: raised as eagerly
        self._refused[key] = reason
        raise UnsupportedError(self.name, reason)

    def _refuse(self, product, func, params, args, reason):
        """Raise what every strategy raises where that is the cause (bad input, a missing formula, func's own
        exception: the eager product tells; dynamo only says it observed an exception), else UnsupportedError
        with the reason."""
        self._eager.implementation(product)(func, params, *args)
        raise UnsupportedError(self.name, reason)

