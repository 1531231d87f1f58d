"""The model zoo: named architectures built deterministically from a seed, with their input, in sizes.

``build(name, size, seed=0, device="cpu", dtype=torch.float32)`` returns a :class:`ZooModel`:
the module (in eval mode unless ``mode="train"``), its input, and what it costs: trainable
parameter count, output size and forward FLOPs (counted by torch.utils.flop_counter on the
unfused paths, which counts matrix products and convolutions; None where it counts nothing). Sizes: ``tiny`` for the tests
(a few hundred parameters at most, so a finite-difference oracle is cheap), ``small``, ``medium``
and ``large`` for benchmarks. Everything is defined here: nothing is downloaded.
"""

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .model_call import model_closure
from .workarounds import WORKAROUNDS

SIZES = ("tiny", "small", "medium", "large")


@dataclass
class ZooModel:
    name: str
    size: str
    model: nn.Module
    x: torch.Tensor

    @property
    def params(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    @property
    def parameter_count(self):
        return sum(p.numel() for p in self.params)

    def func(self):
        """The zero-argument closure over the params that model_jvp and model_vjp differentiate."""
        return model_closure(self.model, self.x)

    @property
    def output_size(self):
        with torch.no_grad():
            return self.func()().numel()

    @property
    def flops(self):
        """Forward FLOPs as torch.utils.flop_counter counts them, on the unfused paths (fused
        attention and RNN kernels are invisible to the counter); None where it counts nothing."""
        return self.forward_costs()[1]

    def forward_costs(self):
        """The output size and the forward FLOPs (see :attr:`flops`), from one forward pass; on the meta
        device (``build(..., device="meta")``) that pass computes shapes only."""
        counter = FlopCounterMode(display=False)
        with contextlib.ExitStack() as unfused:
            for workaround in WORKAROUNDS:
                unfused.enter_context(workaround.context())
            with torch.no_grad(), counter:
                output = self.func()()
        return output.numel(), counter.get_total_flops() or None


@dataclass(frozen=True)
class _Entry:
    description: str
    make: Callable  # (size, generator) -> (module, input), in float32 on the CPU
    sizes: dict     # size -> the keyword arguments of make


_ENTRIES = {}


def _register(name, description, sizes):
    def decorate(make):
        _ENTRIES[name] = _Entry(description, make, sizes)
        return make
    return decorate


def names():
    """The zoo's model names."""
    return list(_ENTRIES)


def describe(name):
    return _entry(name).description


def _entry(name):
    if name not in _ENTRIES:
        raise ValueError(f"unknown zoo model {name!r}; valid names: {', '.join(_ENTRIES)}")
    return _ENTRIES[name]


def _size_arguments(name, entry, size):
    """The make arguments of ``size``: a tier (``"medium"``), or a tier with another input batch
    (``"medium-b4"``: the medium model on a batch of 4 inputs)."""
    tier, marker, batch = size.partition("-b")
    if tier not in entry.sizes:
        raise ValueError(f"unknown size {size!r} for {name!r}; valid sizes: {', '.join(entry.sizes)} "
                         "(or a size with another input batch: medium-b4)")
    arguments = dict(entry.sizes[tier])
    if marker:
        if not batch.isdigit() or int(batch) < 1 or "batch" not in arguments:
            raise ValueError(f"size {size!r}: the input batch after -b must be a positive int, for a model with "
                             f"a batch dimension; {name!r} has sizes {', '.join(entry.sizes)}")
        arguments["batch"] = int(batch)
    return arguments


def build(name, size="tiny", *, seed=0, device="cpu", dtype=torch.float32, mode="eval"):
    """The zoo model ``name`` at ``size`` (a tier, or a tier with another input batch: ``"medium-b4"``),
    its weights and input drawn from ``seed``."""
    entry = _entry(name)
    arguments = _size_arguments(name, entry, size)
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, x = entry.make(torch.Generator().manual_seed(seed), **arguments)
    model = model.to(device=device, dtype=dtype).train(mode == "train")
    x = x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)
    return ZooModel(name, size, model, x)


def _randn(generator, *shape):
    return torch.randn(shape, generator=generator)


@_register("mlp", "tanh MLP (the 784-1024-1024-10 of the measurements at medium size)", {
    "tiny": dict(widths=(6, 8, 8, 3), batch=4), "small": dict(widths=(784, 256, 256, 10), batch=32),
    "medium": dict(widths=(784, 1024, 1024, 10), batch=64), "large": dict(widths=(784, 1024, 1024, 10), batch=256)})
def _mlp(generator, widths, batch):
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.Tanh()]
    return nn.Sequential(*layers[:-1]), _randn(generator, batch, widths[0])


@_register("cnn", "small CNN: conv, relu, max pooling, conv, relu, average pooling, linear", {
    "tiny": dict(channels=2, side=8, batch=2), "small": dict(channels=8, side=16, batch=32),
    "medium": dict(channels=16, side=28, batch=128), "large": dict(channels=32, side=32, batch=128)})
def _cnn(generator, channels, side, batch):
    model = nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * channels, 10))
    return model, _randn(generator, batch, 1, side, side)


class _ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        return torch.relu(x + self.body(x))


@_register("resnet", "residual network: conv stem, residual blocks with BatchNorm, pooling, linear", {
    "tiny": dict(channels=2, blocks=1, side=6, batch=3), "small": dict(channels=8, blocks=2, side=16, batch=16),
    "medium": dict(channels=32, blocks=2, side=32, batch=32), "large": dict(channels=64, blocks=4, side=32, batch=64)})
