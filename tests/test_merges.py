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


def _ties_by_hand(pretrained: dict, finals: list, density: float, trim: str = "tensor") -> dict:
    """TIES (Yadav et al. 2023), entry by entry, with either trim:
    - "tensor" (mergekit's): per tensor, each task vector's k = max(1, ⌊d·n⌋) largest |entries| (all at d = 1);
      an entry whose trimmed values sum to 0 is elected positive;
    - "global" (the paper's code): over all tensors at once, the entries with |τ| at or above the
      (N − ⌊d·N⌋)-th smallest |τ|; a zero sum takes the sign of the sum of every entry's elected sign.
    Then the mean of the kept entries with the elected sign."""
    import numpy as np

    names = [n for n, b in pretrained.items() if b.is_floating_point()]
    b = {n: pretrained[n].double().numpy().ravel() for n in names}
    taus = [{n: f[n].double().numpy().ravel() - b[n] for n in names} for f in finals]
    trimmed = []
    for tau in taus:
        kept = {n: np.zeros_like(v) for n, v in tau.items()}
        if trim == "tensor":
            for n, v in tau.items():
                k = v.size if density >= 1 else max(1, int(density * v.size))
                largest = np.argsort(-np.abs(v), kind="stable")[:k]
                kept[n][largest] = v[largest]
        else:
            every = np.sort(np.abs(np.concatenate([tau[n] for n in names])))
            kth = every.size - int(every.size * density)
            for n, v in tau.items():
                kept[n] = v.copy() if kth <= 0 else np.where(np.abs(v) >= every[kth - 1], v, 0.0)
        trimmed.append(kept)
    sums = {n: sum(t[n] for t in trimmed) for n in names}
    majority = np.sign(sum(np.sign(v).sum() for v in sums.values()))
    out = dict(pretrained)
    for n in names:
        merged = np.zeros_like(b[n])
        for j in range(b[n].size):
            column = [t[n][j] for t in trimmed]
            total = sum(column)
            if total == 0:
                sign = 1.0 if trim == "tensor" else majority
            else:
                sign = np.sign(total)
            agreeing = [v for v in column if v != 0 and np.sign(v) == sign]
            merged[j] = sum(agreeing) / len(agreeing) if agreeing else 0.0
        out[n] = torch.from_numpy((b[n] + merged).reshape(pretrained[n].shape)).to(pretrained[n].dtype)
    return out


def test_ties_by_hand_on_a_small_case_with_ties_and_zero_sums():
    """Three task vectors of two tensors chosen so the trims differ, thresholds tie and a sum is exactly zero."""
    from raysweep.evaluate.merges import ties_merge

    base = {"a": torch.zeros(4), "b": torch.zeros(3), "n": torch.tensor(7)}
    finals = [{"a": torch.tensor([1.0, -1.0, 0.5, 0.0]), "b": torch.tensor([2.0, 0.0, -0.5]), "n": torch.tensor(7)},
              {"a": torch.tensor([-1.0, 1.0, 0.25, 3.0]), "b": torch.tensor([0.5, 0.5, 0.5]), "n": torch.tensor(7)},
              {"a": torch.tensor([0.0, 0.0, -0.75, -1.0]), "b": torch.tensor([-2.0, 0.0, 0.0]), "n": torch.tensor(7)}]
    names = list(base)
    for trim in ("tensor", "global"):
        for density in (0.2, 0.5, 0.75, 1.0):
            want = _ties_by_hand(base, finals, density, trim)
            got = ties_merge([base[n] for n in names], [[f[n] for n in names] for f in finals], density, trim=trim)
            for n, g in zip(names, got):
                assert torch.equal(g, want[n]), (trim, density, n, g, want[n])
    one = ties_merge([base[n] for n in names], [[f[n] for n in names] for f in finals], 0.2, trim="tensor")
    assert int((one[0] != 0).sum()) >= 1  # ⌊0.2·4⌋ = 0: mergekit keeps at least one entry
    with pytest.raises(ValueError, match="trim"):
        ties_merge([base["a"]], [[finals[0]["a"]]], 0.5, trim="layer")


