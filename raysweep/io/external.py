"""Checkpoints trained elsewhere, as bytes: local paths or s3:// / gs:// URIs, and the digest of
their content that the run's hash covers (no torch here; ``train/external.py`` copies them in)."""
from __future__ import annotations

import functools
import hashlib
import json
import os

from raysweep.errors import SpecError
from raysweep.io.paths import ADAPTER_CONFIG, ADAPTER_WEIGHTS, HF_CONFIG, HF_INDEX, HF_WEIGHTS
from raysweep.io.store import Store


def is_folder(uri: str) -> bool:
    """A Hugging Face model folder (config.json and weights, as save_pretrained writes), or a sharded
    checkpoint's index file (model.safetensors.index.json)."""
    return uri.endswith(HF_INDEX) or ("://" not in uri and os.path.isdir(os.path.expanduser(uri)))


def folder_files(uri: str) -> tuple[str, list[str]]:
    """(folder, its weight files) of a Hugging Face folder or index file: the shards its index names."""
    path = os.path.expanduser(uri)
    if "://" in uri:
        raise SpecError(f"checkpoint {uri!r}: Hugging Face folders are read from local paths; copy the folder to "
                        f"this machine (or a shared file system) and give its path")
    if uri.endswith(HF_INDEX):
        folder, index = os.path.dirname(path), path
    else:
        folder = path
        present = [w for w in HF_WEIGHTS if os.path.exists(os.path.join(folder, w))]
        if not present:
            raise SpecError(f"checkpoint folder {uri!r} holds none of {list(HF_WEIGHTS)}: give a Hugging Face model "
                            f"folder (as save_pretrained writes it) or the checkpoint file itself")
        if not present[0].endswith(HF_INDEX):
            return folder, [present[0]]
        index = os.path.join(folder, present[0])
    try:
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SpecError(f"checkpoint index {index!r} cannot be read ({type(exc).__name__}: {exc}); it should be "
                        f"save_pretrained's JSON with a weight_map") from None
    missing = [s for s in shards if not os.path.exists(os.path.join(folder, s))]
    if missing:
        raise SpecError(f"checkpoint {uri!r}: shards {missing[:5]} named by its index are missing; copy the whole "
                        f"folder")
    return folder, shards


def is_adapter(uri: str) -> bool:
    """A PEFT adapter folder: adapter_config.json beside the adapter's weights."""
    return "://" not in uri and os.path.isfile(os.path.join(os.path.expanduser(uri), ADAPTER_CONFIG))


def adapter_files(uri: str) -> tuple[dict, str, str]:
    """(config, weights file, base folder) of an adapter folder. The base is its config's
    base_model_name_or_path: a local folder, absolute or relative to the adapter folder or to the working one."""
    folder = os.path.expanduser(uri)
    try:
        with open(os.path.join(folder, ADAPTER_CONFIG)) as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise SpecError(f"adapter {uri!r}: {ADAPTER_CONFIG} cannot be read ({type(exc).__name__}: {exc})") from None
    weights = next((os.path.join(folder, w) for w in ADAPTER_WEIGHTS if os.path.exists(os.path.join(folder, w))), None)
    if weights is None:
        raise SpecError(f"adapter {uri!r} holds none of {list(ADAPTER_WEIGHTS)}: copy the whole folder peft saved")
    named = os.path.expanduser(str(config.get("base_model_name_or_path") or ""))
    bases = [os.path.join(folder, named), named] if named else []
    base = next((b for b in bases if os.path.isdir(b)), None)
    if base is None:
        raise SpecError(f"adapter {uri!r}: its base ({ADAPTER_CONFIG}'s base_model_name_or_path = {named!r}) is not "
                        f"a folder here; a LoRA adapter is read over its base model: set base_model_name_or_path to "
                        f"the base's local Hugging Face folder (absolute, or relative to the adapter's folder)")
    return config, weights, os.path.normpath(base)


def folder_sha(uri: str) -> str:
    """The content of a folder checkpoint: a digest of its config's and weight files' sha256s (an adapter's:
    its config, its weights and its base's content)."""
    if is_adapter(uri):
        config, weights, base = adapter_files(uri)
        files = [os.path.join(os.path.expanduser(uri), ADAPTER_CONFIG), weights]
        parts = [f"{os.path.basename(p)}:{_sha_of(p)}" for p in files] + [f"base:{folder_sha(base)}"]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()
    folder, files = folder_files(uri)
    parts = []
    for name in [HF_CONFIG, *files]:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            parts.append(f"{name}:{_sha_of(path)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _sha_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def read_bytes(uri: str) -> bytes:
    """The bytes of a local file or an object-store URI (the Store's credentials and endpoint)."""
    if "://" in uri:
        parent, name = uri.rsplit("/", 1)
        return Store(parent).read_bytes(name)
    try:
        with open(os.path.expanduser(uri), "rb") as f:
            return f.read()
    except OSError as exc:
        raise SpecError(f"external checkpoint {uri!r} cannot be read ({exc.strerror}); check the path") from None


@functools.lru_cache(maxsize=1024)
def _file_sha(uri: str, stamp: tuple) -> str:
    return hashlib.sha256(read_bytes(uri)).hexdigest()


def file_sha(uri: str) -> str:
    """The sha256 of a checkpoint's content (of a Hugging Face folder's files: folder_sha)."""
    if is_folder(uri):
        return folder_sha(uri)
    stamp = ()
    if "://" not in uri and os.path.exists(os.path.expanduser(uri)):
        st = os.stat(os.path.expanduser(uri))
        stamp = (st.st_size, st.st_mtime_ns)
    return _file_sha(uri, stamp)


def external_digest(external: tuple[tuple[str, ...], ...]) -> str:
    """What the run is made of: the content (sha256) of every file, in replicate and step order."""
    return hashlib.sha256(json.dumps([[file_sha(u) for u in files] for files in external]).encode()).hexdigest()[:16]
