"""A module's functional form, worked out once per module and checked on every call.

model_jvp and model_vjp need, on every call, the module's trainable params, where they sit (to
call the module with replacements, as ``torch.func.functional_call`` does) and the buffers a
forward pass can update in place (which the call protects by running on copies). Walking the
module tree for these costs more than a small model's forward pass, so :func:`model_form` keeps
them per module, and re-uses them only while a flat snapshot of what they depend on still
matches: every submodule, param and buffer object in place, each param's requires_grad and
dtype and, in a module with normalisation layers, their training flags and every hook count. Any
change the form depends on (a param replaced or frozen, a layer added, a normalisation layer
switched to ``.train()``, a hook registered where it decides which buffers are updated) makes a
new form; the snapshot reads nothing else, as it is taken on every call.

Which buffers a call can update: those of every module, except the normalisation layers of
torch (BatchNorm, InstanceNorm, with torch's own forward) in eval mode, which only read their
running statistics. Forward hooks (the module's or global ones) may update anything, so with
any hook every buffer counts as updatable.
"""

import operator
import weakref
from itertools import chain

import torch
from torch import nn
from torch.nn.modules import module as module_hooks

from .blind_spots import check_distinct_storage, check_supported_dtype
from .linear_rule import large_linear_layers

# Forwards that update their module's buffers only in train mode.
_EVAL_READ_ONLY_FORWARDS = frozenset({nn.modules.batchnorm._BatchNorm.forward, nn.SyncBatchNorm.forward,
                                      nn.modules.instancenorm._InstanceNorm.forward})


_TRAINING = operator.attrgetter("training")
_PARAM_FLAGS = operator.attrgetter("requires_grad", "dtype")


def _normalisation(module):
    """Whether module is a normalisation layer of torch's whose buffers its forward updates in train mode only
    (``__class__``: a form's snapshot holds the root module by a weak proxy, whose own type is the proxy's)."""
    return module.__class__.forward in _EVAL_READ_ONLY_FORWARDS


def _hook_dicts(modules):
    """The forward hooks that can run in a call: each module's, and the global ones."""
    return [d for m in modules for d in (m._forward_hooks, m._forward_pre_hooks)] + [
        module_hooks._global_forward_hooks, module_hooks._global_forward_pre_hooks]


class _Snapshot:
    """What a form depends on: objects (compared by identity) and flags (compared by equality), read with
    C-level iteration over dicts gathered once, as it is taken on every call. Of the dicts that were empty
    (most are: an activation's, a layer's children, the hooks), it reads only whether any has an entry now.
    Training flags and hooks decide only which buffers a call can update, and only where a normalisation
    layer's are read-only in eval mode: they are read in modules that have one, nowhere else."""

    def __init__(self, modules):
        self.modules = modules
        self.normalisations = [m for m in modules if _normalisation(m) and m._buffers]
        dicts = [d for m in modules for d in (m._modules, m._parameters, m._buffers)]
        hooks = _hook_dicts(modules) if self.normalisations else []
        self.values = [d.values() for d in dicts if d]  # live views of the dicts that hold something
        self.hooks = [d for d in hooks if d]
        self.empty = [d for d in dicts + hooks if not d]
        self.params = [p for m in modules for p in m._parameters.values() if p is not None]
        self.objects = list(chain.from_iterable(self.values))
        self.flags = self._flags()

    def _flags(self):
        return (list(map(_PARAM_FLAGS, self.params)), list(map(_TRAINING, self.normalisations)),
                list(map(len, self.hooks)))

    def still_holds(self):
        objects = list(chain.from_iterable(self.values))
        return (len(objects) == len(self.objects) and all(map(operator.is_, objects, self.objects))
                and not any(map(len, self.empty)) and self._flags() == self.flags)


def _read_only_in_eval(module):
    return not module.training and _normalisation(module)


def _keeps_elsewhere(param_ids):
    """``keeps(module)``: whether the module holds one of the params (by id) in another attribute than its
    parameter dict: a tensor, or an element of a list, tuple or dict."""

    def holds(value):
        if isinstance(value, torch.Tensor):
            return id(value) in param_ids
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, (list, tuple)):
            return False
        return any(isinstance(v, torch.Tensor) and id(v) in param_ids for v in value)

    def keeps(module):
        return any(holds(value) for name, value in vars(module).items() if name != "_parameters")

    return keeps


