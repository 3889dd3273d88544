"""Weights on storage: safetensors (no pickle) with a sha256 recorded in a JSON manifest."""
from __future__ import annotations

import hashlib

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from raysweep.errors import CheckpointError
from raysweep.io.store import Store


def save_tensors(store: Store, path: str, tensors: dict[str, torch.Tensor]) -> str:
    """Write tensors atomically; returns the file's sha256."""
    return save_sized(store, path, tensors)[0]


def save_sized(store: Store, path: str, tensors: dict[str, torch.Tensor]) -> tuple[str, int]:
    """Write tensors atomically; returns the file's sha256 and size in bytes (a manifest records both, so that
    `raysweep status` names a missing or truncated checkpoint from a listing, without reading it)."""
    data = st_save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()})
    store.write_bytes(path, data)
    return hashlib.sha256(data).hexdigest(), len(data)


def load_tensors(store: Store, path: str, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read tensors, checking the sha256 when one is given."""
    try:
        data = store.read_bytes(path)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {store.url(path)} is missing") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CheckpointError(f"checkpoint {store.url(path)} does not match the sha256 in its manifest "
                              f"(truncated or corrupted file)")
    try:
        return st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"checkpoint {store.url(path)} cannot be read: {exc}") from None
