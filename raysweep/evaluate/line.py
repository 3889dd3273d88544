"""Line items (I1-I7, LMC): rows of θ(α) = (1−α)·θ_a + α·θ_b on whole splits, with the pair's distance."""
from __future__ import annotations

import pyarrow as pa

from raysweep.io.schemas import LINE_SCHEMA
from raysweep.spec import Job
from raysweep.work.items import LineItem


def hold_outside(names: list[str], ta: list, tb: list, params, hold: str) -> tuple[list, list]:
    """A line over the tensors `params` only: the others made equal at both ends, at `hold`'s ("a" or
    "b") values, so that they stay there along the line."""
    keep = set(params)
    if hold == "b":
        return [x if n in keep else y for n, x, y in zip(names, ta, tb)], tb
    return ta, [y if n in keep else x for n, x, y in zip(names, ta, tb)]


def pair_ends(evaluator, item, host: bool = True) -> tuple[list, list, str]:
    """(θ_a, θ_b, the pair's cache key) of a line or curve item on the evaluator's device (a line's on the host,
    memory-mapped, with eval.ends = "mapped"), θ_b's hidden units matched to θ_a's when the item aligns; the
    item's extra metrics set."""
    a, b = item.a, item.b
    evaluator.set_metrics(item.metrics)
    ta = evaluator.endpoint(a.path, a.sha256, host)
    tb, pair = matched(evaluator, item, ta, evaluator.endpoint(b.path, b.sha256, host))
    return ta, tb, pair


def matched(evaluator, item, ta: list, tb: list) -> tuple[list, str]:
    """(θ_b, the pair's cache key): θ_b's hidden units matched to θ_a's when the item aligns (by weights or
    by activations). Every item of a pair (line, curve, sharpness) gives the same key: one matching each."""
    pair = f"{item.a.sha256}>{item.b.sha256}"
    if item.align == "none":
        return tb, pair
    pair += "|aligned" if item.align == "weights" else f"|aligned:{item.align}:{item.bn_batches}"
    return evaluator.aligned(ta, tb, pair, item.align, item.bn_batches), pair


def evaluate_item(evaluator, job: Job, item: LineItem) -> pa.Table:
    """Evaluate one work item with a plain-torch Evaluator; returns its rows as an Arrow table."""
    ta, tb, pair = pair_ends(evaluator, item)
    if item.params:
        ta, tb = hold_outside(evaluator.names, ta, tb, item.params, item.hold)
        pair += f"|params:{','.join(item.params)}:{item.hold}"
    distance, norm_a = evaluator.norms(ta, tb, pair_key=pair)
    rows = evaluator.evaluate_pair(ta, tb, list(item.alphas), tuple(item.splits), item.bn, item.bn_batches,
                                   pair_key=pair)
    return point_table(evaluator, job, item, rows, distance, norm_a, item.bn)


def point_table(evaluator, job: Job, item, rows: list[dict], distance: float, norm_a: float, bn: str) -> pa.Table:
    """A line's (or curve's) rows with the item's columns, as the points folder's schema stores them."""
    a, b = item.a, item.b
    common = {"job": job.name, "hash": job.hash, "sweep": item.sweep, "sweep_hash": item.sweep_hash,
              "item": item.key, "replicate_a": a.replicate, "replicate_b": b.replicate,
              "step_a": a.step, "step_b": b.step, "distance": distance, "norm_a": norm_a,
              "bn": bn, "sha256_a": a.sha256, "sha256_b": b.sha256}
    full = [{**common, **r} for r in rows]
    # extra metrics (the sweep's `metrics`) after the fixed columns; one schema per sweep folder
    schema = pa.schema(list(LINE_SCHEMA) + [(n, pa.float64()) for n in evaluator.metric_names])
    return pa.Table.from_pylist(full, schema=schema)
