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
from raysweep.io.checkpoints import LORA_BASE, LORA_BASE_SHA, LORA_SEP, save_sized, tie, ties
from raysweep.io.external import folder_sha, is_folder, read_bytes
from raysweep.io.store import Store
from raysweep.models import build_model
from raysweep.spec import Job
from raysweep.train.formats import format_of, read_adapter, read_state
from raysweep.train.lora import adapter_parts, fine_tune


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
        if format_of(uri) == "peft":  # its base and weights read once: the fine-tune, and what the store keeps
            state, compact = low_rank(store, run, uri, expected, model_ties)
        else:
            data = None if is_folder(uri) else read_bytes(uri)
            state, compact = tie(read_state(uri, data), model_ties), None
        problem = mismatch(uri, state, expected)
        if problem:
            raise SpecError(f"external checkpoint {uri!r} (replicate {k}) does not fit model {job.model.name!r}: "
                            f"{problem}. Check that the file was saved from this model (state_dict()).")
        tensors = _in_dtypes(state, expected, model_ties)
        sha, size = save_sized(store, paths.checkpoint(run, k, step), *(compact or (tensors,)))
        store.write_json(paths.manifest(run, k, step), {
            "job": job.name, "hash": job.hash, "replicate": k, "step": step, "epoch": None, "sha256": sha,
            "bytes": size, "path": paths.checkpoint(run, k, step), "source": uri,
            "source_sha256": folder_sha(uri) if is_folder(uri) else hashlib.sha256(data).hexdigest()})
    store.write_json(paths.train_done(run, k), {"step": len(job.external[k]) - 1, "external": True})


def _in_dtypes(state: dict, expected: dict[str, torch.Tensor], model_ties: dict[str, str]) -> dict[str, torch.Tensor]:
    """The model's tensors of `state`, floats in the model's dtypes, each tied pair one tensor (stored once)."""
    tensors = {n: state[n].to(expected[n].dtype) if expected[n].is_floating_point() else state[n] for n in expected}
    tensors.update({alias: tensors[source] for alias, source in model_ties.items()})
    return tensors


def low_rank(store: Store, run: str, uri: str, expected: dict[str, torch.Tensor],
             model_ties: dict[str, str]) -> tuple[dict[str, torch.Tensor], tuple | None]:
    """(the fine-tune a LoRA adapter makes, read once; the adapter as the store keeps it — its own tensors: the
    low-rank factors of each update and the modules it saves whole, with the base's path and sha256 as metadata
    (io/checkpoints.py: reading it gives the fine-tune) — or None where the full model must be stored instead: an
    update of a tied parameter, or a base whose dtypes are not the model's). The base is stored once per run, by
    its content, with its sha256 in a record beside it."""
    config, adapter, base_uri = read_adapter(uri)
    base = read_state(base_uri)
    whole, updates = adapter_parts(base, adapter, config, uri)
    state = tie(fine_tune(base, whole, updates), model_ties)
    tied = set(model_ties) | set(model_ties.values())
    if (set(whole) | set(updates)) & tied or any(base[n].dtype != expected[n].dtype for n in updates):
        return state, None
    path = paths.adapter_base(run, folder_sha(base_uri))
    if store.exists(paths.record(path)):
        base_sha = store.read_json(paths.record(path))["sha256"]
    else:
        base_sha, _ = save_sized(store, path, _in_dtypes(tie(base, model_ties), expected, model_ties))
        store.write_json(paths.record(path), {"sha256": base_sha})
    own = {n: t.to(expected[n].dtype) for n, t in whole.items()}
    for n, (b, a, scale, transposed) in updates.items():
        own.update({f"{n}{LORA_SEP}B": b, f"{n}{LORA_SEP}A": a,
                    f"{n}{LORA_SEP}s": torch.tensor([scale, float(transposed)], dtype=torch.float64)})
    return state, (own, {LORA_BASE: path, LORA_BASE_SHA: base_sha})


def ingest_all(job: Job, store: Store, replicates: list[int], info) -> None:
    """Ingest these replicates' external checkpoints, each checked against the job's model."""
    expected = build_model(job.model, tuple(info.in_shape), info.num_classes).state_dict()
    for k in replicates:
        ingest(job, store, k, expected)
