"""Merges as sweeps: uniform and greedy soups of fine-tuned replicates and task arithmetic over λ, against
plain evaluations of the merged weights."""
import copy

import polars as pl
import pytest
import torch
from conftest import TINY, run_in_process, write_job_toml
from safetensors.torch import load_file
from typer.testing import CliRunner

from raysweep.cli import app
from raysweep.data.registry import load_splits
from raysweep.io.checkpoints import load_tensors
from raysweep.io.manifests import read_manifests
from raysweep.io.store import Store
from raysweep.models import build_model
from raysweep.spec import parse_job
from raysweep.train.loop import train_replicate

BASE = {**copy.deepcopy(TINY), "name": "premerge", "replicates": 1, "sweeps": [],
        "model": {"name": "mlp", "hidden": [16]}, "train": {"epochs": 1, "batch_size": 100, "lr": 0.1,
                                                             "checkpoints": "every_epoch"}}


def _plain(job, state, split):
    data = load_splits(job.data)
    model = build_model(job.model, data.in_shape, data.num_classes)
    model.load_state_dict(state)
    model.eval()
    x, y = data.split(split)
    with torch.no_grad():
        out = model(data.prepare(x))
    return torch.nn.functional.cross_entropy(out, y).item(), (out.argmax(1) != y).double().mean().item()


def test_soups_and_task_arithmetic_equal_plain_evaluations_of_the_merged_weights(tmp_path):
    pre = parse_job(BASE)
    train_replicate(pre, 0, Store(str(tmp_path / "pre")))
    m = read_manifests(Store(str(tmp_path / "pre")), pre, 0)
    pretrained = load_tensors(Store(str(tmp_path / "pre")), m[max(m)]["path"])
    torch.save(pretrained, tmp_path / "pre.pt")
    raw = {**BASE, "name": "merge", "replicates": 3,
           "train": {**BASE["train"], "epochs": 2, "init_from": str(tmp_path / "pre.pt")},
           "sweeps": [{"name": "soup", "kind": "soup", "splits": ["train", "test"]},
                      {"name": "ta", "kind": "task_arithmetic", "alpha": {"start": 0.0, "stop": 1.0, "num": 3}}]}
    run = run_in_process(raw, tmp_path / "s")
    finals = []
    for k in range(3):
        mk = read_manifests(run.store, run.job, k)
        finals.append(load_tensors(run.store, mk[max(mk)]["path"]))
    merges = run.table("merges")

    def row(merge, split, lam=None):
        r = merges.filter(pl.col("merge") == merge, pl.col("split") == split)
        return (r.filter(pl.col("lam") == lam) if lam is not None else r).row(0, named=True)

    mean = lambda states: {n: sum(s[n] for s in states) / len(states) for n in states[0]}  # noqa: E731
    loss, err = _plain(run.job, mean(finals), "test")
    assert row("uniform", "test")["loss"] == pytest.approx(loss, rel=1e-5) and row("uniform", "test")["error"] == err
    # greedy, by hand: finals by train error, each kept if the soup's train error does not rise
    errs = [_plain(run.job, f, "train")[1] for f in finals]
    order = sorted(range(3), key=lambda i: errs[i])
    chosen, best = [order[0]], errs[order[0]]
    for i in order[1:]:
        trial = _plain(run.job, mean([finals[j] for j in chosen + [i]]), "train")[1]
        if trial <= best:
            chosen, best = chosen + [i], trial
    assert row("greedy", "test")["members"] == ",".join(str(k) for k in sorted(chosen))
    # task arithmetic: λ = 0 is the pretrained model, λ = 0.5 adds half of every task vector
    assert row("task_arithmetic", "test", 0.0)["loss"] == pytest.approx(
        _plain(run.job, pretrained, "test")[0], rel=1e-5
    )
    half = {n: pretrained[n] + 0.5 * sum(f[n] - pretrained[n] for f in finals) for n in pretrained}
    assert row("task_arithmetic", "test", 0.5)["loss"] == pytest.approx(_plain(run.job, half, "test")[0], rel=1e-5)
    assert set(merges.filter(pl.col("merge") == "single")["members"]) == {"0", "1", "2"}

    # each merge exported for load_state_dict gives the table's loss (CLI: raysweep export ... --merge/--lam)
    job_file = write_job_toml(tmp_path / "merge.toml", raw)
    for args, want in ((["--sweep", "soup", "--merge", "uniform"], row("uniform", "test")),
                       (["--sweep", "soup", "--merge", "greedy"], row("greedy", "test")),
                       (["--sweep", "ta", "--lam", "0.5"], row("task_arithmetic", "test", 0.5))):
        out = tmp_path / "merged.safetensors"
        r = CliRunner().invoke(app, ["export", job_file, *args, "--out", str(out), "--storage", str(tmp_path / "s")])
        assert r.exit_code == 0, r.output
        assert _plain(run.job, load_file(str(out)), "test")[0] == pytest.approx(want["loss"], rel=1e-5), args
        assert load_file(str(out)).keys() == finals[0].keys() and not (tmp_path / "merged.safetensors.partial").exists()
    for args, says in ((["--sweep", "soup", "--lam", "0.5"], "--merge uniform|greedy"),
                       (["--sweep", "ta", "--merge", "uniform"], "--lam L"),
                       (["--sweep", "soup", "--alpha", "0.5"], "--merge uniform|greedy")):
        r = CliRunner().invoke(app, ["export", job_file, *args, "--out", str(tmp_path / "x.safetensors"),
                                     "--storage", str(tmp_path / "s")])
        assert r.exit_code == 2 and says in " ".join(r.output.split()), r.output


