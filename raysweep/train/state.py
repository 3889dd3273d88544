"""Resume state: what a training (a replicate, an instability child, a curve's bend) writes at its
resume points and reads back when it starts again — weights, optimizer state (SGD's momentum buffers,
Adam's moments and step), every rank's RNG and the step — as safetensors with a sha256 record, so a
killed training ends with bitwise the same weights on CPU. (open_lth keeps this in
training/checkpointing.py; the loop that calls it is loop.py.)"""
from __future__ import annotations

import torch

from raysweep.errors import CheckpointError
from raysweep.io import paths
from raysweep.io.checkpoints import load_tensors, save_tensors
from raysweep.io.store import Store
from raysweep.train.parallel import SINGLE, Rank, unwrap


def rng_state() -> dict[str, torch.Tensor]:
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def save_state(store: Store, path: str, record: str, model, opt, step: int, rngs: list | None = None) -> None:
    """The resume state at `path` (weights, momentum buffers, RNG, step) and its sha256 at `record`.
    `rngs`: every rank's RNG state (rank r's as rng.<r>.cpu), else this process's."""
    tensors = {f"model.{n}": t for n, t in unwrap(model).state_dict().items()}
    for i, p in enumerate(opt.param_groups[0]["params"]):
        for key, value in opt.state.get(p, {}).items():  # SGD's momentum buffer; Adam's moments and step
            if isinstance(value, torch.Tensor):
                tensors[f"momentum.{i}" if key == "momentum_buffer" else f"opt.{i}.{key}"] = value
    for r, states in enumerate(rngs or [rng_state()]):
        tensors.update({(f"rng.{kind}" if r == 0 else f"rng.{r}.{kind}"): t for kind, t in states.items()})
    tensors["step"] = torch.tensor([step], dtype=torch.int64)
    store.write_json(record, {"sha256": save_tensors(store, path, tensors), "step": step})


def save_replicate_state(store: Store, run: str, k: int, model, opt, step: int, rank: Rank = SINGLE) -> None:
    """Rank 0 writes the resume state with every rank's RNG (a collective: all ranks call it)."""
    rngs = rank.gather(rng_state())
    if rank.lead:
        save_state(store, paths.train_state(run, k), paths.train_state_record(run, k), model, opt, step, rngs)
    rank.barrier()


def verified_state(store: Store, run: str, k: int) -> dict | None:
    """The resume state of replicate k if it matches its recorded sha256; None (with a warning) if
    it does not, or has no record: resuming from unverified weights and momentum would silently
    change the run."""
    import logging

    path = paths.train_state(run, k)
    try:
        record = store.read_json(paths.train_state_record(run, k))
        return load_tensors(store, path, record["sha256"])
    except (CheckpointError, FileNotFoundError, ValueError, KeyError, TypeError) as exc:
        logging.getLogger("raysweep").warning(
            "replicate %d: its resume state %s cannot be verified (%s); training it again from step 0 (the "
            "same seed gives the same run)",
            k,
            store.url(path),
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
        return None


def restore_state(model, opt, t: dict, rank: int = 0) -> int:
    """Weights, momentum buffers and (this rank's) RNG from a resume state (`save_state`); returns its step."""
    unwrap(model).load_state_dict({n[6:]: v for n, v in t.items() if n.startswith("model.")})
    for i, p in enumerate(opt.param_groups[0]["params"]):
        if f"momentum.{i}" in t:
            opt.state[p]["momentum_buffer"] = t[f"momentum.{i}"].to(p.device)
        for key in [n.split(".", 2)[2] for n in t if n.startswith(f"opt.{i}.")]:
            value = t[f"opt.{i}.{key}"]
            opt.state[p][key] = value if key == "step" else value.to(p.device)  # Adam keeps its step on the CPU
    prefix = "rng." if rank == 0 else f"rng.{rank}."
    torch.set_rng_state(t[f"{prefix}cpu"] if f"{prefix}cpu" in t else t["rng.cpu"])
    if f"{prefix}cuda" in t and torch.cuda.is_available():
        torch.cuda.set_rng_state(t[f"{prefix}cuda"])
    return int(t["step"][0])
