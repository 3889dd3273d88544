"""Mode-connecting curves (Garipov et al. 2018): the curve's closed forms, the bend's training against a
plain reference loop (and its resume), the points against a plain forward at φ(t) with BatchNorm
statistics recomputed, and the whole flow — `raysweep run` trains the bends as Tune trials, the
barriers table has a row per path, the figure draws line, aligned line and curves, and `export`
writes φ(t)."""
import copy
import os
import subprocess
import sys

import polars as pl
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY
from safetensors.torch import load_file

import raysweep
from raysweep.api import Run
from raysweep.data.batches import train_batches
from raysweep.data.registry import load_splits
from raysweep.errors import NotTrainedError
from raysweep.evaluate.bend import coefficients, curve_point
from raysweep.evaluate.sums import BN_RESET_SEED
from raysweep.io.checkpoints import load_tensors
from raysweep.io.manifests import read_manifests
from raysweep.io.store import Store
from raysweep.kinds.curve import bends_todo
from raysweep.models import build_model
from raysweep.spec import SpecError, parse_job
from raysweep.sweep.planner import missing
from raysweep.train.bend import bend_seed, train_bend
from raysweep.train.loop import train_replicate
from raysweep.work.tasks import Bend, task_of

CURVES = [{"name": "line", "kind": "final_to_final", "alpha": {"num": 6}},
          {"name": "bez", "kind": "curve", "alpha": {"num": 6}, "bn_batches": 3, "splits": ["train", "test"]},
          {"name": "poly", "kind": "curve", "curve": {"shape": "polychain", "epochs": 3, "lr": 0.05},
           "align": "weights", "alpha": {"num": 5}}]


def _job(**train):
    raw = {**copy.deepcopy(TINY), "name": "mc", "sweeps": copy.deepcopy(CURVES)}
    raw["train"].update(train)
    return parse_job(raw)


def _finals(store, job):
    out = []
    for k in (0, 1):
        m = read_manifests(store, job, k)
        out.append(load_tensors(store, m[max(m)]["path"], m[max(m)]["sha256"]))
    return out


def _bend(run, sweep_name):
    it = next(it for it in run.plan([sweep_name]) if it.sweep == sweep_name)
    return load_tensors(run.store, it.bend.path, it.bend.sha256)


def test_the_curves_are_their_closed_forms_and_pass_through_both_ends():
    g = torch.Generator().manual_seed(0)
    a, m, b = ({"w": torch.randn(5, 3, generator=g), "n": torch.tensor(7)} for _ in range(3))
    for t in (0.0, 0.2, 0.5, 0.7, 1.0):
        bez = curve_point("bezier", t, a, m, b)["w"]
        assert torch.allclose(bez, (1 - t) ** 2 * a["w"] + 2 * t * (1 - t) * m["w"] + t ** 2 * b["w"], atol=1e-6)
        poly = curve_point("polychain", t, a, m, b)["w"]
        ref = a["w"] + 2 * t * (m["w"] - a["w"]) if t <= 0.5 else m["w"] + (2 * t - 1) * (b["w"] - m["w"])
        assert torch.allclose(poly, ref, atol=1e-6)
        assert abs(sum(coefficients("bezier", t)) - 1) < 1e-12 and abs(sum(coefficients("polychain", t)) - 1) < 1e-12
    for shape in ("bezier", "polychain"):
        assert torch.equal(curve_point(shape, 0.0, a, m, b)["w"], a["w"])
        assert torch.equal(curve_point(shape, 1.0, a, m, b)["w"], b["w"])
    assert torch.equal(curve_point("polychain", 0.5, a, m, b)["w"], m["w"])
    assert curve_point("bezier", 0.3, a, m, b)["n"].item() == 7  # integer buffers: θ_a's


def _reference_bend(job, store, sweep_name):
    """Garipov et al.'s curve training written out plainly: bend at the midpoint, one t ~ U(0, 1) per batch,
    loss(φ(t)) + wd/2·‖φ(t)‖², SGD with momentum (buf ← μ·buf + g; θ ← θ − lr·buf), lr held for half the
    epochs, linearly to 1 % at 90 %."""
    sweep = job.sweep(sweep_name)
    data = load_splits(job.data, store)
    a, b = _finals(store, job)
    net = build_model(job.model, data.in_shape, data.num_classes)
    names = [n for n, _ in net.named_parameters()]
    net.load_state_dict({n: (a[n] + b[n]) / 2 if a[n].is_floating_point() else a[n] for n in a})
    theta = {n: ((a[n] + b[n]) / 2).clone().requires_grad_(True) for n in names}
    buf = {n: None for n in names}
    t_, epochs = job.train, sweep.curve.epochs or job.train.epochs
    lr0 = sweep.curve.lr or t_.lr
    seed = bend_seed(job, 0, 1)
    torch.manual_seed(seed)
    net.train()
    for epoch in range(epochs):
        x_ = epoch / epochs
        lr = lr0 * (1.0 if x_ <= 0.5 else (1 - (x_ - 0.5) / 0.4 * 0.99) if x_ <= 0.9 else 0.01)
        for x, y in train_batches(data, t_.batch_size, seed, epoch):
            t = float(torch.rand(()))
            w = {n: (1 - t) ** 2 * a[n] + 2 * t * (1 - t) * theta[n] + t * t * b[n] for n in names}
            loss = F.cross_entropy(torch.func.functional_call(net, w, (data.prepare(x),)), y)
            loss = loss + t_.weight_decay / 2 * sum(v.square().sum() for v in w.values())
            grads = torch.autograd.grad(loss, [theta[n] for n in names])
            with torch.no_grad():
                for n, g in zip(names, grads):
                    buf[n] = g.clone() if buf[n] is None else t_.momentum * buf[n] + g
                    theta[n] -= lr * buf[n]
    return {n: v.detach() for n, v in theta.items()}


