"""Every storage path, built in one place. All are relative to the Store root.

    <job>/<hash>/job.json                              the resolved spec
    <job>/<hash>/replicate_<k>/step_<s>.safetensors    weights at step s (+ step_<s>.json manifest)
    <job>/<hash>/replicate_<k>/random_<scale>.safetensors  I6's random starting point
    <job>/<hash>/replicate_<k>/random_<scale>.json     ... its sha256
    <job>/<hash>/replicate_<k>/state.safetensors       optimizer + RNG state to resume training (+ state.sha256.json)
    <job>/<hash>/replicate_<k>/done.json               written when training finished
    <job>/<hash>/adapter_bases/<digest>.safetensors    the base of LoRA adapters kept low-rank, by its content (+ .json)
    <job>/<hash>/replicate_<k>/spawn_<s>_c<c>/         instability child c spawned at step s: step_<T>.safetensors,
                                                       step_<T>.json, state.safetensors + state.json, done.json
    <job>/<hash>/replicate_<k>/plane_<sweep>_<hash>_v2.safetensors   T4/T5 directions (+ .json with the sha256)
    <job>/<hash>/replicate_<k>/path_<sweep>_<hash>.json               T3 path projection (+ .json.sha256)
    <job>/<hash>/points/<folder>/<sweep>-<sweep_hash>/<item>.parquet   one file per work item; one
                                                       schema per folder: line, trajectory, function_map, surface
    <job>/<hash>/points/<folder>/<sweep>-<sweep_hash>/_part-<digest>.parquet   compacted items (+ .json record)
    <job>/<hash>/tables/<table>.parquet                curves, barriers, ... (+ tables/inputs.json: what made them)
    <job>/<hash>/report.html                           (+ report.json: what it shows)
    <job>/<hash>/lease.json                            the driver working on the run now (heartbeat)
    <job>-rehearsal/<hash>/rehearsal.json             `raysweep run --rehearse`'s report (its run: the stand-in's)
    <job>-rehearsal/probes/probe-<node>-<pid>.bin      the rehearsal's store probes, deleted as it goes
    <job>/<hash>/slurm/raysweep-<stamp>.sbatch         a `raysweep slurm` script (+ slurm-<job id>.out logs there
                                                       when the storage is a folder)
    cache/<dataset>-<fingerprint>/<split>.safetensors  a decoded evaluation split (+ .json with its sha256)
    datasets/<name>-<fingerprint>/manifest.json        a packed dataset (`raysweep data pack`): classes, counts,
    datasets/<name>-<fingerprint>/<split>/part-<k>.parquet   shards of encoded images (+ part-<k>.json: sha256)

No other module spells a file name: the suffixes are named here too (a test checks that).
"""
from __future__ import annotations

import re

JSON, PARQUET, SAFETENSORS = ".json", ".parquet", ".safetensors"
# the files of other tools that raysweep reads (not keys of its store): Hugging Face model folders, in the order
# their weights are looked for, with their config and tokenizer; `datasets` folders saved with save_to_disk
HF_INDEX = ".index.json"
HF_WEIGHTS = ("model" + SAFETENSORS, "model" + SAFETENSORS + HF_INDEX, "pytorch_model.bin",
              "pytorch_model.bin" + HF_INDEX)
HF_CONFIG, HF_TOKENIZER = "config" + JSON, "tokenizer" + JSON
# a tokenizer's files, copied into an exported Hugging Face folder; what the exported weights are, beside them
HF_TOKENIZER_FILES = (HF_TOKENIZER, "tokenizer_config" + JSON, "special_tokens_map" + JSON, "vocab" + JSON,
                      "merges.txt", "tokenizer.model", "added_tokens" + JSON)
