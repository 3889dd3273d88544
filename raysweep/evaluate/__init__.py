"""Evaluation, plain torch: the Evaluator (set a point, evaluate whole splits) and the items it runs:
lines (line), planes and T3 surfaces (planes), trajectories and function maps (trajectory)."""
from raysweep.evaluate.evaluator import (BN_RESET_SEED, BN_TYPES, Evaluator, first_layer_split, pick_device,
                                         split_metrics, split_sums, training_loss)

__all__ = ["BN_RESET_SEED", "BN_TYPES", "Evaluator", "first_layer_split", "pick_device", "split_metrics", "split_sums",
           "training_loss"]