def test_dare_by_its_properties():
    """DARE (Yu et al. 2024) checked by what it must be, not by its formula: each merged entry is the mean over
    fine-tunes of either 0 or τ_k/(1 − p); about 1 − p of each task vector is kept; the masks of two fine-tunes
    are independent; every process draws the same; p = 0 is the uniform average."""
    import itertools
    import os
    import subprocess
    import sys

    import numpy as np

    from raysweep.evaluate.merges import dare_mask, dare_merge, mean_state

    g = torch.Generator().manual_seed(3)
    base = [torch.randn(200, 50, generator=g, dtype=torch.float64), torch.tensor(5)]
    states = [[base[0] + torch.randn(200, 50, generator=g, dtype=torch.float64), base[1]] for _ in range(3)]
    names, p, seed = ["w", "steps"], 0.7, 12345
    merged = dare_merge(base, states, p, seed, names)
    taus = [(s[0] - base[0]).numpy() for s in states]
    delta = (merged[0] - base[0]).numpy()
    options = np.stack([sum(t * m for t, m in zip(taus, combo)) / (1 - p) / 3
                        for combo in itertools.product((0, 1), repeat=3)])  # every keep/drop combination
    assert np.min(np.abs(options - delta[None]), axis=0).max() < 1e-12
    assert torch.equal(merged[1], base[1])  # integer buffers kept
    n = 200 * 50
    masks = [dare_mask(seed, "w", k, (200, 50), p).numpy() for k in range(3)]
    sd = np.sqrt(p * (1 - p) / n)
    for m in masks:
        assert abs(m.mean() - (1 - p)) < 5 * sd
    both = (masks[0] & masks[1]).mean()
    assert abs(both - (1 - p) ** 2) < 5 * np.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / n)  # independent
    assert not np.array_equal(masks[0], masks[1])
    code = ("import sys; from raysweep.evaluate.merges import dare_mask; "
            "sys.stdout.write(dare_mask(12345, 'w', 1, (200, 50), 0.7).numpy().tobytes().hex())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "7"}).stdout
    assert bytes.fromhex(other) == masks[1].tobytes()  # another process draws the same
    uniform = mean_state(states)
    assert torch.allclose(dare_merge(base, states, 0.0, seed, names)[0], uniform[0], rtol=0, atol=1e-12)


def test_ties_and_dare_of_a_run_equal_the_merges_by_hand(tmp_path):
    from raysweep.evaluate.merges import dare_merge, merge_seed

    pre = parse_job(BASE)
    train_replicate(pre, 0, Store(str(tmp_path / "pre")))
    m = read_manifests(Store(str(tmp_path / "pre")), pre, 0)
    pretrained = load_tensors(Store(str(tmp_path / "pre")), m[max(m)]["path"])
    torch.save(pretrained, tmp_path / "pre.pt")
    raw = {**BASE, "name": "tiesdare", "replicates": 3,
           "train": {**BASE["train"], "epochs": 2, "init_from": str(tmp_path / "pre.pt")},
           "sweeps": [{"name": "soup", "kind": "soup"},
                      {"name": "ties", "kind": "ties", "alpha": {"values": [0.2, 1.0]}},
                      {"name": "ties_global", "kind": "ties", "alpha": {"values": [0.2]}, "trim": "global"},
                      {"name": "dare", "kind": "dare", "alpha": {"values": [0.0, 0.5]}},
                      {"name": "dare_ties", "kind": "dare_ties", "alpha": {"values": [0.5]}},
                      {"name": "slerp", "kind": "slerp", "alpha": {"values": [0.0, 0.3]}}]}
    run = run_in_process(raw, tmp_path / "s")
    finals = []
    for k in range(3):
        mk = read_manifests(run.store, run.job, k)
        finals.append(load_tensors(run.store, mk[max(mk)]["path"]))
    merges = run.table("merges")
    rows = merges.filter(pl.col("split") == "test", pl.col("merge") != "single", pl.col("merge") != "greedy")
    got = {(r["sweep"], r["lam"]): r["loss"] for r in rows.iter_rows(named=True)}
    for sweep, d, trim in (("ties", 0.2, "tensor"), ("ties", 1.0, "tensor"), ("ties_global", 0.2, "global")):
        want = _plain(run.job, _ties_by_hand(pretrained, finals, d, trim), "test")[0]
        assert got[sweep, d] == pytest.approx(want, rel=1e-5), (sweep, d)
    assert got["ties", 0.2] != pytest.approx(got["ties", 1.0], rel=1e-4)  # trimming changes the merge
    assert got["ties", 0.2] != pytest.approx(got["ties_global", 0.2], rel=1e-6)  # and so does where it trims
    item = next(it for it in run.plan(["dare"]))
    names = list(pretrained)
    merged = dare_merge([pretrained[n] for n in names], [[f[n] for n in names] for f in finals], 0.5,
                        merge_seed(item), names)
    assert got["dare", 0.5] == pytest.approx(_plain(run.job, dict(zip(names, merged)), "test")[0], rel=1e-5)
    assert got["dare", 0.0] == pytest.approx(got["soup", None], rel=1e-6)  # no entry dropped: the uniform soup
    item = next(it for it in run.plan(["dare_ties"]))
    by_hand = _dare_ties_by_hand(pretrained, finals, 0.5, merge_seed(item))
    assert got["dare_ties", 0.5] == pytest.approx(_plain(run.job, by_hand, "test")[0], rel=1e-5)
    slerps = merges.filter(pl.col("sweep") == "slerp", pl.col("split") == "test")
    assert sorted(slerps["members"].unique()) == ["0,1", "0,2", "1,2"]  # an item per pair of finals
    single = {r["members"]: r["loss"] for r in merges.filter(pl.col("merge") == "single", pl.col("split") == "test")
              .iter_rows(named=True)}
    for r in slerps.iter_rows(named=True):
        i, j = map(int, r["members"].split(","))
        if r["lam"] == 0.0:
            assert r["loss"] == pytest.approx(single[str(i)], rel=1e-6)  # t = 0: the first fine-tune
        else:
            want = {n: _slerp_by_hand(finals[i][n], finals[j][n], 0.3) for n in finals[i]}
            assert r["loss"] == pytest.approx(_plain(run.job, want, "test")[0], rel=1e-5)


def test_ties_and_dare_grids_are_checked():
    for kind, alpha, says in (("ties", {"values": [0.0, 0.5]}, "density"),
                              ("dare", {"values": [0.5, 1.0]}, "drop rate"),
                              ("dare_ties", {"values": [1.0]}, "drop rate"),
                              ("slerp", {"values": [0.5, 1.2]}, "SLERP sweeps t over")):
        with pytest.raises(Exception, match=says):
            parse_job({**BASE, "sweeps": [{"name": "m", "kind": kind, "alpha": alpha}]})


def _slerp_by_hand(a, b, t):
    """SLERP of one tensor written out with the math module, entry by entry."""
    import math

    if not a.is_floating_point():
        return a
    x, y = a.double().reshape(-1).tolist(), b.double().reshape(-1).tolist()
    nx, ny = math.sqrt(sum(v * v for v in x)) or 1.0, math.sqrt(sum(v * v for v in y)) or 1.0
    cos = max(-1.0, min(1.0, sum(u / nx * v / ny for u, v in zip(x, y))))
    if abs(cos) > 0.9995:
        out = [(1 - t) * u + t * v for u, v in zip(x, y)]
    else:
        om = math.acos(cos)
        out = [(math.sin((1 - t) * om) * u + math.sin(t * om) * v) / math.sin(om) for u, v in zip(x, y)]
    return torch.tensor(out, dtype=torch.float64).reshape(a.shape).to(a.dtype)


def _dare_ties_by_hand(base, finals, p, seed):
    """DARE's kept entries (its own masks), rescaled; per entry the sign of their sum; the mean of those agreeing."""
    from raysweep.evaluate.merges import dare_mask

    out = {}
    for n, b in base.items():
        if not b.is_floating_point():
            out[n] = b
            continue
        kept = [torch.where(dare_mask(seed, n, k, b.shape, p), f[n].double() - b.double(), 0.0).reshape(-1) / (1 - p)
                for k, f in enumerate(finals)]
        merged = []
        for e in range(b.numel()):
            vals = [t[e].item() for t in kept]
            sign = 1.0 if sum(vals) >= 0 else -1.0
            agree = [v for v in vals if v != 0 and (v > 0) == (sign > 0)]
            merged.append(sum(agree) / len(agree) if agree else 0.0)
        out[n] = (b.double() + torch.tensor(merged, dtype=torch.float64).reshape(b.shape)).to(b.dtype)
    return out


def test_slerp_by_its_equations_and_closed_forms():
    """SLERP against the math module, and its closed forms: the ends are the fine-tunes; two orthogonal tensors of
    one norm at t = ½ give (a + b)/√2 (that norm, where the line's midpoint has 1/√2 of it); parallel tensors give
    the line; the angle is the whole tensor's, not its rows'."""
    import math

    from raysweep.evaluate.merges import slerp

    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(6, 9, generator=g), torch.randn(6, 9, generator=g)
    for t in (0.0, 0.25, 0.5, 0.9, 1.0):
        assert torch.allclose(slerp(a, b, t), _slerp_by_hand(a, b, t), rtol=0, atol=1e-6)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    e1, e2 = torch.tensor([[3.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    assert torch.allclose(slerp(e1, e2, 0.5), (e1 + e2) / math.sqrt(2), atol=1e-7)
    assert slerp(e1, e2, 0.5).norm().item() == pytest.approx(3.0)
    assert torch.allclose(slerp(a, 2 * a, 0.3), 1.3 * a, atol=1e-6)  # parallel: the line
    rows = torch.stack([slerp(x, y, 0.5) for x, y in zip(a, b)])  # an angle per row is another merge
    assert not torch.allclose(slerp(a, b, 0.5), rows, atol=1e-4)
    assert torch.equal(slerp(torch.tensor(3), torch.tensor(4), 0.5), torch.tensor(3))  # integer buffers: the first


def test_dare_ties_by_hand():
    """dare_ties against the loop written in this test, and at p = 0 equal to TIES at density 1."""
    from raysweep.evaluate.merges import dare_ties_merge, ties_merge

    g = torch.Generator().manual_seed(8)
    base = {"w": torch.randn(5, 4, generator=g), "n": torch.tensor(2)}
    finals = [{"w": base["w"] + torch.randn(5, 4, generator=g), "n": torch.tensor(2)} for _ in range(3)]
    names = list(base)
    args = [base[n] for n in names], [[f[n] for n in names] for f in finals]
    for p in (0.0, 0.4, 0.8):
        got = dare_ties_merge(*args, p, 99, names)
        want = _dare_ties_by_hand(base, finals, p, 99)
        assert torch.allclose(got[0], want["w"], rtol=0, atol=1e-6) and torch.equal(got[1], base["n"])
    assert torch.allclose(dare_ties_merge(*args, 0.0, 99, names)[0], ties_merge(*args, 1.0)[0], atol=1e-6)