EXPORT_META = "raysweep_export" + JSON
# a PEFT adapter folder (save_pretrained of a peft model): its config and weights
ADAPTER_CONFIG = "adapter_config" + JSON
ADAPTER_WEIGHTS = ("adapter_model" + SAFETENSORS, "adapter_model.bin")
HF_DATASET_MARKERS = ("dataset_dict" + JSON, "state" + JSON)
MANIFEST_NAME = re.compile(r"step_(\d{8})\.json")  # a checkpoint manifest's file name
PART_PREFIX = "_part-"  # compacted points (sweep/compact.py)


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


def step_of(path: str) -> int | None:
    """The step a replicate's checkpoint or manifest names (step_<s>.safetensors / .json), else None."""
    name = path.rsplit("/", 1)[-1]
    stem = name.removesuffix(SAFETENSORS).removesuffix(JSON)
    if not stem.startswith("step_") or stem == name or not stem[5:].isdigit():
        return None
    return int(stem[5:])


def random_point(run: str, k: int, scale: float) -> str:
    return f"{replicate_dir(run, k)}/random_{scale:g}.safetensors"


def train_state(run: str, k: int) -> str:
    return f"{replicate_dir(run, k)}/state.safetensors"


def train_state_record(run: str, k: int) -> str:
    return f"{replicate_dir(run, k)}/state.sha256.json"


def train_done(run: str, k: int) -> str:
    return replicate_done(replicate_dir(run, k))


def replicate_done(replicate_folder: str) -> str:
    return f"{replicate_folder}/done.json"


def child_dir(run: str, k: int, step: int, child: int) -> str:
    """Instability analysis: child `child` of replicate k spawned at `step` (trained on to T)."""
    return f"{replicate_dir(run, k)}/spawn_{step:08d}_c{child}"


def child_checkpoint(run: str, k: int, step: int, child: int, total: int) -> str:
    return f"{child_dir(run, k, step, child)}/step_{total:08d}.safetensors"


def child_manifest(run: str, k: int, step: int, child: int, total: int) -> str:
    return f"{child_dir(run, k, step, child)}/step_{total:08d}.json"


def child_state(run: str, k: int, step: int, child: int) -> str:
    return f"{child_dir(run, k, step, child)}/state.safetensors"


def child_state_record(run: str, k: int, step: int, child: int) -> str:
    return f"{child_dir(run, k, step, child)}/state.json"


def child_done(run: str, k: int, step: int, child: int) -> str:
    return f"{child_dir(run, k, step, child)}/done.json"


def curves_dir(run: str) -> str:
    return f"{run}/curves"


def bend_dir(run: str, sweep_name: str, bend_hash: str, i: int, j: int) -> str:
    """Mode-connecting curves: the trained bend of a curve sweep between replicates i < j."""
    return f"{curves_dir(run)}/{sweep_name}-{bend_hash}/r{i}__r{j}"


def bend_pair(path: str) -> tuple[int, ...]:
    """The replicates (i, j) whose bend a file under curves_dir belongs to; () for other files."""
    found = re.search(r"/r(\d+)__r(\d+)/", path)
    return (int(found.group(1)), int(found.group(2))) if found else ()


def bend(run: str, sweep_name: str, bend_hash: str, i: int, j: int) -> str:
    """The bend as a state dict of the model (its record, `record(path)`, holds sha256 and how it trained)."""
    return f"{bend_dir(run, sweep_name, bend_hash, i, j)}/bend.safetensors"


def bend_state(run: str, sweep_name: str, bend_hash: str, i: int, j: int) -> str:
    return f"{bend_dir(run, sweep_name, bend_hash, i, j)}/state.safetensors"


def bend_done(run: str, sweep_name: str, bend_hash: str, i: int, j: int) -> str:
    return f"{bend_dir(run, sweep_name, bend_hash, i, j)}/done.json"


def plane(run: str, k: int, sweep_name: str, sweep_hash: str) -> str:
    """T4/T5 directions of replicate k. v2: T5's d1 carries BN statistics (planes drawn before are not reused)."""
    return f"{replicate_dir(run, k)}/plane_{sweep_name}_{sweep_hash}_v2.safetensors"


