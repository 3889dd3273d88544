"""Language models from Hugging Face `transformers` (the `[lm]` extra): the built-in model `causal_lm`, built
from a config, and Hugging Face model folders read as checkpoints.

    [model]
    name = "causal_lm"
    [model.config]          # any transformers config: model_type and its fields ...
    model_type = "gpt2"
    n_embd = 64
    n_layer = 2
    n_head = 2
    # ... or a folder (or its config.json) whose config.json to start from, fields here overriding it:
    # from = "checkpoints/gpt2"

The vocabulary defaults to the dataset's (`vocab_size` = its number of classes) and the context to its
sequence length. The model is the `transformers` model itself — its state-dict names are Hugging Face's, so
its checkpoints and Hugging Face folders load into each other — initialised by `transformers` under the
replicate's seed, with a forward hook that returns the logits (N, T, V) instead of a `ModelOutput`.

A Hugging Face folder is a checkpoint wherever raysweep takes a path (train/formats.py's "huggingface").
"""
from __future__ import annotations

import contextlib
import json
import os

import torch
from torch import nn

from raysweep.errors import SpecError
from raysweep.io import paths
from raysweep.spec import ModelSpec

INSTALL = "pip install 'raysweep[lm]'"
POSITION_FIELDS = ("n_positions", "max_position_embeddings")


def transformers():
    try:
        import transformers as tf
    except ImportError:
        raise SpecError(f"language models need Hugging Face transformers, which is not installed: {INSTALL}") from None
    return tf


def hf_config(spec: ModelSpec, seq_len: int, vocab: int):
    """The transformers config of `model.config`: its `from` folder's config.json, or `model_type` (default
    gpt2), with the other fields set; the vocabulary and context fitted to the data unless given."""
    tf = transformers()
    fields = json.loads(spec.config or "{}")
    source = fields.pop("from", "")
    try:
        if source:
            folder = os.path.dirname(source) if source.endswith(paths.JSON) else source
            config = tf.AutoConfig.from_pretrained(os.path.expanduser(folder), local_files_only=True)
            for key, value in fields.items():
                setattr(config, key, value)
        else:
            # the data's vocabulary and no special ids of another vocabulary, unless the table says otherwise
            given = {"vocab_size": vocab, "bos_token_id": None, "eos_token_id": None, **fields}
            config = tf.AutoConfig.for_model(given.pop("model_type", "gpt2"), **given)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SpecError(f"model.config cannot be made a transformers config ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); give model_type (gpt2, llama, ...) and its "
                        f"fields, or from = a folder holding config.json") from None
    if config.vocab_size < vocab:
        raise SpecError(f"model.config.vocab_size = {config.vocab_size} is smaller than the data's vocabulary "
                        f"({vocab} tokens): raise it, or tokenize with the model's own tokenizer (data.tokenizer)")
    for key in POSITION_FIELDS:
        if hasattr(config, key) and key not in fields and not source:
            setattr(config, key, max(seq_len, 1))
        if getattr(config, key, None) is not None and getattr(config, key) < seq_len:
            raise SpecError(f"model.config.{key} = {getattr(config, key)} is shorter than data.seq_len = {seq_len}: "
                            f"raise it or shorten the windows")
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # ids of another vocabulary mean nothing here
        value = getattr(config, key, None)
        if isinstance(value, int) and value >= config.vocab_size:
            setattr(config, key, None)
    config.use_cache = False
    return config


def _logits(module, args, output):
    return output.logits


@contextlib.contextmanager
def model_outputs(model: nn.Module):
    """The model returning transformers' own `ModelOutput` for a while (lm-evaluation-harness reads `.logits`),
    then the logits again."""
    hook = getattr(model, "logits_hook", None)
    if hook is not None:
        hook.remove()
    try:
        yield model
    finally:
        if hook is not None:
            model.logits_hook = model.register_forward_hook(_logits)


def causal_lm(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A transformers causal LM built from `model.config` (its own init), returning logits (N, T, V)."""
    tf = transformers()
    config = hf_config(spec, int(in_shape[0]) if in_shape else 1, num_classes)
    model = tf.AutoModelForCausalLM.from_config(config)
    model.logits_hook = model.register_forward_hook(_logits)
    model.own_init = True  # transformers' init, drawn under the replicate's seed: raysweep applies none
    model.input_dtype = torch.long
    return model


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def save_folder(job, info, state: dict, out: str, meta: dict, dtype: str | None = None,
                shard: str = "2GB") -> list[str]:
    """Write `state` as a Hugging Face folder that `from_pretrained` loads: config.json, safetensors shards of at
    most `shard` with their index, tied parameters stored once (as `save_pretrained` stores them), the job's
    tokenizer files copied beside them, `meta` (what the weights are) in raysweep_export.json. Written to
    OUT.partial and renamed, so OUT is whole or absent; returns the files written."""
    import shutil

    if job.model.name != "causal_lm":
        raise SpecError(f"--out {out!r} names a folder: a Hugging Face folder is written for language models "
                        f"(model.name = \"causal_lm\"); this job's model is {job.model.name!r}: give a file name "
                        f"ending in .safetensors")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise SpecError(f"--out {out!r} exists and is not an empty folder: name a new folder (nothing was written)")
    with torch.device("meta"):
        model = causal_lm(job.model, tuple(info.in_shape), info.num_classes)
    model.load_state_dict(state, assign=True)
    model.tie_weights()
    if dtype is not None:
        model.to(DTYPES[dtype])
    partial = out.rstrip("/") + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, max_shard_size=shard)
    source = os.path.expanduser(job.data.tokenizer)
    folder = source if os.path.isdir(source) else os.path.dirname(source)
    for name in paths.HF_TOKENIZER_FILES if job.data.tokenizer else ():
        if os.path.isfile(os.path.join(folder, name)):
            shutil.copyfile(os.path.join(folder, name), os.path.join(partial, name))
    tokens = job.data.tokenizer or "bytes: raysweep's byte tokenizer (token = UTF-8 byte, 256 = end of document)"
    with open(os.path.join(partial, paths.EXPORT_META), "w") as f:
        json.dump({**meta, "tokenizer": tokens, "dtype": dtype or "as trained"}, f, indent=1)
    if os.path.isdir(out):
        os.rmdir(out)  # empty, checked above
    os.replace(partial, out)
    return sorted(os.listdir(out))
