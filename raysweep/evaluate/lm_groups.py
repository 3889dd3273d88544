"""Permutation groups of Hugging Face causal LMs, written from their blocks' structure (torch.fx cannot trace
`transformers` models: their forward passes branch on the inputs), for weight matching (align.py).

A transformer's function is unchanged when, consistently across the network,
- the residual stream's features are permuted (one group for the whole model: the token and position
  embeddings' columns, every norm's weight and bias — LayerNorm's and RMSNorm's statistics do not depend on
  the order of the features —, every projection's input columns that read the stream and the output rows
  that write into it, the final norm and the head's columns);
- each block's MLP hidden units are permuted (GPT-2's c_fc outputs and c_proj inputs; Llama's gate and up
  rows together with down's columns);
- each block's attention heads are permuted as units: a head's query, key and value rows and the output
  projection's columns that read it move together. GPT-2 also permutes the dimensions inside each head (the
  q and k rows of a head alike, the v rows with the output projection's columns): its fused c_attn holds q,
  k and v as three segments of one axis (align.Segments). Llama-style blocks rotate each head's q and k
  dimensions in pairs by position (rotary embeddings), which no permutation inside a head commutes with, so
  there heads move as whole blocks of rows; with grouped-query attention the unit is a key/value head with
  the query heads that read it (HF's `repeat_kv` order: query head h reads key/value head h // (H / KV)).

Supported: `gpt2` and the Llama family with Llama's names (`llama`, `mistral`, `qwen2` with its q/k/v biases,
`qwen3` with its per-head q/k norms). A tensor of another name, or another model type, is refused with its
name: an unknown tensor could break the function if it were left alone.
"""
from __future__ import annotations

import re

from raysweep.evaluate.graph_axes import Segments

RESID = "resid"
LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3")
SUPPORTED = ("gpt2", *LLAMA_FAMILY)


class UnsupportedModel(ValueError):
    """A transformers model whose blocks raysweep has no permutation groups for."""


def model_type(model) -> str | None:
    """The `transformers` model type of a model, None for any other module."""
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    return kind if isinstance(kind, str) and hasattr(config, "to_dict") else None


def hf_spec(model) -> dict[str, tuple]:
    """name -> the permutation group of each axis (align.py's spec) for every tensor of a GPT-2 or Llama-style
    model's state dict (tied aliases included: the caller keeps those its state holds)."""
    kind = model_type(model)
    if kind not in SUPPORTED:
        raise UnsupportedModel(f"weight matching knows the blocks of {', '.join(SUPPORTED)}; this model is "
                               f"{kind!r}")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    rule = _gpt2 if kind == "gpt2" else _llama
    spec = {}
    for name in shapes:
        axes = rule(name, model.config)
        if axes is None:
            raise UnsupportedModel(f"{kind}: the tensor {name} is not one weight matching knows how to permute")
        spec[name] = axes
    return spec


def _gpt2(name: str, config) -> tuple | None:
    """GPT-2: Conv1D weights are (in, out)."""
    if name in ("transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight"):
        return None, RESID
    if re.fullmatch(r"transformer\.ln_f\.(weight|bias)", name):
        return (RESID,)
    m = re.fullmatch(r"transformer\.h\.(\d+)\.(.+)", name)
    if m is None:
        return None
    i, rest = m.groups()
    qk, v, hidden = f"qk.{i}", f"v.{i}", f"mlp.{i}"
    heads = Segments((qk, qk, v), heads=int(config.n_head))
    return {
        "ln_1.weight": (RESID,), "ln_1.bias": (RESID,), "ln_2.weight": (RESID,), "ln_2.bias": (RESID,),
        "attn.c_attn.weight": (RESID, heads), "attn.c_attn.bias": (heads,),
        "attn.c_proj.weight": (v, RESID), "attn.c_proj.bias": (RESID,),
        "mlp.c_fc.weight": (RESID, hidden), "mlp.c_fc.bias": (hidden,),
        "mlp.c_proj.weight": (hidden, RESID), "mlp.c_proj.bias": (RESID,),
        "attn.bias": (None, None, None, None), "attn.masked_bias": (),  # older transformers' causal-mask buffers
    }.get(rest)


def _llama(name: str, config) -> tuple | None:
    """Llama-style blocks: Linear weights are (out, in); heads as whole blocks of rows (rotary q and k)."""
    if name in ("model.embed_tokens.weight", "lm_head.weight"):
        return None, RESID
    if name == "model.norm.weight":
        return (RESID,)
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", name)
    if m is None:
        return None
    i, rest = m.groups()
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    unit, hidden = f"heads.{i}", f"mlp.{i}"
    q_rows, kv_rows = (unit, dim * heads // kv_heads), (unit, dim)  # a key/value head with its query heads
    return {
        "input_layernorm.weight": (RESID,), "post_attention_layernorm.weight": (RESID,),
        "self_attn.q_proj.weight": (q_rows, RESID), "self_attn.q_proj.bias": (q_rows,),
        "self_attn.k_proj.weight": (kv_rows, RESID), "self_attn.k_proj.bias": (kv_rows,),
        "self_attn.v_proj.weight": (kv_rows, RESID), "self_attn.v_proj.bias": (kv_rows,),
        "self_attn.o_proj.weight": (RESID, q_rows), "self_attn.o_proj.bias": (RESID,),
        "self_attn.q_norm.weight": (None,), "self_attn.k_norm.weight": (None,),  # one per head dimension, shared
        "mlp.gate_proj.weight": (hidden, RESID), "mlp.up_proj.weight": (hidden, RESID),
        "mlp.down_proj.weight": (RESID, hidden),
        "mlp.gate_proj.bias": (hidden,), "mlp.up_proj.bias": (hidden,), "mlp.down_proj.bias": (RESID,),
    }.get(rest)
