"""Every storage path, built in one place. All are relative to the Store root.

    <job>/<hash>/job.json                              the resolved spec
    <job>/<hash>/replicate_<k>/step_<s>.safetensors    weights at step s (+ step_<s>.json manifest)
    <job>/<hash>/replicate_<k>/random_<scale>.safetensors  I6's random starting point
    <job>/<hash>/replicate_<k>/state.safetensors       optimizer + RNG state to resume training
    <job>/<hash>/replicate_<k>/done.json               written when training finished
    <job>/<hash>/points/<folder>/<sweep>-<sweep_hash>/<item>.parquet   one file per work item; one
                                                       schema per folder: line, trajectory, function_map, surface
    <job>/<hash>/tables/<table>.parquet                curves, barriers, ... (+ tables/inputs.json: what made them)
    <job>/<hash>/report.html                           (+ report.json: what it shows)
    <job>/<hash>/lease.json                            the driver working on the run now (heartbeat)
    cache/<dataset>-<fingerprint>/<split>.safetensors  a decoded evaluation split (+ .json with its sha256)
"""
from __future__ import annotations


def run_dir(job_name: str, job_hash: str) -> str:
    return f"{job_name}/{job_hash}"


def job_json(run: str) -> str:
    return f"{run}/job.json"


def replicate_dir(run: str, k: int) -> str:
    return f"{run}/replicate_{k}"


def checkpoint(run: str, k: int, step: int) -> str:
    return f"{replicate_dir(run, k)}/step_{step:08d}.safetensors"


def manifest(run: str, k: int, step: int) -> str:
    return f"{replicate_dir(run, k)}/step_{step:08d}.json"


def random_point(run: str, k: int, scale: float) -> str:
    return f"{replicate_dir(run, k)}/random_{scale:g}.safetensors"


def train_state(run: str, k: int) -> str:
    return f"{replicate_dir(run, k)}/state.safetensors"


def train_done(run: str, k: int) -> str:
    return f"{replicate_dir(run, k)}/done.json"


def child_dir(run: str, k: int, step: int, child: int) -> str:
    """Instability analysis: child `child` of replicate k spawned at `step` (trained on to T)."""
    return f"{replicate_dir(run, k)}/spawn_{step:08d}_c{child}"


# Every table a run has: the one list of their names (CLI, API, SQL, the tables/ folder).
TABLES = ("points", "curves", "barriers", "checkpoints", "trajectory", "function_map", "surface")

# Stored points, by the schema of their rows: every file in one folder has the same columns, so
# any Parquet reader can glob a folder (`points/line/*/*.parquet`).
POINT_FOLDERS = {"init_to_final": "line", "step_to_final": "line", "final_to_final": "line", "instability": "line",
                 "random_to_final": "line", "projection": "trajectory", "function_map": "function_map",
                 "random_plane": "surface", "line_and_random": "surface", "path_surface": "surface"}


def points_dir(run: str) -> str:
    return f"{run}/points"


def sweep_dir(run: str, kind: str, sweep_name: str, sweep_hash: str) -> str:
    return f"{points_dir(run)}/{POINT_FOLDERS[kind]}/{sweep_name}-{sweep_hash}"


def point_file(run: str, kind: str, sweep_name: str, sweep_hash: str, item_key: str) -> str:
    return f"{sweep_dir(run, kind, sweep_name, sweep_hash)}/{item_key}.parquet"


def tables_dir(run: str) -> str:
    return f"{run}/tables"


def table(run: str, name: str) -> str:
    return f"{tables_dir(run)}/{name}.parquet"


def tables_inputs(run: str) -> str:
    return f"{tables_dir(run)}/inputs.json"


def lease(run: str) -> str:
    return f"{run}/lease.json"


def report_inputs(run: str) -> str:
    return f"{run}/report.json"


def report(run: str, ext: str = "html") -> str:
    return f"{run}/report.{ext}"


def split_cache(dataset: str, fingerprint: str, split: str) -> str:
    return f"cache/{dataset}-{fingerprint}/{split}.safetensors"
