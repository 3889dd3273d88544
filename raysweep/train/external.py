"""Checkpoints trained elsewhere, in any registered format (train/formats.py: ``.safetensors`` files, ``torch.save``
state dicts read with ``weights_only=True`` so no pickle code runs, a plugin's own), local paths or s3:// / gs://
URIs.

Each replicate's files become its steps 0, 1, ... in the store, as safetensors with a manifest that
records the source and its sha256, so every sweep, table and report works on them as on trained
replicates, exactly once and resumable. The run's hash covers the files' content (io/external.py).
"""
from __future__ import annotations

import hashlib

import torch

from raysweep.errors import SpecError
from raysweep.io import paths
from raysweep.io.checkpoints import save_sized, tie, ties
from raysweep.io.external import folder_sha, is_folder, read_bytes
from raysweep.io.store import Store
from raysweep.models import build_model
from raysweep.spec import Job
from raysweep.train.formats import read_state


def pretrained(job: Job, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`train.init_from` read (no pickle) and checked against the model's state dict, in its dtypes."""
    uri = job.train.init_from
    state = tie(read_state(uri), ties(expected))
    problem = mismatch(uri, state, expected)
    if problem:
        raise SpecError(f"train.init_from = {uri!r} does not fit model {job.model.name!r}: {problem}. Check that the "
                        f"file was saved from this model (state_dict()).")
    return {n: state[n].to(expected[n].dtype) if expected[n].is_floating_point() else state[n] for n in expected}


def mismatch(uri: str, state: dict, expected: dict[str, torch.Tensor]) -> str:
    """'' when the state fits the model; else the offending names."""
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    shapes = sorted(f"{n}: {tuple(state[n].shape)} vs the model's {tuple(expected[n].shape)}"
                    for n in set(state) & set(expected) if state[n].shape != expected[n].shape)
    parts = [f"missing {missing[:10]}" if missing else "", f"unexpected {extra[:10]}" if extra else "",
             f"shapes differ: {shapes[:10]}" if shapes else ""]
    return "; ".join(p for p in parts if p)


def ingest(job: Job, store: Store, k: int, expected: dict[str, torch.Tensor]) -> None:
    """Copy replicate k's external files into the store as its steps 0, 1, ... (safetensors, manifests),
    then mark it done. Every file is checked against the model's state dict first."""
    run = paths.run_dir(job.name, job.hash)
    if store.exists(paths.train_done(run, k)):
        return
    if not store.exists(paths.job_json(run)):
        store.write_json(paths.job_json(run), job.to_dict())
    model_ties = ties(expected)
    for step, uri in enumerate(job.external[k]):
        data = None if is_folder(uri) else read_bytes(uri)
        state = tie(read_state(uri, data), model_ties)
        problem = mismatch(uri, state, expected)
        if problem:
            raise SpecError(f"external checkpoint {uri!r} (replicate {k}) does not fit model {job.model.name!r}: "
                            f"{problem}. Check that the file was saved from this model (state_dict()).")
        tensors = {n: state[n].to(expected[n].dtype) if expected[n].is_floating_point() else state[n]
                   for n in expected}
        tensors.update({alias: tensors[source] for alias, source in model_ties.items()})  # stored once
        sha, size = save_sized(store, paths.checkpoint(run, k, step), tensors)
        store.write_json(paths.manifest(run, k, step), {
            "job": job.name, "hash": job.hash, "replicate": k, "step": step, "epoch": None, "sha256": sha,
            "bytes": size, "path": paths.checkpoint(run, k, step), "source": uri,
            "source_sha256": hashlib.sha256(data).hexdigest() if data is not None else folder_sha(uri)})
    store.write_json(paths.train_done(run, k), {"step": len(job.external[k]) - 1, "external": True})


def ingest_all(job: Job, store: Store, replicates: list[int], info) -> None:
    """Ingest these replicates' external checkpoints, each checked against the job's model."""
    expected = build_model(job.model, tuple(info.in_shape), info.num_classes).state_dict()
    for k in replicates:
        ingest(job, store, k, expected)
