"""A small conv net with BatchNorm: the kind of model a researcher brings. raysweep's contract:
build(in_shape, num_classes, **kwargs) -> nn.Module, called under the replicate's seed."""
from torch import nn


def build(in_shape, num_classes, width=16):
    channels = in_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8 * width, num_classes))
