"""Argument checks shared by every strategy, so bad input gets the same error everywhere.

Each check names the argument and what was expected, and returns the argument in the one
normal form strategies work on: params as a tuple, tangents as a tuple matching params,
cotangents shaped like the output, batches with the batch dimension first.
"""

import torch
from torch import nn

from .blind_spots import SUPPORTED_DTYPES, check_distinct_storage, check_supported_dtype
from .model_form import model_form


def check_func(func):
    if not callable(func):
        raise TypeError(f"func must be a zero-argument callable returning a tensor, got {type(func).__name__}")
    return func


def check_params(params):
    """params as a tuple of tensors: from a list or tuple, or from a dict of named tensors (as
    ``dict(model.named_parameters())``, the form torch.func takes), in the dict's order."""
    if isinstance(params, dict):
        names, values = [f"params[{key!r}]" for key in params], tuple(params.values())
        if not all(isinstance(key, str) for key in params):
            raise TypeError("params as a dict must have string keys (parameter names), "
                            f"got {', '.join(sorted({type(key).__name__ for key in params}))}")
    elif isinstance(params, (list, tuple)):
        names, values = [f"params[{index}]" for index in range(len(params))], tuple(params)
    else:
        raise TypeError(f"params must be a list, tuple or dict of tensors, got {type(params).__name__}")
    if len(values) == 0:
        raise ValueError(f"params must hold at least one tensor, got an empty {type(params).__name__}")
    seen = {}
    for name, param in zip(names, values):
        if not isinstance(param, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(param).__name__}")
        if not param.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {param.dtype}")
        check_supported_dtype(name, param)
        if id(param) in seen:
            raise ValueError(f"{name} is the same tensor as {seen[id(param)]}; pass each tensor once")
        seen[id(param)] = name
    check_distinct_storage(values)
    return values


def param_keys(params):
    """The names of dict params (results come back keyed by them), None for a list or tuple."""
    return list(params) if isinstance(params, dict) else None


def keyed(results, keys):
    """Results matching params, as a dict under ``keys`` when params was a dict, else as they are."""
    return results if keys is None else dict(zip(keys, results))


def _labels(vectors, params, name, keys):
    """How errors name each vector of a list or dict of them: ``v[0]``, or ``v['weight']``."""
    return [f"{name}[{key!r}]" for key in (keys if isinstance(vectors, dict) and keys else range(len(params)))]


def _unkeyed(vectors, keys, name):
    """Tangents given as a dict: a list in the order of the params' keys, which they must match."""
    if keys is None:
        raise TypeError(f"{name} is a dict, but params is not: pass {name} as a dict only with params as a dict")
    if set(vectors) != set(keys):
        missing, extra = [k for k in keys if k not in vectors], [k for k in vectors if k not in keys]
        raise ValueError(f"{name} must have the keys of params; " + "; ".join(
            part for part in (f"missing {missing}" if missing else "", f"not in params {extra}" if extra else "")
            if part))
    return [vectors[key] for key in keys]


def check_output(output):
    """What func() returned: a floating-point tensor."""
    if isinstance(output, torch.Tensor) and output.dtype in SUPPORTED_DTYPES:  # the usual case first: every call
        return output
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"func must return a tensor, got {type(output).__name__}")
    if not output.is_floating_point():
        raise TypeError(f"func must return a floating-point tensor, got dtype {output.dtype}")
    check_supported_dtype("func's output", output)
    return output


def check_model(model, x):
    """A module and the trainable parameters model_jvp / model_vjp differentiate with respect to."""
    return check_model_form(model, x).params


def check_model_form(model, x):
    """check_model, returning the module's functional form (gvp_bench.model_form): its trainable params
    (floating-point and distinct, as check_params requires) and how to call it with replacements."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    form = model_form(model)
    if not form.params:
        raise ValueError("model has no parameters that require grad; there is nothing to differentiate")
    return form


def _check_like(name, tensor, like, shape):
    """tensor must be a tensor of `like`'s dtype and device, with `shape`."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(tensor).__name__}")
    if tensor.dtype != like.dtype:
        raise TypeError(f"{name} must have dtype {like.dtype} like what it multiplies, got {tensor.dtype}")
    if tensor.device != like.device:
        raise ValueError(f"{name} must be on device {like.device} like what it multiplies, got {tensor.device}")
    if tensor.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(tensor.shape)}")
    return tensor


def _split_flat(name, flat, params, batch_dims):
    """Cut a flat vector (or a batch of them) into views shaped like params, in params order."""
    total = sum(p.numel() for p in params)
    lead = tuple(flat.shape[:batch_dims])
    _check_like(name, flat, params[0], lead + (total,))
    pieces, start = [], 0
    for index, param in enumerate(params):
        piece = flat[..., start:start + param.numel()].reshape(lead + tuple(param.shape))
        pieces.append(_check_like(f"{name} (the part for params[{index}])", piece, param, piece.shape))
        start += param.numel()
    return tuple(pieces)


