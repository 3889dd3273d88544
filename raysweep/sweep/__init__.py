"""Sweeps: work items (items), the pure planner (planner), the prepare step (prep) and execution
(execute, local or on a Ray Data actor pool), with the driver loop that re-plans lost items (run).

Names are imported on first use, so reading stored results (schemas, keys) never imports torch."""
import importlib

_WHERE = {
    **dict.fromkeys(["ManifestError", "read_manifests"], "raysweep.io.manifests"),
    **dict.fromkeys(["RETRIES", "SweepStage", "run_item", "run_local", "run_ray", "with_provenance"],
                    "raysweep.sweep.execute"),
    **dict.fromkeys(["ITEM_FLOP", "MAX_ITEMS", "RANDOM_STEP", "Endpoint", "NotTrainedError", "chunk_size", "chunks",
                     "key_replicates", "pair_count"], "raysweep.sweep.items"),
    **dict.fromkeys(["done_paths", "missing", "pairs", "plan", "random_endpoint"], "raysweep.sweep.planner"),
    **dict.fromkeys(["draw_random_point", "prepare"], "raysweep.sweep.prep"),
    **dict.fromkeys(["LINE_SCHEMA", "POINT_SCHEMA", "PROVENANCE"], "raysweep.evaluate.line"),
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'raysweep.sweep' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
