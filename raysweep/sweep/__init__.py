"""Sweeps: work items (items), the pure planner (planner), the prepare step (prep) and execution
(execute, local or on a Ray Data actor pool), with the driver loop that re-plans lost items (run)."""
from raysweep.io.manifests import ManifestError, read_manifests
from raysweep.sweep.execute import RETRIES, SweepStage, run_item, run_local, run_ray, with_provenance
from raysweep.sweep.items import (ITEM_FLOP, MAX_ITEMS, RANDOM_STEP, Endpoint, NotTrainedError, chunk_size, chunks,
                                  key_replicates, pair_count)
from raysweep.sweep.planner import done_paths, missing, pairs, plan, random_endpoint
from raysweep.sweep.prep import draw_random_point, prepare
from raysweep.evaluate.line import LINE_SCHEMA, POINT_SCHEMA, PROVENANCE

__all__ = ["ITEM_FLOP", "LINE_SCHEMA", "MAX_ITEMS", "POINT_SCHEMA", "PROVENANCE", "RANDOM_STEP", "RETRIES", "Endpoint",
           "ManifestError", "NotTrainedError", "SweepStage", "chunk_size", "chunks", "done_paths", "draw_random_point",
           "key_replicates", "missing", "pair_count", "pairs", "plan", "prepare", "random_endpoint", "read_manifests",
           "run_item", "run_local", "run_ray", "with_provenance"]