def _resnet(generator, channels, blocks, side, batch):
    model = nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
        *[_ResidualBlock(channels) for _ in range(blocks)],
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))
    return model, _randn(generator, batch, 3, side, side)


class _Transformer(nn.Module):
    def __init__(self, width, heads, feedforward):
        super().__init__()
        # No dropout: inside the layer it acts on non-contiguous tensors, where torch.func transforms
        # draw another (equally valid) mask than eager mode, so no two strategies would differentiate
        # the same function. Dropout in train mode has its own conformance case.
        self.layer = nn.TransformerEncoderLayer(width, heads, feedforward, dropout=0.0, batch_first=True)
        self.head = nn.Linear(width, 4)

    def forward(self, x):
        return self.head(self.layer(x).mean(dim=1))


@_register("transformer", "nn.TransformerEncoderLayer (scaled-dot-product attention), mean-pooled, linear head", {
    "tiny": dict(width=4, heads=2, feedforward=8, length=3, batch=2),
    "small": dict(width=64, heads=4, feedforward=128, length=16, batch=8),
    "medium": dict(width=256, heads=4, feedforward=1024, length=32, batch=16),
    "large": dict(width=512, heads=8, feedforward=2048, length=64, batch=32)})
def _transformer(generator, width, heads, feedforward, length, batch):
    return _Transformer(width, heads, feedforward), _randn(generator, batch, length, width)


class _Recurrent(nn.Module):
    def __init__(self, cell, features, hidden):
        super().__init__()
        self.rnn = cell(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


_RNN_SIZES = {"tiny": dict(features=3, hidden=4, length=3, batch=2),
              "small": dict(features=16, hidden=32, length=16, batch=16),
              "medium": dict(features=64, hidden=128, length=32, batch=32),
              "large": dict(features=128, hidden=256, length=64, batch=64)}


@_register("lstm", "nn.LSTM (cuDNN on CUDA), last step, linear head", _RNN_SIZES)
def _lstm(generator, features, hidden, length, batch):
    return _Recurrent(nn.LSTM, features, hidden), _randn(generator, batch, length, features)


@_register("gru", "nn.GRU (cuDNN on CUDA), last step, linear head", _RNN_SIZES)
def _gru(generator, features, hidden, length, batch):
    return _Recurrent(nn.GRU, features, hidden), _randn(generator, batch, length, features)


class _EmbeddingBag(nn.Module):
    def __init__(self, vocabulary, width):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, width)
        self.head = nn.Linear(width, 2)

    def forward(self, tokens):
        return self.head(torch.tanh(self.embedding(tokens).mean(dim=1)))


@_register("embedding", "nn.Embedding over integer tokens, mean-pooled, linear head", {
    "tiny": dict(vocabulary=10, width=4, length=5, batch=3), "small": dict(vocabulary=1000, width=32, length=16, batch=32),
    "medium": dict(vocabulary=10000, width=128, length=32, batch=64),
    "large": dict(vocabulary=50000, width=256, length=64, batch=128)})
def _embedding(generator, vocabulary, width, length, batch):
    return _EmbeddingBag(vocabulary, width), torch.randint(vocabulary, (batch, length), generator=generator)


class _Scalar5(nn.Module):
    """f(x0..x4) = x0² + x1³ + x2⁴ + x3⁵ + x4⁶ at (x0 + r, x1..x4) for each r of a range: the Jacobian
    with respect to x is a table of gradients, one per point of the range."""

    def __init__(self):
        super().__init__()
        self.x = nn.Parameter(torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0]))

    def forward(self, shifts):
        x0 = self.x[0] + shifts
        return x0 ** 2 + self.x[1] ** 3 + self.x[2] ** 4 + self.x[3] ** 5 + self.x[4] ** 6


@_register("scalar5", "f(x) = x0² + x1³ + x2⁴ + x3⁵ + x4⁶, R^5 -> R, over a range of its first argument", {
    "tiny": dict(points=9), "small": dict(points=100), "medium": dict(points=1000), "large": dict(points=10000)})
def _scalar5(generator, points):
    return _Scalar5(), torch.arange(1.0, points + 1.0)


class _Elementwise(nn.Module):
    """sin(x) elementwise next to the exp-reducer x.exp().sum(dim=1) of torch.autograd.functional's docs."""

    def __init__(self, side):
        super().__init__()
        self.x = nn.Parameter(torch.rand(side, side))

    def forward(self, scale):
        return torch.cat([torch.sin(scale * self.x).reshape(-1), self.x.exp().sum(dim=1)])


@_register("elementwise", "sin elementwise and the exp-reducer of torch.autograd.functional's docs", {
    "tiny": dict(side=4), "small": dict(side=32), "medium": dict(side=128), "large": dict(side=512)})
def _elementwise(generator, side):
    return _Elementwise(side), torch.tensor(1.5)


@_register("tall", "a tall Jacobian: many outputs, few parameters (a small layer over many inputs)", {
    "tiny": dict(width=3, batch=16), "small": dict(width=4, batch=512),
    "medium": dict(width=8, batch=4096), "large": dict(width=8, batch=32768)})
def _tall(generator, width, batch):
    return nn.Sequential(nn.Linear(width, width), nn.Tanh()), _randn(generator, batch, width)


@_register("wide", "a wide Jacobian: few outputs, many parameters (a wide MLP on one input)", {
    "tiny": dict(features=8, hidden=16), "small": dict(features=64, hidden=512),
    "medium": dict(features=256, hidden=2048), "large": dict(features=1024, hidden=4096)})
def _wide(generator, features, hidden):
    model = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, 2))
    return model, _randn(generator, 1, features)
