"""Line items (I1-I7): rows of θ(α) = (1−α)·θ_a + α·θ_b on whole splits, with the pair's distance."""
from __future__ import annotations

import pyarrow as pa

from raysweep.spec import Job

LINE_SCHEMA = pa.schema([
    ("job", pa.string()), ("hash", pa.string()), ("sweep", pa.string()), ("sweep_hash", pa.string()),
    ("item", pa.string()), ("replicate_a", pa.int32()), ("replicate_b", pa.int32()),
    ("step_a", pa.int64()), ("step_b", pa.int64()), ("alpha", pa.float64()), ("split", pa.string()),
    ("loss", pa.float64()), ("error", pa.float64()), ("n_examples", pa.int64()),
    ("distance", pa.float64()), ("norm_a", pa.float64()), ("bn", pa.string()),
    ("sha256_a", pa.string()), ("sha256_b", pa.string()),
])
PROVENANCE = ("node_id", "device", "gpu_ids")  # where each row was computed (cluster.provenance)
POINT_SCHEMA = pa.schema(list(LINE_SCHEMA) + [(name, pa.string()) for name in PROVENANCE])  # as stored


def evaluate_item(evaluator, job: Job, item: dict) -> pa.Table:
    """Evaluate one work item with a plain-torch Evaluator; returns its rows as an Arrow table."""
    a, b = item["a"], item["b"]
    evaluator.set_metrics(item.get("metrics", ()))
    ta = evaluator.endpoint(a["path"], a["sha256"])
    tb = evaluator.endpoint(b["path"], b["sha256"])
    pair = f"{a['sha256']}>{b['sha256']}"
    if item.get("align", "none") == "weights":  # θ_b with its hidden units matched to θ_a's
        pair += "|aligned"
        tb = evaluator.aligned(ta, tb, pair)
    distance, norm_a = evaluator.norms(ta, tb, pair_key=pair)
    rows = evaluator.evaluate_pair(ta, tb, item["alphas"], tuple(item["splits"]), item["bn"], item["bn_batches"],
                                   pair_key=pair)
    common = {"job": job.name, "hash": job.hash, "sweep": item["sweep"], "sweep_hash": item["sweep_hash"],
              "item": item["key"], "replicate_a": a["replicate"], "replicate_b": b["replicate"],
              "step_a": a["step"], "step_b": b["step"], "distance": distance, "norm_a": norm_a,
              "bn": item["bn"], "sha256_a": a["sha256"], "sha256_b": b["sha256"]}
    full = [{**common, **r} for r in rows]
    # extra metrics (the sweep's `metrics`) after the fixed columns; one schema per sweep folder
    schema = pa.schema(list(LINE_SCHEMA) + [(n, pa.float64()) for n in evaluator.metric_names])
    return pa.Table.from_pylist(full, schema=schema)
