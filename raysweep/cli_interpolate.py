"""`raysweep interpolate`: sweep the line between checkpoints trained elsewhere, in one command."""
from __future__ import annotations

from typing import List, Optional

import typer

from raysweep.cli_common import AddressOpt, ReplicatesOpt, SetOpt, StorageOpt, _fits, _guard, _open, app
from raysweep.errors import SpecError
from raysweep.io import paths
from raysweep.jobs import job_from_dict
from raysweep.spec import MERGE_KINDS, apply_overrides, is_import_path, parse_value


def _pairs(items: Optional[List[str]], flag: str) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SpecError(f"{flag} {item!r} has no '='; write it as name=value, e.g. {flag} width=32")
        key, text = item.split("=", 1)
        out[key.strip()] = parse_value(text.strip())
    return out


def _args(name: str, items: Optional[List[str]], flag: str) -> dict:
    """--model-arg/--data-arg: your code's keyword arguments (an import path), or a built-in's fields (the same
    names as in a job file; an unknown one is named with the valid ones)."""
    pairs = _pairs(items, flag)
    if not pairs:
        return {}
    return {"kwargs": pairs} if is_import_path(name) else pairs


def _from_folder(first: str, model: str, model_fields: dict, data: str, data_fields: dict) -> tuple[dict, dict]:
    """A causal_lm between Hugging Face folders takes the first folder's config (a LoRA adapter's: its base's), and
    text data its tokenizer, unless the command gives them (--model-arg config=..., --data-arg tokenizer=...)."""
    import os

    from raysweep.io.external import adapter_files, is_adapter, is_folder

    if model != "causal_lm" or not is_folder(first):
        return model_fields, data_fields
    folder = os.path.dirname(first) if first.endswith(paths.HF_INDEX) else first
    if is_adapter(first):
        folder = adapter_files(first)[2]
    if "config" not in model_fields and os.path.exists(os.path.join(folder, paths.HF_CONFIG)):
        model_fields = {**model_fields, "config": {"from": os.path.abspath(folder)}}
    if data in ("pydoc", "text") and "tokenizer" not in data_fields and \
            os.path.exists(os.path.join(folder, paths.HF_TOKENIZER)):
        data_fields = {**data_fields, "tokenizer": os.path.abspath(folder)}
        typer.echo(f"tokenizing {data} with {os.path.join(folder, paths.HF_TOKENIZER)} (the first checkpoint's; "
                   f"--data-arg tokenizer=PATH for another)")
    return model_fields, data_fields


@app.command()
@_guard
def interpolate(
    checkpoints: List[str] = typer.Argument(
        ..., help="Two or more checkpoint files or s3:// URIs (.safetensors or torch.save state dicts), or Hugging "
                  "Face model folders: θ_a, θ_b, ..."
    ),
    model: str = typer.Option(..., "--model", help="Built-in model name or your builder, pkg.module:build"),
    data: str = typer.Option(..., "--data", help="Built-in dataset name or your loader, pkg.module:load"),
    model_arg: Optional[List[str]] = typer.Option(None, "--model-arg", help="Your builder's keyword, or a built-in "
                                                  "model's field (hidden=[128,64]): name=value"),
    data_arg: Optional[List[str]] = typer.Option(None, "--data-arg", help="Your loader's keyword, or a built-in "
                                                 "dataset's field (pixels=unit): name=value"),
    alpha: str = typer.Option("0:1:51", "--alpha", help="START:STOP:NUM of the α grid"),
    split: Optional[List[str]] = typer.Option(None, "--split", help="test (default) and/or train"),
    bn: str = typer.Option("interpolate", "--bn", help="interpolate or reset (BN statistics)"),
    set_: Optional[List[str]] = SetOpt,
    storage: Optional[str] = StorageOpt,
    address: Optional[str] = AddressOpt,
    report: bool = typer.Option(True, help="Write report.html"),
    progress: bool = typer.Option(True, help="Show progress"),
) -> None:
    """Sweep the line between checkpoints trained elsewhere, no training: θ(α) from the first file to the
    last.  Example: raysweep interpolate --model mypkg.nets:build
    --data mypkg.data:load a.pt b.pt --alpha -0.5:1.5:81"""
    import polars as pl

    try:
        start, stop, num = alpha.split(":")
        grid = {"start": float(start), "stop": float(stop), "num": int(num)}
    except ValueError:
        raise SpecError(f"--alpha {alpha!r} is not START:STOP:NUM, e.g. 0:1:51 or -0.5:1.5:81") from None
    if len(checkpoints) < 2:
        raise SpecError("interpolate needs at least two checkpoints: θ_a and θ_b")
    model_fields, data_fields = _args(model, model_arg, "--model-arg"), _args(data, data_arg, "--data-arg")
    model_fields, data_fields = _from_folder(checkpoints[0], model, model_fields, data, data_fields)
    raw = {"name": "interpolate", "replicates": 1, "external": [list(checkpoints)],
           "model": {"name": model, **model_fields},
           "data": {"name": data, **data_fields},
           "sweeps": [{"name": "line", "kind": "init_to_final", "alpha": grid, "splits": split or ["test"], "bn": bn}]}
    from raysweep.api import Run
    from raysweep.io.store import Store

    run = Run(job_from_dict(apply_overrides(raw, set_ or []), "raysweep interpolate"), Store(storage))
    _fits(run, address)
    summary = run.run(progress=progress, address=address, report=report)
    b = run.barriers.filter(pl.col("sweep") == "line").collect()
    for row in b.iter_rows(named=True):
        typer.echo(f"{row['split']} {row['metric']}: barrier (max above the endpoints' line) "
                   f"{row['barrier_linear_mean']:.4g}, max increase {row['max_increase_mean']:.4g}")
    for name, where in summary.outputs.items():
        typer.echo(f"  {name:8s} {where}")
    typer.echo(f"  run id   {run.job.name}/{run.job.hash} (`raysweep results {run.job.name}/{run.job.hash}`, "
               f"`raysweep query`, `raysweep plot` open it)")


