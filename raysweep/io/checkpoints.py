"""Weights on storage: safetensors (no pickle) with a sha256 recorded in a JSON manifest.

Tied parameters (a language model's output head that *is* its input embedding) are one tensor under
two names in a state dict. A checkpoint stores such a tensor once, under its first name, and records
the other names in the file's metadata (``raysweep.ties``: {alias: source}); reading gives every name
back, each alias the same tensor as its source."""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import tempfile

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from raysweep.errors import CheckpointError
from raysweep.io import paths
from raysweep.io.store import Store

TIES_KEY = "raysweep.ties"
# a LoRA adapter kept as its low-rank factors: its base's path in the store and sha256 (metadata), and for each
# adapted weight W the tensors W::lora_B, W::lora_A and W::lora_s ([s, transposed]): W = W_base + B·A·s (or its
# transpose); tensors under plain names (modules the adapter saves whole) replace the base's
LORA_BASE, LORA_BASE_SHA, LORA_SEP = "raysweep.lora_base", "raysweep.lora_base_sha256", "::lora_"


def ties(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """{alias: source}: names whose tensor is the same view of the same storage as an earlier name's."""
    first: dict[tuple, str] = {}
    out = {}
    for name, t in tensors.items():
        if t.device.type == "meta":
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if key in first:
            out[name] = first[key]
        else:
            first[key] = name
    return out


def tie(state: dict[str, torch.Tensor], model_ties: dict[str, str]) -> dict[str, torch.Tensor]:
    """`state` with each tied pair of a model made one tensor: an alias the file omits (as Hugging Face's
    `save_pretrained` omits `lm_head.weight`) is its source, and a source the file omits is its alias."""
    out = dict(state)
    for alias, source in model_ties.items():
        if source in out:
            out[alias] = out[source]
        elif alias in out:
            out[source] = out[alias]
    return out


def save_tensors(store: Store, path: str, tensors: dict[str, torch.Tensor]) -> str:
    """Write tensors atomically; returns the file's sha256."""
    return save_sized(store, path, tensors)[0]


def encode(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors bytes of a state dict, each tied tensor once (its aliases in the metadata)."""
    aliases = ties(tensors)
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items() if k not in aliases}
    meta = {**({TIES_KEY: json.dumps(aliases, sort_keys=True)} if aliases else {}), **(metadata or {})}
    return st_save(data, metadata=meta or None)


def _metadata(data) -> dict:
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + size]).get("__metadata__") or {}


def decode(data: bytes) -> dict[str, torch.Tensor]:
    """A state dict from safetensors bytes, every alias of `encode` given back as its source's tensor."""
    tensors = st_load(data)
    for alias, source in json.loads(_metadata(data).get(TIES_KEY, "{}")).items():
        tensors[alias] = tensors[source]
    return tensors


def low_rank_updated(state: dict[str, torch.Tensor], updates: dict[str, tuple]) -> dict[str, torch.Tensor]:
    """`state` with each named weight moved by its low-rank update (B, A, s, transposed): W + B·A·s (or its
    transpose), in float64, then the weight's dtype."""
    out = dict(state)
    for target, (b, a, scale, transposed) in updates.items():
        delta = b.double() @ a.double() * scale
        out[target] = (out[target].double() + (delta.T if transposed else delta)).to(out[target].dtype)
    return out


def _adapted(store: Store, compact: dict[str, torch.Tensor], meta: dict, read) -> dict[str, torch.Tensor]:
    """The full state of a checkpoint kept as LoRA factors: its base (read with `read`, checked by its sha256) with
    the adapter's whole modules in place and each update added; the base's tied names tied again."""
    base = read(store, meta[LORA_BASE], meta[LORA_BASE_SHA])
    parts: dict[str, dict[str, torch.Tensor]] = {}
    state = dict(base)
    for key, t in compact.items():
        if LORA_SEP in key:
            target, part = key.split(LORA_SEP)
            parts.setdefault(target, {})[part] = t
        else:
            state[key] = t
    state = low_rank_updated(state, {n: (p["B"], p["A"], float(p["s"][0]), bool(p["s"][1])) for n, p in parts.items()})
    for alias, source in ties(base).items():
        state[alias] = state[source]
    return state


def save_sized(store: Store, path: str, tensors: dict[str, torch.Tensor],
               metadata: dict[str, str] | None = None) -> tuple[str, int]:
    """Write tensors atomically; returns the file's sha256 and size in bytes (a manifest records both, so that
    `raysweep status` names a missing or truncated checkpoint from a listing, without reading it)."""
    data = encode(tensors, metadata)
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
        tensors, meta = decode(data), _metadata(data)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"checkpoint {store.url(path)} cannot be read: {exc}") from None
    return _adapted(store, tensors, meta, load_tensors) if LORA_BASE in meta else tensors


ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
             "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
             "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


def map_tensors(store: Store, path: str, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint as views of a memory map of its file, not copies: their bytes live in the
    page cache, which every process on the node mapping the same file shares (and the kernel may drop and
    read again). A file on an object store is first copied to a node-local cache folder (by its sha256).
    The map is copy-on-write: writing into a tensor never reaches the file. The sha256 is checked as for
    `load_tensors`."""
    local = store.full(path) if store.is_local else _local_copy(store, path, sha256)
    try:
        with open(local, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {store.url(path)} is missing") from None
    except (OSError, ValueError) as exc:  # an empty file cannot be mapped
        raise CheckpointError(f"checkpoint {store.url(path)} cannot be read: {exc}") from None
    if sha256 is not None and hashlib.sha256(mapped).hexdigest() != sha256:
        raise CheckpointError(f"checkpoint {store.url(path)} does not match the sha256 in its manifest "
                              f"(truncated or corrupted file)")
    try:
        (size,) = struct.unpack("<Q", mapped[:8])
        header = json.loads(mapped[8:8 + size])
        meta = header.pop("__metadata__", None) or {}
        out = {}
        for name, h in header.items():
            dtype, (start, end) = ST_DTYPES[h["dtype"]], h["data_offsets"]
            count = (end - start) // dtype.itemsize
            flat = (torch.frombuffer(mapped, dtype=dtype, count=count, offset=8 + size + start) if count
                    else torch.empty(0, dtype=dtype))
            out[name] = flat.view(h["shape"])
    except Exception as exc:  # a damaged header: its JSON, its offsets, a dtype not known
        raise CheckpointError(f"checkpoint {store.url(path)} cannot be read: {type(exc).__name__}: {exc}") from None
    for alias, source in json.loads(meta.get(TIES_KEY, "{}")).items():
        out[alias] = out[source]
    return _adapted(store, out, meta, map_tensors) if LORA_BASE in meta else out


def _local_copy(store: Store, path: str, sha256: str | None) -> str:
    """A node-local copy of a remote checkpoint to map, kept by its sha256 (written atomically)."""
    local = paths.mapped_copy(tempfile.gettempdir(), sha256 or hashlib.sha256(store.url(path).encode()).hexdigest())
    folder = os.path.dirname(local)
    os.makedirs(folder, exist_ok=True)
    if sha256 is None or not os.path.exists(local):
        try:
            data = store.read_bytes(path)
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {store.url(path)} is missing") from None
        fd, part = tempfile.mkstemp(dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(part, local)
    return local