def path_info(run: str, k: int, sweep_name: str, sweep_hash: str) -> str:
    """T3: α(t), β(t) of replicate k's checkpoints."""
    return f"{replicate_dir(run, k)}/path_{sweep_name}_{sweep_hash}.json"


def record(path: str) -> str:
    """The JSON record (sha256) kept beside a prepared file: x.safetensors -> x.json, x.json -> x.json.sha256."""
    return path[:-len(SAFETENSORS)] + JSON if path.endswith(SAFETENSORS) else path + ".sha256"


# Every table a run has: the one list of their names (CLI, API, SQL, the tables/ folder).
TABLES = ("points", "curves", "barriers", "checkpoints", "trajectory", "function_map", "surface", "sharpness", "merges")

def points_dir(run: str) -> str:
    return f"{run}/points"


def sweep_dir(run: str, folder: str, sweep_name: str, sweep_hash: str) -> str:
    """A sweep's points: `folder` is its kind's points folder (raysweep.work.kinds)."""
    return f"{points_dir(run)}/{folder}/{sweep_name}-{sweep_hash}"


def point_file(sweep_folder: str, item_key: str) -> str:
    return f"{sweep_folder}/{item_key}.parquet"


def item_key(path: str) -> str:
    """The work item a points file holds (its name without the suffix)."""
    return path.rsplit("/", 1)[-1].removesuffix(PARQUET)


def part(sweep_folder: str, digest: str) -> str:
    return f"{sweep_folder}/{PART_PREFIX}{digest}.parquet"


def part_record(part_path: str) -> str:
    return part_path.removesuffix(PARQUET) + JSON


def is_part(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith(PART_PREFIX)


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


def rehearsal_probes(job_name: str) -> str:
    """Probe objects the rehearsal writes and deletes (every node's store round trip): in the rehearsal's own
    folder, never the real run's."""
    return f"{job_name}-rehearsal/probes"


def rehearsal_report(run: str) -> str:
    return f"{run}/rehearsal.json"


def slurm_dir(run: str) -> str:
    return f"{run}/slurm"


def slurm_script(run: str, stamp: str) -> str:
    return f"{slurm_dir(run)}/raysweep-{stamp}.sbatch"


def dataset_dir(name: str, fingerprint: str) -> str:
    """A packed dataset (raysweep data pack): Parquet shards of encoded images, by content fingerprint."""
    return f"datasets/{name}-{fingerprint}"


def dataset_manifest(folder: str = "") -> str:
    """The manifest of a packed dataset (`folder` relative to the store, or "" inside the dataset's own)."""
    return f"{folder}/manifest.json" if folder else "manifest.json"


def dataset_shard(split: str, k: int) -> str:
    """A shard, relative to its dataset's folder (a dataset can be opened wherever it lies)."""
    return f"{split}/part-{k:05d}.parquet"


def dataset_shard_record(shard: str) -> str:
    return shard.removesuffix(PARQUET) + JSON


def split_cache(dataset: str, fingerprint: str, split: str) -> str:
    return f"cache/{dataset}-{fingerprint}/{split}.safetensors"


def split_cache_record(dataset: str, fingerprint: str, split: str) -> str:
    return f"cache/{dataset}-{fingerprint}/{split}.json"


def mapped_copy(folder: str, key: str) -> str:
    """A node-local copy of a remote checkpoint, by its sha256, that a sweep actor memory-maps (eval.ends =
    "mapped"; `folder` is the node's temporary folder)."""
    return f"{folder}/raysweep-mapped/{key}{SAFETENSORS}"


def adapter_base(run: str, digest: str) -> str:
    """The base model of LoRA adapter checkpoints stored as their low-rank factors, once per run and content."""
    return f"{run}/adapter_bases/{digest}{SAFETENSORS}"