@app.command()
@_guard
def export(
    job: str,
    sweep: str = typer.Option(..., "--sweep", help="A line, curve or merge sweep of the job"),
    out: str = typer.Option(..., "--out", help="A .safetensors file, or a language model's Hugging Face folder"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Cast the weights: fp32, bf16 or fp16"),
    shard_size: str = typer.Option("2GB", "--shard-size", help="A Hugging Face folder's largest shard, e.g. 5GB"),
    alpha: Optional[float] = typer.Option(
        None, "--alpha", help="A line's point θ(α) = (1−α)·θ_a + α·θ_b, or a curve's t in [0, 1]"
    ),
    replicate: Optional[int] = typer.Option(None, "--replicate", help="θ_a's replicate (default: the first)"),
    pair: Optional[str] = typer.Option(None, "--pair", help="final_to_final, curve and slerp: I,J"),
    step: Optional[int] = typer.Option(None, "--step", help="step_to_final: θ_a's step t"),
    merge: Optional[str] = typer.Option(None, "--merge", help="A soup sweep's merge: uniform or greedy"),
    lam: Optional[float] = typer.Option(
        None, "--lam", help="A merge sweep's value: task_arithmetic's λ, ties' density, dare's drop rate, slerp's t"),
    set_: Optional[List[str]] = SetOpt,
    storage: Optional[str] = StorageOpt,
    replicates: Optional[int] = ReplicatesOpt,
) -> None:
    """Write θ(α) of a sweep's line, φ(t) of a curve, or a merge of a merge sweep: a .safetensors file for
    load_state_dict, or (a language model) a Hugging Face folder for from_pretrained.
    Example: raysweep export digits_mlp --sweep final_to_final --pair 0,1 --alpha 0.5 --out merged.safetensors
    Example: raysweep export tinylm_finetunes --sweep ties --lam 0.4 --out ties-0.4/ --dtype bf16"""
    if dtype is not None and dtype not in ("fp32", "bf16", "fp16"):
        raise SpecError(f"--dtype {dtype!r}: give fp32, bf16 or fp16 (or leave it out to keep the trained dtypes)")
    try:
        ij = tuple(int(v) for v in pair.split(",")) if pair else None
    except ValueError:
        raise SpecError(f"--pair {pair!r} is not I,J (two replicate numbers)") from None
    from raysweep.run.export import export as export_
    from raysweep.run.export import export_merge

    run = _open(job, storage, set_, replicates)
    if not out.endswith(paths.SAFETENSORS) and run.job.model.name != "causal_lm":
        raise SpecError(f"--out {out!r}: this job's model ({run.job.model.name}) is exported as one safetensors file "
                        f"for load_state_dict: give a file name ending in .safetensors (a folder is written for "
                        f"language models, model.name = \"causal_lm\")")
    run.require()
    if merge is not None or lam is not None or run.job.sweep(sweep).kind in MERGE_KINDS:
        meta = export_merge(run, sweep, out, merge, lam, ij, dtype, shard_size)
        how = f"λ = {lam:g}" if lam is not None else f"the {merge} soup"
        typer.echo(f"wrote {how} of {sweep} (replicates {meta['members']})\n  {out}")
        return
    meta = export_(run, sweep, alpha, out, replicate, ij, step, dtype, shard_size)
    point = f"φ(t = {alpha:g}) of the {meta['curve']} curve" if "curve" in meta else f"θ({alpha:g}) of"
    typer.echo(f"wrote {point} {sweep}: {meta['a']} → {meta['b']}\n  {out}")
