"""The zoo's mlp, cnn, scalar5 and elementwise as JAX functions ``apply(params, x)``, with the
weights and input of the torch model converted as they are.

``params`` is a list of arrays in the torch model's ``parameters()`` order, so tangents drawn
for the torch params convert one to one. Each function mirrors its module in gvp_bench.zoo
operation by operation (the test checks the outputs agree); a zoo entry not here has no JAX row.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

import jax
import jax.numpy as jnp
from jax import lax

# float64 cells need it; every array here gets its dtype from the torch tensor it converts.
jax.config.update("jax_enable_x64", True)


def jax_device(device):
    """The JAX device for a gvp-bench device; RuntimeError when JAX has no backend for it here."""
    device = torch.device(device)
    platform = "gpu" if device.type == "cuda" else device.type
    return jax.devices(platform)[device.index or 0]


def to_jax(tensor, device):
    """A torch tensor's values as a JAX array on ``device`` (same dtype and shape)."""
    return jax.device_put(np.asarray(tensor.detach().cpu().numpy()), jax_device(device))


def _pairs(params):
    return list(zip(params[::2], params[1::2]))


def _mlp(params, x):
    """Linear, tanh, ..., Linear."""
    *hidden, (weight, bias) = _pairs(params)
    for hidden_weight, hidden_bias in hidden:
        x = jnp.tanh(x @ hidden_weight.T + hidden_bias)
    return x @ weight.T + bias


def _conv3x3(x, weight, bias):
    """Conv2d(kernel 3, padding 1) on NCHW."""
    out = lax.conv_general_dilated(x, weight, window_strides=(1, 1), padding=((1, 1), (1, 1)),
                                   dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return out + bias[:, None, None]


def _cnn(params, x):
    """Conv, relu, MaxPool2d(2), conv, relu, AdaptiveAvgPool2d(2), flatten, Linear."""
    (conv1, bias1), (conv2, bias2), (linear, bias3) = _pairs(params)
    x = jax.nn.relu(_conv3x3(x, conv1, bias1))
    x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    x = jax.nn.relu(_conv3x3(x, conv2, bias2))
    batch, channels, height, width = x.shape
    if height % 2 or width % 2:
        raise ValueError(f"AdaptiveAvgPool2d(2) of {height}x{width}: the JAX cnn pools even sides only")
    x = x.reshape(batch, channels, 2, height // 2, 2, width // 2).mean(axis=(3, 5))
    return x.reshape(batch, -1) @ linear.T + bias3


def _scalar5(params, shifts):
    """Seed 002's f(x0 + r, x1..x4) = (x0 + r)² + x1³ + x2⁴ + x3⁵ + x4⁶ for each shift r."""
    (x,) = params
    return (x[0] + shifts) ** 2 + x[1] ** 3 + x[2] ** 4 + x[3] ** 5 + x[4] ** 6


def _elementwise(params, scale):
    """sin(scale x) flattened, then the exp-reducer exp(x).sum(1)."""
    (x,) = params
    return jnp.concatenate([jnp.sin(scale * x).reshape(-1), jnp.exp(x).sum(axis=1)])


APPLY = {"mlp": _mlp, "cnn": _cnn, "scalar5": _scalar5, "elementwise": _elementwise}


@dataclass
class JaxModel:
    apply: Callable  # (params, x) -> output
    params: list     # arrays, in the torch model's parameters() order
    x: object        # the input array


def convert(entry, device):
    """The JAX version of the zoo model ``entry`` (a gvp_bench.zoo.ZooModel), on ``device``."""
    return JaxModel(APPLY[entry.name], [to_jax(p, device) for p in entry.params], to_jax(entry.x, device))