def _expected_forms(params, batch):
    lead = "batch, " if batch else ""
    total = sum(p.numel() for p in params)
    forms = [f"a list of {len(params)} tensors shaped ({lead}*param.shape)", f"a flat tensor of shape ({lead}{total})"]
    if len(params) == 1:
        forms.insert(0, f"a tensor of shape ({lead}{', '.join(map(str, params[0].shape))})")
    return ", ".join(forms[:-1]) + " or " + forms[-1]


def check_tangents(v, params, name="v", keys=None):
    """v for a JVP: one tensor for one param, a list matching params, a dict with the keys of dict params
    (``keys``), or a flat vector."""
    labels = _labels(v, params, name, keys)
    if isinstance(v, dict):
        v = _unkeyed(v, keys, name)
    if isinstance(v, (list, tuple)):
        if len(v) != len(params):
            raise ValueError(f"{name} must hold one tensor per param ({len(params)}), got {len(v)}")
        return tuple(_check_like(label, t, p, p.shape) for label, t, p in zip(labels, v, params))
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or a list of tensors, got {type(v).__name__}")
    if len(params) == 1 and tuple(v.shape) == tuple(params[0].shape):
        return (_check_like(name, v, params[0], params[0].shape),)
    if v.dim() == 1:
        return _split_flat(name, v, params, batch_dims=0)
    raise ValueError(f"{name} must be {_expected_forms(params, batch=False)}; got a tensor of shape {tuple(v.shape)}")


def check_batch_tangents(vs, params, name="vs", keys=None):
    """vs for a batch of JVPs: the forms of check_tangents with a batch dimension first."""
    labels = _labels(vs, params, name, keys)
    if isinstance(vs, dict):
        vs = _unkeyed(vs, keys, name)
    if isinstance(vs, (list, tuple)):
        if len(vs) != len(params):
            raise ValueError(f"{name} must hold one tensor per param ({len(params)}), got {len(vs)}")
        batch = _batch_size(name, vs)
        return tuple(_check_like(label, t, p, (batch,) + tuple(p.shape)) for label, t, p in zip(labels, vs, params))
    if not isinstance(vs, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or a list of tensors, got {type(vs).__name__}")
    if vs.dim() == 0:
        raise ValueError(f"{name} must have a batch dimension first, got a 0-d tensor")
    if len(params) == 1 and tuple(vs.shape[1:]) == tuple(params[0].shape):
        _batch_size(name, [vs])
        return (_check_like(name, vs, params[0], vs.shape),)
    if vs.dim() == 2:
        _batch_size(name, [vs])
        return _split_flat(name, vs, params, batch_dims=1)
    raise ValueError(f"{name} must be {_expected_forms(params, batch=True)}; got a tensor of shape {tuple(vs.shape)}")


def _batch_size(name, tensors):
    sizes = []
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name}[{index}] must be a tensor, got {type(tensor).__name__}")
        if tensor.dim() == 0:
            raise ValueError(f"{name}[{index}] must have a batch dimension first, got a 0-d tensor")
        sizes.append(tensor.shape[0])
    if sizes[0] == 0:
        raise ValueError(f"{name} must hold at least one vector, got a batch of size 0")
    for index, size in enumerate(sizes):
        if size != sizes[0]:
            raise ValueError(f"{name}[{index}] has batch size {size}, but {name}[0] has {sizes[0]}: batch sizes must agree")
    return sizes[0]


def check_cotangent(v, output, name="v"):
    """v for a VJP, shaped like func()'s output (or flat), returned shaped like the output."""
    if (isinstance(v, torch.Tensor) and v.shape == output.shape and v.dtype == output.dtype
            and v.device == output.device):  # the usual case first: every call
        return v
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a tensor shaped like func()'s output, got {type(v).__name__}")
    if v.shape != output.shape:
        if v.dim() != 1 or v.numel() != output.numel():
            raise ValueError(f"{name} must have func()'s output shape {tuple(output.shape)} "
                             f"(or be flat with {output.numel()} elements), got {tuple(v.shape)}")
        v = v.reshape(output.shape)
    return _check_like(name, v, output, output.shape)


def require_batch(vs, name="vs"):
    """vs for a batch of VJPs is a tensor with a non-empty batch dimension (its shape is checked
    against the output by check_batch_cotangents)."""
    if not isinstance(vs, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of shape (batch, *output shape), got {type(vs).__name__}")
    if vs.dim() == 0:
        raise ValueError(f"{name} must have a batch dimension first, got a 0-d tensor")
    _batch_size(name, [vs])
    return vs


def check_batch_cotangents(vs, output, name="vs"):
    """vs for a batch of VJPs: (batch, *output shape) or (batch, output numel)."""
    require_batch(vs, name)
    if tuple(vs.shape[1:]) != tuple(output.shape):
        if vs.dim() != 2 or vs.shape[1] != output.numel():
            raise ValueError(f"{name} must have shape (batch, *{tuple(output.shape)}) or (batch, {output.numel()}), "
                             f"got {tuple(vs.shape)}")
        vs = vs.reshape((vs.shape[0],) + tuple(output.shape))
    return _check_like(name, vs, output, vs.shape)
