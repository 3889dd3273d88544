"""Mode-connecting curves (Garipov, Izmailov, Podoprikhin, Vetrov & Wilson 2018, "Loss surfaces, mode
connectivity, and fast ensembling of DNNs"): the point φ(t) of a curve from θ_a to θ_b through a
trained bend θ, and the curve items' rows — loss and error of φ(t) on whole splits, with BatchNorm
statistics recomputed at every t (the bend's own running statistics mean nothing at a point of the
curve; Garipov et al. recompute them the same way).

    bezier:     φ(t) = (1−t)²·θ_a + 2t(1−t)·θ + t²·θ_b
    polychain:  φ(t) = (1−2t)·θ_a + 2t·θ        for t ≤ ½,   (2−2t)·θ + (2t−1)·θ_b   after

Both pass through θ_a at t = 0 and θ_b at t = 1 exactly; the polychain passes through θ at t = ½.
"""
from __future__ import annotations

import pyarrow as pa
import torch

from raysweep.evaluate.line import pair_ends, point_table
from raysweep.spec import Job
from raysweep.work.items import CurveItem


def coefficients(shape: str, t: float) -> tuple[float, float, float]:
    """(c_a, c_θ, c_b): φ(t) = c_a·θ_a + c_θ·θ + c_b·θ_b."""
    if shape == "bezier":
        return (1 - t) ** 2, 2 * t * (1 - t), t * t
    if shape == "polychain":
        return (1 - 2 * t, 2 * t, 0.0) if t <= 0.5 else (0.0, 2 - 2 * t, 2 * t - 1)
    raise ValueError(f"unknown curve shape {shape!r}; shapes are bezier and polychain")


def curve_point(shape: str, t: float, a: dict, bend: dict, b: dict) -> dict:
    """φ(t) as a state dict, in float64 arithmetic cast back (export, tests): the floating tensors
    follow the curve, integer buffers (BN's batch counters) are θ_a's."""
    ca, cm, cb = coefficients(shape, t)
    return {n: (ca * a[n].double() + cm * bend[n].double() + cb * b[n].double()).to(a[n].dtype)
            if a[n].is_floating_point() else a[n] for n in a}


@torch.no_grad()
def set_curve_point(evaluator, shape: str, t: float, a: list, bend: list, b: list) -> None:
    """The evaluator's model ← φ(t) on its parameters; buffers from θ_a (BN statistics: re-estimated)."""
    ca, cm, cb = coefficients(shape, t)
    evaluator.set_weights(a)
    idx = evaluator.param_idx
    params = [evaluator.targets[i] for i in idx]
    torch._foreach_mul_(params, float(ca))
    torch._foreach_add_(params, [bend[i] for i in idx], alpha=float(cm))
    torch._foreach_add_(params, [b[i] for i in idx], alpha=float(cb))


def curve_item(evaluator, job: Job, item: CurveItem) -> pa.Table:
    """Loss and error at each t of one curve's chunk; `distance` is ‖θ_b − θ_a‖ as on the line."""
    # on the device (mixed with the bend in place), aligned as the bend was trained when the sweep aligns
    ta, tb, pair = pair_ends(evaluator, item, host=False)
    bend = evaluator.endpoint(item.bend.path, item.bend.sha256)
    distance, norm_a = evaluator.norms(ta, tb, pair_key=pair)
    rows = []
    for t in item.alphas:
        set_curve_point(evaluator, item.shape, t, ta, bend, tb)
        if evaluator.has_bn:
            evaluator.reestimate_bn(item.bn_batches)
        for row in evaluator.evaluate(tuple(item.splits)):
            rows.append({"alpha": float(t), **row, "n_examples": evaluator.examples(row["split"])})
    return point_table(evaluator, job, item, rows, distance, norm_a, "reset")
