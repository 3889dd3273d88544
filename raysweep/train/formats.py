"""Checkpoint formats raysweep reads from elsewhere (`external`, `train.init_from`, `raysweep interpolate`), one
registry: name -> read(uri, data) -> a state dict of tensors, with the test that says a file is in that format.
The built-ins are registered as a plugin registers its own (`@register_format("name", detect)`), and the newest
registered is tried first, so a plugin's more specific format comes before the built-ins':

    safetensors   a .safetensors file (no code runs)
    huggingface   a Hugging Face model folder (config.json and model.safetensors, or the sharded
                  model.safetensors.index.json and its shards; pytorch_model.bin read with weights_only=True), or
                  the index file itself: read tensor by tensor (safe_open) in the dtype stored; the shards of two
                  folders need not align (names count, not files)
    torch         a torch.save state dict, read with weights_only=True (no pickled code runs): a dict of
                  tensors, or {"state_dict": {...}}; DataParallel/DDP's "module." prefix removed
    peft          a LoRA adapter folder (adapter_config.json, adapter_model.safetensors) over its base (the
                  config's base_model_name_or_path, a local folder): the fine-tune it makes (train/lora.py)
"""
from __future__ import annotations

import io
import os
from typing import Callable

import torch

from raysweep.errors import SpecError
from raysweep.io import paths
from raysweep.io.external import adapter_files, folder_files, is_adapter, is_folder, read_bytes
from raysweep.plugins import Registry
from raysweep.train.lora import apply_adapter

FORMATS = Registry("checkpoint format")
DETECTS: dict[str, Callable[[str], bool]] = {}


def register_format(name: str, detect: Callable[[str], bool]):
    """Decorator: `read(uri, data: bytes | None) -> dict[str, Tensor]` for the files `detect(uri)` says are its."""
    def add(read):
        DETECTS[name] = detect
        return FORMATS.register(name)(read)
    return add


@register_format("torch", lambda uri: True)  # the last resort: tried after every other format
def read_torch(uri: str, data: bytes | None = None) -> dict[str, torch.Tensor]:
    data = read_bytes(uri) if data is None else data
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # the common {"state_dict": ..., "epoch": ...} wrapper
    return state


@register_format("safetensors", lambda uri: uri.endswith(paths.SAFETENSORS))
def read_safetensors(uri: str, data: bytes | None = None) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(read_bytes(uri) if data is None else data)


@register_format("huggingface", is_folder)
def read_huggingface(uri: str, data: bytes | None = None) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    folder, files = folder_files(uri)
    state: dict[str, torch.Tensor] = {}
    for name in files:
        path = os.path.join(folder, name)
        if name.endswith(paths.SAFETENSORS):
            with safe_open(path, framework="pt") as f:
                for key in f.keys():
                    state[key] = f.get_tensor(key)
        else:
            state.update(torch.load(path, map_location="cpu", weights_only=True))
    return state


def read_adapter(uri: str) -> tuple[dict, dict[str, torch.Tensor], str]:
    """(config, the adapter's own tensors, its base's folder) of a PEFT adapter folder."""
    config, weights, base = adapter_files(uri)
    if weights.endswith(paths.SAFETENSORS):
        adapter = read_safetensors(weights)
    else:
        adapter = torch.load(weights, map_location="cpu", weights_only=True)
    return config, adapter, base


@register_format("peft", is_adapter)  # after huggingface: an adapter folder is read as one first
def read_peft(uri: str, data: bytes | None = None) -> dict[str, torch.Tensor]:
    config, adapter, base = read_adapter(uri)
    return apply_adapter(read_state(base), adapter, config, uri)


def format_of(uri: str) -> str:
    """The registered format a checkpoint is in (the newest registered that claims it)."""
    return next(name for name in reversed(list(FORMATS)) if DETECTS[name](uri))


def read_state(uri: str, data: bytes | None = None) -> dict[str, torch.Tensor]:
    """A state dict from any registered format; a file none can read is named with the formats tried."""
    name = format_of(uri)
    try:
        state = FORMATS[name](uri, data)
    except SpecError:
        raise
    except Exception as exc:  # a foreign format, a pickle with code, a truncated file
        raise SpecError(f"external checkpoint {uri!r} cannot be read as {name} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); the formats raysweep reads are "
                        f"{sorted(FORMATS)} (safetensors, a Hugging Face folder, or a torch.save state dict "
                        f"loadable with weights_only=True)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SpecError(f"external checkpoint {uri!r} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel/DDP prefixes
