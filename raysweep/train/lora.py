"""LoRA adapters (PEFT folders: adapter_config.json and adapter_model.safetensors) read as fine-tunes: the base's
state dict plus each adapted module's low-rank update, ΔW = B·A·s with s = lora_alpha / r (lora_alpha / √r with
rsLoRA; `alpha_pattern` per module), transposed where the module stores its weight as (in, out)
(`fan_in_fan_out`, GPT-2's Conv1D) and for embeddings, as peft's `merge_and_unload` computes it. The rank is the
adapter's own (A's rows), so `rank_pattern` needs no reading. Modules saved whole (`modules_to_save`) replace the
base's. What peft adds beyond plain LoRA (DoRA's magnitudes, LoRA biases, other adapter types) is refused by
name."""
from __future__ import annotations

import math
import re

import torch

from raysweep.errors import SpecError
from raysweep.io.checkpoints import low_rank_updated

PREFIX = "base_model.model."
SUPPORTED = "LORA"


def _pattern(patterns: dict, module: str):
    """peft's rule: a pattern key applies to the modules whose name ends with it (at a dot)."""
    for key, value in (patterns or {}).items():
        if re.fullmatch(rf"(.*\.)?{key}", module):
            return value
    return None


def apply_adapter(base: dict[str, torch.Tensor], adapter: dict[str, torch.Tensor], config: dict,
                  uri: str) -> dict[str, torch.Tensor]:
    """The fine-tune an adapter makes of `base`: base tensors with every adapted weight moved by its ΔW (in float64,
    then the base's dtype) and every module saved whole put in place."""
    return fine_tune(base, *adapter_parts(base, adapter, config, uri))


def fine_tune(base: dict[str, torch.Tensor], whole: dict[str, torch.Tensor],
              updates: dict[str, "Update"]) -> dict[str, torch.Tensor]:
    """`base` with an adapter's whole modules in place (in the base's dtypes) and its low-rank updates added."""
    return low_rank_updated({**base, **{n: t.to(base[n].dtype) for n, t in whole.items()}}, updates)


Update = tuple[torch.Tensor, torch.Tensor, float, bool]  # (B, A, s, transposed): ΔW = B·A·s, or its transpose


def adapter_parts(base: dict[str, torch.Tensor], adapter: dict[str, torch.Tensor], config: dict,
                  uri: str) -> tuple[dict[str, torch.Tensor], dict[str, Update]]:
    """(the modules an adapter saves whole, by the base's names; each adapted weight's low-rank update
    (B, A, s, transposed): ΔW = B·A·s, transposed for (in, out) weights and embeddings), checked against `base`."""
    if str(config.get("peft_type", SUPPORTED)).upper() != SUPPORTED:
        raise SpecError(f"adapter {uri!r} is a {config.get('peft_type')} adapter; raysweep reads LoRA adapters "
                        f"(peft_type LORA)")
    for key, what in (("use_dora", "DoRA's magnitude vectors"), ("lora_bias", "LoRA biases")):
        if config.get(key):
            raise SpecError(f"adapter {uri!r} uses {what} ({key} = true), which raysweep does not read; merge it "
                            f"with peft's merge_and_unload() and give the saved folder instead")
    whole, updates = {}, {}
    names = {k.removeprefix(PREFIX) for k in adapter}
    for name in sorted(names):  # modules saved whole (modules_to_save; an adapted embedding's base): in place first
        if "lora_" not in name:
            target = name.replace(".base_layer.", ".")
            if target not in base:
                raise SpecError(f"adapter {uri!r} saves {name}, which its base does not have: is "
                                f"base_model_name_or_path its base?")
            whole[target] = adapter[PREFIX + name]
    for name in sorted(names):
        for kind, (a_key, b_key) in (("linear", ("lora_A.weight", "lora_B.weight")),
                                     ("embedding", ("lora_embedding_A", "lora_embedding_B"))):
            if not name.endswith("." + a_key):
                continue
            module = name[: -len(a_key) - 1]
            a, b = adapter[PREFIX + name], adapter[PREFIX + f"{module}.{b_key}"]
            if a.dim() != 2:
                raise SpecError(f"adapter {uri!r}: {module} is not a linear or embedding layer (its lora_A has "
                                f"{a.dim()} dimensions); raysweep reads LoRA on linear and embedding layers")
            rank = a.shape[0]
            alpha = _pattern(config.get("alpha_pattern"), module) or config.get("lora_alpha", 8)
            scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
            transposed = bool(kind == "embedding" or config.get("fan_in_fan_out"))
            shape = (a.shape[1], b.shape[0]) if transposed else (b.shape[0], a.shape[1])
            target = f"{module}.weight"
            if target not in base or tuple(base[target].shape) != shape:
                raise SpecError(f"adapter {uri!r} adapts {module}, whose weight the base has "
                                f"{'not' if target not in base else 'in shape ' + str(tuple(base[target].shape))}"
                                f" (the update is {shape}): is base_model_name_or_path its base?")
            updates[target] = (b, a, float(scale), transposed)
    return whole, updates
