"""MODELS registry: name -> builder(ModelSpec, in_shape, num_classes) -> nn.Module."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from raysweep.spec import ModelSpec


class Maxout(nn.Module):
    """Linear layer with `pieces` linear units per output, keeping the max (Goodfellow et al. 2013)."""

    def __init__(self, d_in: int, d_out: int, pieces: int):
        super().__init__()
        self.pieces, self.d_out = pieces, d_out
        self.linear = nn.Linear(d_in, d_out * pieces)

    def forward(self, x):
        return self.linear(x).view(*x.shape[:-1], self.d_out, self.pieces).amax(-1)


ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def mlp(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Fully connected net: [dropout] -> (linear [BN] act [dropout]) x len(hidden) -> linear."""
    d_in = 1
    for d in in_shape:
        d_in *= d
    layers: list[nn.Module] = [nn.Flatten()]
    if spec.input_dropout:
        layers.append(nn.Dropout(spec.input_dropout))
    for width in spec.hidden:
        if spec.activation == "maxout":
            layers.append(Maxout(d_in, width, spec.maxout_pieces))
        else:
            layers.append(nn.Linear(d_in, width))
            if spec.batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(ACTIVATIONS[spec.activation]())
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        d_in = width
    layers.append(nn.Linear(d_in, num_classes))
    return nn.Sequential(*layers)


MODELS: dict[str, Callable[[ModelSpec, tuple[int, ...], int], nn.Module]] = {"mlp": mlp}


def init_weights(model: nn.Module) -> None:
    """OpenLTH init: kaiming_normal (fan_in) on conv/linear weights, zero biases, BN γ ~ U[0,1), β = 0."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.uniform_(m.weight)
            nn.init.zeros_(m.bias)


def build_model(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int, seed: int | None = None) -> nn.Module:
    """Build a registered model; with a seed, initialise it deterministically from that seed."""
    if spec.name not in MODELS:
        raise KeyError(f"unknown model {spec.name!r}; registered models are {sorted(MODELS)}")
    if seed is None:
        return MODELS[spec.name](spec, in_shape, num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MODELS[spec.name](spec, in_shape, num_classes)
        init_weights(model)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
