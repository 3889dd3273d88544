"""Evaluation, plain torch: the Evaluator (set a point, evaluate whole splits; evaluator), split sums
and losses (sums, losses), conv-BN folding (fold), unit alignment (align; by activations: matching) from the
model's graph (graph_spec, graph_walk, graph_axes) or, for language models, from their blocks (lm_groups),
REPAIR (repair), and the items it runs: lines (line), curves along a bend (bend), planes and T3 surfaces
(planes), trajectories and function maps (trajectory), sharpness (sharpness) on the Hessian's products,
Lanczos and SLQ (hessian), merges (merges), and lm-evaluation-harness tasks on the live model (harness).
Import from the module that defines a name; this package re-exports nothing."""