class Stop(Exception):
    pass


def test_the_bend_trains_as_a_plain_reference_loop_and_resumes_to_the_same_bend(tmp_path):
    job = _job(weight_decay=5e-3)
    run = Run(job, Store(str(tmp_path / "a")))
    for k in run.replicates:
        train_replicate(job, k, run.store)
    train_bend(job, "bez", 0, 1, run.store)
    ours, ref = _bend(run, "bez"), _reference_bend(job, run.store, "bez")
    a, b = _finals(run.store, job)
    for n, v in ref.items():
        assert torch.allclose(ours[n], v, rtol=1e-4, atol=1e-6), n
    assert max((ours[n] - (a[n] + b[n]) / 2).abs().max().item() for n in ref) > 1e-3  # it moved
    # killed after its first epoch: resumes from there to bitwise the same bend
    other = Run(job, Store(str(tmp_path / "b")))
    for k in other.replicates:
        train_replicate(job, k, other.store)

    def stop(info):
        if info["step"] < info["total"]:
            raise Stop()
    with pytest.raises(Stop):
        train_bend(job, "bez", 0, 1, other.store, progress=stop)
    assert bends_todo(job, other.store, [0, 1]) == [Bend("bez", 0, 1), Bend("poly", 0, 1)]
    train_bend(job, "bez", 0, 1, other.store)
    resumed = _bend(other, "bez")
    assert all(torch.equal(resumed[n], ours[n]) for n in ours)


def _plain_point(job, data, state, t_split, bn_batches):
    """Loss and error of `state` on a split, BN statistics re-estimated on the first training batches of
    the evaluator's fixed order, by a plain forward."""
    net = build_model(job.model, data.in_shape, data.num_classes)
    net.load_state_dict(state)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    with torch.no_grad():
        for (x, _), _i in zip(train_batches(data, job.train.batch_size, BN_RESET_SEED, 0), range(bn_batches)):
            net(data.prepare(x))
        net.eval()
        x, y = data.split(t_split)
        out = net(data.prepare(x))
    return F.cross_entropy(out, y).item(), (out.argmax(1) != y).float().mean().item()


def test_curve_points_are_phi_t_evaluated_with_bn_recomputed(tmp_path):
    from raysweep.evaluate.align import align

    job = _job()
    run = Run(job, Store(str(tmp_path)))
    for k in run.replicates:
        train_replicate(job, k, run.store)
    with pytest.raises(NotTrainedError, match="bend.*not trained.*raysweep run"):
        run.plan(["bez"])
    for task in bends_todo(job, run.store, run.replicates):
        assert task_of(task.key) == task  # the key a trial gets names the same task
        train_bend(job, task.sweep, task.i, task.j, run.store)
    assert not run.sweep(progress=False, local=True).failures
    # a rerun finds everything done: no bend to train, no item to evaluate
    assert bends_todo(job, run.store, run.replicates) == [] and missing(run.plan(), run.store, job) == []
    points = run.points.collect()
    data = load_splits(job.data, run.store)
    a, b = _finals(run.store, job)
    model = build_model(job.model, data.in_shape, data.num_classes)
    for name, ends in (("bez", (a, b)), ("poly", (a, align(model, a, b)))):
        sweep, bend = job.sweep(name), _bend(run, name)
        rows = points.filter(pl.col("sweep") == name)
        assert rows.height == len(sweep.alpha.points()) * len(sweep.splits) and set(rows["bn"]) == {"reset"}
        for r in rows.iter_rows(named=True):
            state = curve_point(sweep.curve.shape, r["alpha"], ends[0], bend, ends[1])
            state.update({n: v for n, v in ends[0].items() if "running" in n})  # re-estimated anyway
            loss, error = _plain_point(job, data, state, r["split"], sweep.bn_batches)
            assert r["loss"] == pytest.approx(loss, rel=1e-4, abs=1e-5) and r["error"] == pytest.approx(error, abs=1e-6)
    line = points.filter(pl.col("sweep") == "line", pl.col("alpha") == 0.0)
    bez0 = points.filter(pl.col("sweep") == "bez", pl.col("alpha") == 0.0, pl.col("split") == "test")
    assert line["distance"][0] == pytest.approx(bez0["distance"][0])  # ‖θ_b − θ_a‖ as on the line
    barriers = run.aggregate()["barriers"]
    assert {"line", "bez", "poly"} <= set(barriers["sweep"])