def _embedding_needing_substitution(module):
    """An nn.Embedding with padding rows or sparse gradients, which gvp_bench.blind_spots.run_operator
    differentiates as reverse mode does inside the substitution mode only."""
    return isinstance(module, nn.Embedding) and (module.padding_idx is not None or module.sparse)


class ModelForm:
    """What model_jvp and model_vjp need of a module, valid while its snapshot matches."""

    def __init__(self, model):
        modules = list(model.modules())
        # A form must not keep its module alive: it holds the root module by a weak reference.
        self.snapshot = _Snapshot([weakref.proxy(model)] + modules[1:])
        hooked = bool(self.snapshot.hooks)  # gathered where hooks matter: with normalisation layers
        params, buffers = {}, {}  # id -> index in the order of model.parameters() / of the updatable buffers
        updatable_ids = {id(b) for m in modules if hooked or not _read_only_in_eval(m)
                         for b in m._buffers.values() if b is not None}
        # Every (dict, key) a param or an updatable buffer sits in: a tensor shared by modules sits in several.
        self.param_slots, self.buffer_slots = [], []
        for module in modules:
            for key, p in module._parameters.items():
                if p is not None and p.requires_grad:
                    self.param_slots.append((module._parameters, key, params.setdefault(id(p), len(params))))
            for key, b in module._buffers.items():
                if b is not None and id(b) in updatable_ids:
                    self.buffer_slots.append((module._buffers, key, buffers.setdefault(id(b), len(buffers))))
        by_id = {id(t): t for m in modules for t in (*m._parameters.values(), *m._buffers.values())}
        self.params = tuple(by_id[i] for i in params)  # the params model_jvp differentiates with respect to
        self.shapes = tuple(p.shape for p in self.params)  # for gvp_bench.signature
        for index, param in enumerate(self.params):  # as check_params would (a form that raises is not kept)
            check_supported_dtype(f"params[{index}]", param)
        check_distinct_storage(self.params)
        self.updatable = tuple(by_id[i] for i in buffers)
        self.large_linears = large_linear_layers(self.snapshot.modules)  # for forward_dual's constant-input rule
        # The params call() can replace: none where a module also keeps a param elsewhere than in its parameter
        # dict (an attribute, or in a list, tuple or dict), which swapping would miss, or that needs what only the
        # substitution mode does (an embedding's padding rows and sparse gradients: blind_spots.run_operator); callers
        # substitute then.
        substitute = any(map(_keeps_elsewhere(params), modules)) or any(map(_embedding_needing_substitution, modules))
        self.swappable_params = () if substitute else self.params

    def call(self, model, x, replacements=None):
        """model(x), on fresh copies of the buffers it can update, with the params replaced by
        ``replacements`` (a sequence matching :attr:`params`) when given.

        The tensors are swapped in the modules' own parameter and buffer dicts for the call, as
        torch.func.functional_call does, without its generic name lookups."""
        if not self.buffer_slots and replacements is None:
            return model(x)
        copies = [buffer.clone() for buffer in self.updatable]
        try:
            for slots, key, index in self.buffer_slots:
                slots[key] = copies[index]
            if replacements is not None:
                for slots, key, index in self.param_slots:
                    slots[key] = replacements[index]
            return model(x)
        finally:
            for slots, key, index in self.buffer_slots:
                slots[key] = self.updatable[index]
            for slots, key, index in self.param_slots:
                slots[key] = self.params[index]


_forms = {}  # id(module) -> its latest form; an entry is removed when its module is collected


def model_form(model):
    """The functional form of ``model`` (an nn.Module), made anew when the module changed since the last one."""
    key = id(model)
    form = _forms.get(key)
    if form is not None and form.snapshot.still_holds():
        return form
    fresh = ModelForm(model)
    if form is None:
        weakref.finalize(model, _forms.pop, key, None)
    _forms[key] = fresh
    return fresh
