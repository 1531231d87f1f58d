"""``func`` for model_jvp and model_vjp: a call of ``model(x)`` that strategies can differentiate.

:func:`model_closure` makes it: a :class:`ModelCall`, called as any ``func`` is, with no arguments,
that runs ``model(x)`` on fresh copies of the buffers the call can update in place (BatchNorm
running statistics in train mode; see gvp_bench.model_form), so the model's buffers are exactly
as before, and torch.func transforms never see a captured tensor mutated. In train mode every call
starts from the same random state, drawn once when the call is made: dropout uses one mask for the
whole product, however many forward passes a strategy makes.

A ModelCall also takes replacements of the model's trainable params, ``call(replacements)``,
swapped in the modules for the call; ``call.trainable_params()`` says which params those replace
(none where the model keeps a param elsewhere too) (gvp_bench.functional.call_with uses both),
and ``call.model_form()`` gives the model's form. It is an object with slots rather than a
closure with attributes: one is made on every model_jvp and model_vjp.
"""

import contextlib

import torch

from .model_form import model_form
from .process_state import cuda_devices


class ModelCall:
    """``model(x)`` with the model's buffers protected, and in train mode from one random state (see the
    module's docstring). ``form``: the model's form (gvp_bench.model_form) just checked, for a call made for
    one product; None: each call takes the model's current form."""

    __slots__ = ("model", "x", "form", "random_state")

    def __init__(self, model, x, form=None, random_state=None):
        self.model, self.x, self.form, self.random_state = model, x, form, random_state

    def __call__(self, replacements=None):
        form = self.form
        if replacements is None and self.random_state is None and form is not None and not form.buffer_slots:
            return self.model(self.x)  # the usual call: nothing to swap, no buffer to protect, no random state
        if self.random_state is None:
            return self._forward(replacements)
        with self.random_state():
            return self._forward(replacements)

    def _forward(self, replacements):
        if torch.compiler.is_compiling():  # which cannot trace a form's snapshot; call_with substitutes the params
            return buffers_protected_call(self.model, self.x)()
        return self.model_form().call(self.model, self.x, replacements)

    def model_form(self):
        return self.form if self.form is not None else model_form(self.model)

    def trainable_params(self):
        return self.model_form().swappable_params

    def key(self):
        """What gvp_bench.signature keys the call under: the model's class and mode, the input's shape and dtype."""
        return ModelCall, type(self.model), self.model.training, self.x.shape, self.x.dtype


def model_closure(model, x, form=None):
    """``func`` for model_jvp / model_vjp over ``model`` and ``x``: a :class:`ModelCall` (see the module's
    docstring); in train mode with a random state drawn now."""
    return ModelCall(model, x, form, one_random_state(model) if model.training else None)


def split_random_state(func):
    """(the call, the context its random state starts from) for a call :func:`model_closure` made in train
    mode; (func, None) for any other func. For strategies that cannot run the context inside what they trace
    (torch.compile): they enter it once around a product that runs the forward pass once."""
    if isinstance(func, ModelCall) and func.random_state is not None:
        return ModelCall(func.model, func.x, func.form), func.random_state
    return func, None


def buffers_protected_call(model, x):
    """``model(x)`` on fresh copies of the model's buffers (see :func:`model_closure`)."""

    def call_model():
        buffers = dict(model.named_buffers())
        if not buffers:
            return model(x)
        copies = {name: buffer.clone() for name, buffer in buffers.items()}
        return torch.func.functional_call(model, copies, (x,), strict=False)

    return call_model


def one_random_state(model):
    """A context manager factory: each use starts from one random state, drawn here from the global
    generator (which so moves on, as a forward pass would), and restores the global state after."""
    seed = int(torch.randint(2 ** 62, ()).item())
    cpu_state = torch.Generator().manual_seed(seed).get_state()
    devices = cuda_devices(model.parameters())
    cuda_states = [torch.Generator(device=f"cuda:{d}").manual_seed(seed).get_state() for d in devices]

    @contextlib.contextmanager
    def from_the_drawn_state():
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(cpu_state)
            for device, state in zip(devices, cuda_states):
                torch.cuda.set_rng_state(state, device)
            yield

    return from_the_drawn_state