def test_curve_settings_are_checked():
    def problems(**sweep):
        raw = {**copy.deepcopy(TINY), "sweeps": [{"name": "c", "kind": "curve", **sweep}]}
        with pytest.raises(SpecError) as exc:
            parse_job(raw)
        return str(exc.value)

    assert "shape" in problems(curve={"shape": "spline"}) and "polychain" in problems(curve={"shape": "spline"})
    assert "t in [0, 1]" in problems(alpha={"start": -0.5, "stop": 1.5, "num": 9})
    assert "REPAIR is for line sweeps" in problems(bn="repair")
    assert "epochs" in problems(curve={"epochs": -1})
    with pytest.raises(SpecError, match="curve is for curve sweeps"):
        parse_job({**copy.deepcopy(TINY), "sweeps": [{"name": "l", "kind": "final_to_final",
                                                      "curve": {"shape": "polychain"}}]})
    with pytest.raises(SpecError, match="curve sweep needs replicates >= 2"):
        parse_job({**copy.deepcopy(TINY), "replicates": 1, "sweeps": [{"name": "c", "kind": "curve"}]})


def test_raysweep_run_trains_bends_as_tune_trials_and_curves_beat_the_line(tmp_path):
    """digits: between two solutions the straight line has a large test-error barrier; the aligned line
    a smaller one, and the trained curves almost none (Garipov et al. 2018; Ainsworth et al. 2023)."""
    storage = str(tmp_path / "results")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    base = [sys.executable, "-m", "raysweep.cli"]
    sets = ["--replicates", "2", "--set", "train.epochs=15", "--storage", storage]
    for sweep in ("line", "aligned_line", "bezier", "polychain"):
        sets += ["--set", f"sweeps.{sweep}.alpha.num=21"]
    out = subprocess.run(base + ["run", "digits_curves", "--no-progress", *sets], capture_output=True, text=True,
                         env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "curves: training 2 bend(s)" in out.stdout + out.stderr
    run = raysweep.open("digits_curves", storage=storage, replicates=2,
                        overrides=[s for s in sets[3:] if s.startswith(("train", "sweeps"))])
    b = run.barriers.filter(pl.col("split") == "test", pl.col("metric") == "error").collect()
    barrier = dict(zip(b["sweep"], b["peak_over_ends_mean"]))
    assert set(barrier) == {"line", "aligned_line", "bezier", "polychain"}
    assert barrier["line"] > 0.05 and barrier["line"] > 3 * max(barrier["bezier"], barrier["polychain"])
    assert barrier["aligned_line"] < barrier["line"]
    figs = tmp_path / "figs"
    out = subprocess.run(base + ["figures", "digits_curves", "--out", str(figs), "--format", "png", *sets],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    caption = (figs / "MC-paths.txt").read_text()
    assert (figs / "MC-paths.png").stat().st_size > 10_000 and "Garipov" in caption
    assert "Mean test loss" in caption and "(test)" in caption  # the split the README quotes
    assert "BatchNorm" not in caption  # digits_curves' MLP has none
    mid = tmp_path / "mid.safetensors"
    out = subprocess.run(base + ["export", "digits_curves", "--sweep", "polychain", "--alpha", "0.5", "--out", str(mid),
                                 *sets], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    bend = _bend(run, "polychain")  # the polychain passes through its bend at t = ½
    exported = load_file(str(mid))
    assert all(torch.equal(exported[n], bend[n]) for n in bend if "weight" in n or "bias" in n)
    bad = subprocess.run(base + ["export", "digits_curves", "--sweep", "bezier", "--alpha", "1.5", "--out",
                                 str(tmp_path / "x.safetensors"), *sets], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "in [0, 1]" in bad.stderr and not (tmp_path / "x.safetensors").exists()


def test_a_bend_belongs_to_its_ends_retraining_a_replicate_drops_it(tmp_path):
    from raysweep.errors import CheckpointError
    from raysweep.io import paths

    job = _job()
    run = Run(job, Store(str(tmp_path)))
    for k in run.replicates:
        train_replicate(job, k, run.store)
    train_bend(job, "bez", 0, 1, run.store)
    it = next(it for it in run.plan(["bez"]) if it.sweep == "bez")
    record = run.store.read_json(paths.record(it.bend.path))
    assert (record["sha256_a"], record["sha256_b"]) == (it.a.sha256, it.b.sha256)
    run.store.write_json(paths.record(it.bend.path), {**record, "sha256_b": "0" * 64})  # trained towards others
    with pytest.raises(CheckpointError, match=r"bend .* not trained between the final weights stored now"):
        run.plan(["bez"])
    run.forget_replicate(1)  # `raysweep train --replicate 1 --force`: its bends go with it
    assert not run.store.exists(it.bend.path)
    train_replicate(job, 1, run.store)
    assert bends_todo(job, run.store, [0, 1]) == [Bend("bez", 0, 1), Bend("poly", 0, 1)]
