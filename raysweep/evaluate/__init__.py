"""Evaluation, plain torch: the Evaluator (set a point, evaluate whole splits; evaluator), split sums
and losses (sums, losses), conv-BN folding (fold), unit alignment (align), and the items it runs:
lines (line), planes and T3 surfaces (planes), trajectories and function maps (trajectory). Import
from the module that defines a name; this package re-exports nothing."""