def _ties_by_hand(pretrained: dict, finals: list, density: float) -> dict:
    """TIES (Yadav et al. 2023), entry by entry: keep each task vector's ⌊d·n⌉ largest |entries| of a tensor,
    the sign with the larger total, the mean of the kept entries with that sign."""
    import numpy as np

    out = {}
    for name, base in pretrained.items():
        if not base.is_floating_point():
            out[name] = base
            continue
        b = base.double().numpy().ravel()
        taus = [f[name].double().numpy().ravel() - b for f in finals]
        keep = max(1, round(density * b.size))
        trimmed = []
        for tau in taus:
            kept = np.zeros_like(tau)
            largest = np.argsort(-np.abs(tau), kind="stable")[:keep]
            kept[largest] = tau[largest]
            trimmed.append(kept)
        merged = np.zeros_like(b)
        for j in range(b.size):
            column = [t[j] for t in trimmed]
            sign = np.sign(sum(column))
            agreeing = [v for v in column if v != 0 and np.sign(v) == sign]
            merged[j] = sum(agreeing) / len(agreeing) if agreeing else 0.0
        out[name] = torch.from_numpy((b + merged).reshape(base.shape)).to(base.dtype)
    return out


def _dare_by_hand(pretrained: dict, finals: list, p: float, seed: int) -> dict:
    """DARE (Yu et al. 2024): each entry of each task vector kept with probability 1 − p and scaled by 1/(1 − p);
    the mean of them added to θ_pre. The uniform draws as raysweep seeds them: per (sweep, tensor name, replicate)."""
    import zlib

    out = {}
    for name, base in pretrained.items():
        if not base.is_floating_point():
            out[name] = base
            continue
        vectors = []
        for k, f in enumerate(finals):
            g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode()) * 31 + k) % 2**62)
            u = torch.rand(base.shape, generator=g)
            vectors.append([(f[name].double().flatten()[j] - base.double().flatten()[j]).item() / (1 - p)
                            if u.flatten()[j] >= p else 0.0 for j in range(base.numel())])
        mean = torch.tensor(vectors, dtype=torch.float64).mean(0).reshape(base.shape)
        out[name] = (base.double() + mean).to(base.dtype)
    return out


def test_ties_and_dare_equal_the_papers_equations_by_hand(tmp_path):
    from raysweep.spec import sweep_hash

    pre = parse_job(BASE)
    train_replicate(pre, 0, Store(str(tmp_path / "pre")))
    m = read_manifests(Store(str(tmp_path / "pre")), pre, 0)
    pretrained = load_tensors(Store(str(tmp_path / "pre")), m[max(m)]["path"])
    torch.save(pretrained, tmp_path / "pre.pt")
    raw = {**BASE, "name": "tiesdare", "replicates": 3,
           "train": {**BASE["train"], "epochs": 2, "init_from": str(tmp_path / "pre.pt")},
           "sweeps": [{"name": "soup", "kind": "soup"},
                      {"name": "ties", "kind": "ties", "alpha": {"values": [0.2, 1.0]}},
                      {"name": "dare", "kind": "dare", "alpha": {"values": [0.0, 0.5]}}]}
    run = run_in_process(raw, tmp_path / "s")
    finals = []
    for k in range(3):
        mk = read_manifests(run.store, run.job, k)
        finals.append(load_tensors(run.store, mk[max(mk)]["path"]))
    merges = run.table("merges")
    got = {(r["merge"], r["lam"]): r["loss"] for r in merges.filter(pl.col("split") == "test").iter_rows(named=True)}
    for d in (0.2, 1.0):
        assert got["ties", d] == pytest.approx(_plain(run.job, _ties_by_hand(pretrained, finals, d), "test")[0],
                                               rel=1e-5), d
    seed = int(sweep_hash(run.job.sweep("dare"))[:8], 16)
    for p in (0.0, 0.5):
        assert got["dare", p] == pytest.approx(_plain(run.job, _dare_by_hand(pretrained, finals, p, seed), "test")[0],
                                               rel=1e-5), p
    assert got["dare", 0.0] == pytest.approx(got["uniform", None], rel=1e-6)  # no entry dropped: the uniform soup
    assert got["ties", 0.2] != pytest.approx(got["ties", 1.0], rel=1e-4)  # trimming changes the merge


def test_ties_and_dare_grids_are_checked():
    for kind, alpha, says in (("ties", {"values": [0.0, 0.5]}, "density"),
                              ("dare", {"values": [0.5, 1.0]}, "drop rate")):
        with pytest.raises(Exception, match=says):
            parse_job({**BASE, "sweeps": [{"name": "m", "kind": kind, "alpha": alpha}]})
