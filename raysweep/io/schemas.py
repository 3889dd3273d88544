"""The row schemas of stored points, one per points folder (``points/<folder>/``), readable without
torch: the evaluators write them, the aggregation and any Parquet reader read them."""
from __future__ import annotations

import pyarrow as pa

# line sweeps (I1-I7, LMC): one row per (pair, α, split); extra metric columns follow (one schema per sweep)
LINE_SCHEMA = pa.schema([
    ("job", pa.string()), ("hash", pa.string()), ("sweep", pa.string()), ("sweep_hash", pa.string()),
    ("item", pa.string()), ("replicate_a", pa.int32()), ("replicate_b", pa.int32()),
    ("step_a", pa.int64()), ("step_b", pa.int64()), ("alpha", pa.float64()), ("split", pa.string()),
    ("loss", pa.float64()), ("error", pa.float64()), ("n_examples", pa.int64()),
    ("distance", pa.float64()), ("norm_a", pa.float64()), ("bn", pa.string()),
    ("sha256_a", pa.string()), ("sha256_b", pa.string()),
])
PROVENANCE = ("node_id", "device", "gpu_ids")  # where each row was computed (cluster.checks.provenance)
POINT_SCHEMA = pa.schema(list(LINE_SCHEMA) + [(name, pa.string()) for name in PROVENANCE])  # as stored

# T2: G App. B's projection of every checkpoint onto the line θ_0 → θ_T
TRAJECTORY_SCHEMA = pa.schema([
    ("job", pa.string()), ("hash", pa.string()), ("sweep", pa.string()), ("replicate", pa.int32()),
    ("step", pa.int64()), ("alpha", pa.float64()), ("beta", pa.float64()), ("norm", pa.float64()),
    ("distance", pa.float64()), ("sha256", pa.string()),
])
# T6: B's softmax outputs τ and predictions κ of every checkpoint on the first test examples
FUNCTION_SCHEMA = pa.schema([
    ("job", pa.string()), ("hash", pa.string()), ("sweep", pa.string()), ("replicate", pa.int32()),
    ("step", pa.int64()), ("tau", pa.list_(pa.float32())), ("kappa", pa.list_(pa.int16())), ("sha256", pa.string()),
])
# T3/T4/T5: the loss on a 2-D grid (kind "grid") and the projected SGD path (kind "path")
SURFACE_SCHEMA = pa.schema([
    ("job", pa.string()), ("hash", pa.string()), ("sweep", pa.string()), ("replicate", pa.int32()),
    ("kind", pa.string()), ("step", pa.int64()), ("a", pa.float64()), ("b", pa.float64()),
    ("split", pa.string()), ("loss", pa.float64()), ("error", pa.float64()),
])

# sharpness at points of a line (line sweeps' `sharpness`): λ_max, tr(H) and the loss on the examples used
SHARPNESS_SCHEMA = pa.schema([
    ("job", pa.string()), ("hash", pa.string()), ("sweep", pa.string()), ("item", pa.string()),
    ("replicate_a", pa.int32()), ("replicate_b", pa.int32()), ("step_a", pa.int64()), ("step_b", pa.int64()),
    ("alpha", pa.float64()), ("at_peak", pa.bool_()), ("split", pa.string()), ("examples", pa.int64()),
    ("loss", pa.float64()), ("lambda_max", pa.float64()), ("trace", pa.float64()),
    ("sha256_a", pa.string()), ("sha256_b", pa.string()),
] + [(name, pa.string()) for name in PROVENANCE])
# ... and, where the sweep's sharpness asks for more than λ_max (top_k, density, along: evaluate/hessian.py),
# these list columns: the top-k eigenvalues (descending), SLQ's nodes and weights (probes after one another),
# the offsets t along the top eigenvector(s), the loss at each t along v1, and on the t × t grid over v1, v2
SPECTRUM_FIELDS = [(name, pa.list_(pa.float64())) for name in
                   ("eigenvalues", "density_nodes", "density_weights", "along_t", "along_loss", "plane_loss")]

# merges (soups, task arithmetic): one row per merged model and split
MERGE_SCHEMA = pa.schema([
    ("job", pa.string()), ("hash", pa.string()), ("sweep", pa.string()), ("item", pa.string()),
    ("merge", pa.string()), ("lam", pa.float64()), ("members", pa.string()), ("split", pa.string()),
    ("loss", pa.float64()), ("error", pa.float64()), ("n_examples", pa.int64()),
] + [(name, pa.string()) for name in PROVENANCE])

# each points folder's schema (the kinds' registry names the folder: raysweep.work.kinds)
FOLDER_SCHEMAS = {"line": POINT_SCHEMA, "trajectory": TRAJECTORY_SCHEMA, "function_map": FUNCTION_SCHEMA,
                  "surface": SURFACE_SCHEMA, "sharpness": SHARPNESS_SCHEMA, "merge": MERGE_SCHEMA}
