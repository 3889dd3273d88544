"""Evaluation, plain torch: the Evaluator (set a point, evaluate whole splits) and the items it runs:
lines (line), planes and T3 surfaces (planes), trajectories and function maps (trajectory).

Names are imported on first use: the row schemas (line, planes, trajectory) can be read without torch."""
import importlib

_NAMES = ["BN_RESET_SEED", "BN_TYPES", "Evaluator", "first_layer_split", "pick_device", "split_metrics", "split_sums",
          "training_loss"]
__all__ = _NAMES


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module 'raysweep.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module("raysweep.evaluate.evaluator"), name)
