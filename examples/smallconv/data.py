"""A dataset the way a user writes one: scikit-learn's 8x8 digits as uint8 images, with an optional
fraction kept. raysweep's contract: load(root, **kwargs) -> raysweep.data.Splits."""
import numpy as np
import torch

from raysweep.data import Splits


def load(root, keep=1.0):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = np.round(x * 255 / 16).astype(np.uint8).reshape(-1, 1, 8, 8)  # images as stored: uint8
    order = np.random.default_rng(0).permutation(len(y))[: int(len(y) * keep)]
    x, y = x[order], y[order]
    cut = int(0.7 * len(y))
    t = torch.from_numpy
    return Splits(t(x[:cut].copy()), t(y[:cut].astype(np.int64)), t(x[cut:].copy()), t(y[cut:].astype(np.int64)),
                  num_classes=10, mean=(0.30,), std=(0.37,))
