"""The user-path matrix: every sweep kind and every sweep option the docs name, run as a user types it —
`raysweep run FILE.toml` in a subprocess, on a local Ray with 2 sweep actors, where each work item reaches
its actor as JSON. Two small jobs (tests/matrix/): lines, curves, trajectories and planes of a BatchNorm MLP;
merges of fine-tunes of one pretrained model. Each table must have rows, no NaN where a number is due, and
one value equal to a plain reference computed here (state dicts, a forward pass, numpy).

What keeps the matrix whole: every field of a sweep (nested ones too, read from the dataclasses) is set away
from its default in some matrix sweep, every choice (kind, bn, align, hold, curve shape) is taken, and every
sweep option the docs write out (`align = "activations"`, `top_k = 5`, ...) is in a matrix job: a documented
option that does not run fails here."""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tomllib
import torch

from raysweep.spec import SWEEP_KINDS, SweepSpec, codec

ROOT = Path(__file__).parent.parent
MATRIX = Path(__file__).parent / "matrix"
JOBS = {"lines": MATRIX / "lines.toml", "merges": MATRIX / "merges.toml"}
DOCS = [ROOT / "docs" / "concepts.md", ROOT / "docs" / "jobs.md"]
CHOICES = {"kind": SWEEP_KINDS, "bn": ("interpolate", "reset", "repair"), "align": ("none", "weights", "activations"),
           "hold": ("a", "b"), "curve.shape": ("bezier", "polychain"), "trim": ("tensor", "global")}
# filled in by raysweep (train_examples from eval.train_examples; code: a plugin kind's source digest; tasks: the
# content of the multiple-choice tasks it names, tests/test_tasks.py); a name is
# no option; options are a plugin kind's own (the built-ins refuse them: tests/test_user_kind.py runs one)
DERIVED = {"train_examples", "name", "code", "options", "tasks"}
TABLE_VALUES = {("kind", "axes")}  # the docs' `kind = "axes"` is a row of the surface table, not a sweep's kind


def matrix_sweeps() -> list[dict]:
    return [s for path in JOBS.values() for s in tomllib.loads(path.read_text())["sweeps"]]


def _leaves(raw: dict, prefix: str = ""):
    for k, v in raw.items():
        if isinstance(v, dict) and k != "alpha" and k != "beta":
            yield from _leaves(v, f"{prefix}{k}.")
        yield f"{prefix}{k}", v


def _norm(value):
    return tuple(value) if isinstance(value, list) else value


def _field_paths(cls, prefix: str = ""):
    """Every option of a sweep: a field, or a field of a nested spec (α grids are values, not options)."""
    for name, hint in codec.hints(cls).items():
        if dataclasses.is_dataclass(hint) and name not in ("alpha", "beta"):
            yield from _field_paths(hint, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", hint


def test_the_matrix_sets_every_sweep_option_and_takes_every_choice():
    defaults = dict(_leaves(codec.encode(SweepSpec())))
    set_somewhere = {}
    for sweep in matrix_sweeps():
        for path, value in _leaves(sweep):
            set_somewhere.setdefault(path, []).append(value)
    for path, _ in _field_paths(SweepSpec):
        if path in DERIVED:
            continue
        values = set_somewhere.get(path, [])
        assert any(_norm(v) != _norm(defaults.get(path)) for v in values), (
            f"no matrix sweep sets {path} away from its default: add it to a job in tests/matrix/")
    for path, choices in CHOICES.items():
        taken = set(set_somewhere.get(path, [])) | ({defaults[path]} if path in defaults else set())
        if path == "curve.shape":
            taken = set(set_somewhere.get(path, []))
        assert set(choices) <= taken, f"the matrix never takes {path} = {sorted(set(choices) - taken)}"


def documented_sweep_options() -> list[tuple[str, str, object]]:
    """(doc, option path, value) for every `key = value` the docs write out whose key is a sweep option."""
    options = {path.rsplit(".", 1)[-1]: path for path, _ in _field_paths(SweepSpec)} | {
        "alpha": "alpha", "beta": "beta", "sharpness": "sharpness", "curve": "curve", "params": "params"}
    found = []
    for doc in DOCS:
        for snippet in re.findall(r"`([a-z_]+ = [^`]+)`", doc.read_text()):
            key, _, value = snippet.partition(" = ")
            if key not in options or any(f'"{v}"' in value for k, v in TABLE_VALUES if k == key):
                continue
            alternatives = re.findall(r'"([^"]+)"', value) if "|" in value and "{" not in value else None
            if alternatives:
                found += [(doc.name, options[key], a) for a in alternatives]
                continue
            try:
                parsed = tomllib.loads(f"v = {value.replace(chr(92) + '|', '|')}")["v"]
            except tomllib.TOMLDecodeError:
                found += [(doc.name, options[key], None)]  # a sketch (`alpha = {start, stop, num}`): the key
                continue
            found += [(doc.name, options[key], parsed)]
    return found


def test_every_sweep_option_the_docs_write_out_is_in_the_matrix():
    documented = documented_sweep_options()
    assert len(documented) >= 20, documented  # the docs' snippets were found
    set_somewhere: dict[str, list] = {}
    for sweep in matrix_sweeps():
        for path, value in _leaves(sweep):
            set_somewhere.setdefault(path, []).append(value)
    for doc, path, value in documented:
        assert path in set_somewhere, f"{doc} documents {path} but no matrix job sets it"
        if isinstance(value, (str, bool)):
            assert value in set_somewhere[path], f"{doc} documents {path} = {value!r}; no matrix job runs it"
        if isinstance(value, dict):
            for key in value:
                assert f"{path}.{key}" in set_somewhere, f"{doc} documents {path}.{key}; no matrix job sets it"


def _run_cli(job: Path, cwd: Path, storage: Path) -> subprocess.CompletedProcess:
    cli = [sys.executable, "-m", "raysweep", "run", str(job), "--storage", str(storage), "--no-progress",
           "--set", "resources.eval_actors=2"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(cli, capture_output=True, text=True, env=env, timeout=900, cwd=cwd)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both matrix jobs run through the CLI; returns {name: (raysweep.Run, stdout)}."""
    import raysweep

    out = {}
    for name, path in JOBS.items():
        here = tmp_path_factory.mktemp(name)
        shutil.copy(path, here / path.name)
        shutil.copy(ROOT / "examples" / "pretrained.safetensors", here / "pretrained.safetensors")
        done = _run_cli(here / path.name, here, here / "results")
        assert done.returncode == 0, f"{path.name}: exit {done.returncode}\n{done.stderr[-4000:]}"
        assert "error" not in done.stdout.lower(), done.stdout[-3000:]
        out[name] = (raysweep.open(str(here / path.name), storage=str(here / "results")), done.stdout, here)
    return out


# --- plain references: state dicts, a forward pass, numpy ------------------------------------------------------------

def _states(run) -> dict[tuple[int, int], dict]:
    """Every checkpoint of the run, read as plain safetensors bytes and checked against its sha256."""
    import hashlib

    from safetensors.torch import load

    out = {}
    for r in run.checkpoints.collect().iter_rows(named=True):
        data = run.store.read_bytes(r["path"])
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
        out[(r["replicate"], r["step"])] = load(data)
    return out


def _model(run):
    from raysweep.models import build_model

    data = _data(run)
    return build_model(run.job.model, data.in_shape, data.num_classes).eval()


def _data(run):
    from raysweep.data.registry import load_splits

    return load_splits(run.job.data)


def _loss_error(model, state, x, y) -> tuple[float, float]:
    model.load_state_dict(state)
    with torch.no_grad():
        logits = model(x.float())
    return (torch.nn.functional.cross_entropy(logits.double(), y).item(),
            (logits.argmax(1) != y).double().mean().item())


def _split(run, name):
    data = _data(run)
    x, y = data.split(name, run.job.eval.train_examples)
    return data, x, y


def _prepared(data, x):
    """The inputs as the evaluator feeds them (uint8 images scaled and standardised by the dataset's constants)."""
    x = x.float()
    if x.dtype == torch.float32 and data.mean is not None and data.test_x.dtype == torch.uint8:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        x = (x / 255 - torch.tensor(data.mean).view(shape)) / torch.tensor(data.std).view(shape)
    return x


def _lerp(a: dict, b: dict, alpha: float, only=None) -> dict:
    out = {}
    for k in a:
        if only is not None and not only(k):
            out[k] = a[k].clone()
        elif a[k].is_floating_point():
            out[k] = (1 - alpha) * a[k].double() + alpha * b[k].double()
            out[k] = out[k].to(a[k].dtype)
        else:
            out[k] = b[k].clone()
    return out


def _final(run, states, k):
    return states[(k, max(s for (r, s) in states if r == k))]


def _test_loss(run, state) -> float:
    data, x, y = _split(run, "test")
    return _loss_error(_model(run), state, _prepared(data, x), y)[0]


# --- the lines job ---------------------------------------------------------------------------------------------------

def test_lines_every_table_has_rows_and_no_nan(runs):
    run, stdout, _ = runs["lines"]
    curves, points = run.curves.collect(), run.points.collect()
    line_sweeps = [s["name"] for s in tomllib.loads(JOBS["lines"].read_text())["sweeps"]
                   if s["kind"] not in ("projection", "function_map", "random_plane", "line_and_random",
                                        "path_surface", "pca_plane")]
    assert sorted(set(curves["sweep"])) == sorted(line_sweeps)
    for col in ("loss_mean", "error_mean"):
        assert not curves[col].is_nan().any() and curves[col].null_count() == 0, curves.filter(pl.col(col).is_nan())
    assert not points["loss"].is_nan().any()
    assert points.filter(pl.col("sweep") == "i1")["top5_error"].null_count() == 0  # the extra metric
    assert set(points.filter(pl.col("sweep") == "i1")["split"]) == {"test", "train_subset"}
    refined = points.filter(pl.col("sweep") == "i1", pl.col("split") == "test", pl.col("replicate_a") == 0)
    assert refined.height > 6  # adaptive α added points to the 6 of the grid
    assert set(points.filter(pl.col("sweep") == "i7")["alpha"]) == {-0.5, 0.0, 0.5, 1.0, 1.5}
    lmc = points.filter(pl.col("sweep") == "lmc")
    assert lmc.height == 2 * 3 and set(lmc["step_a"]) == {4}  # children of both replicates, spawned at step 4
    for shape in ("bezier", "polychain"):
        assert points.filter(pl.col("sweep") == shape).height == 3
    barriers = run.barriers.collect()
    assert not barriers["barrier_linear_mean"].is_nan().any()
    surface = run.table("surface")
    assert set(surface["sweep"]) == {"t3", "t4", "t5", "pca"} and not surface["loss"].is_nan().any()
    assert run.table("trajectory").height == 2 * 4 and run.table("function_map").height == 2 * 4
    sharp = run.table("sharpness")
    assert sharp.height == 4 and sharp["at_peak"].sum() == 2  # α = 1 and each curve's peak, both replicates
    for col in ("lambda_max", "trace"):
        assert not sharp[col].is_nan().any()
    for col in ("eigenvalues", "density_nodes", "density_weights", "along_loss", "plane_loss"):
        assert all(len(v) > 0 for v in sharp[col])


def test_lines_a_point_equals_a_plain_interpolation(runs):
    run, _, _ = runs["lines"]
    states = _states(run)
    points = run.points.collect().filter(pl.col("sweep") == "i1", pl.col("split") == "test", pl.col("alpha") == 0.4)
    data, x, y = _split(run, "test")
    model = _model(run)
    assert points.height == 2  # one curve per replicate
    for row in points.iter_rows(named=True):
        k = row["replicate_a"]
        loss, error = _loss_error(model, _lerp(states[(k, 0)], _final(run, states, k), 0.4), _prepared(data, x), y)
        assert row["loss"] == pytest.approx(loss, rel=1e-5, abs=1e-6)
        assert row["error"] == pytest.approx(error, abs=1e-9)
    # the train subset is the dataset's fixed choice of eval.train_examples training examples
    sub = run.points.collect().filter(pl.col("sweep") == "i1", pl.col("split") == "train_subset",
                                      pl.col("alpha") == 0.0, pl.col("replicate_a") == 0)
    data, xs, ys = _split(run, "train_subset")
    assert len(ys) == run.job.eval.train_examples
    assert sub["loss"][0] == pytest.approx(_loss_error(model, states[(0, 0)], _prepared(data, xs), ys)[0], rel=1e-5)


def test_lines_parameter_subset_and_repair_ends(runs):
    run, _, _ = runs["lines"]
    states = _states(run)
    data, x, y = _split(run, "test")
    model = _model(run)
    row = run.points.collect().filter(pl.col("sweep") == "head_only", pl.col("alpha") == 0.5,
                                      pl.col("replicate_a") == 1).row(0, named=True)
    moved = _lerp(states[(1, 0)], _final(run, states, 1), 0.5, only=lambda name: not name.startswith(("1.", "2.")))
    assert row["loss"] == pytest.approx(_loss_error(model, moved, _prepared(data, x), y)[0], rel=1e-5)
    # REPAIR leaves the ends as they are; activation matching permutes θ_b without changing its function
    ends = run.points.collect().filter(pl.col("sweep") == "i5_activations").sort("alpha")
    assert ends["loss"][0] == pytest.approx(_loss_error(model, _final(run, states, 0), _prepared(data, x), y)[0],
                                            rel=1e-4)
    assert ends["loss"][-1] == pytest.approx(_loss_error(model, _final(run, states, 1), _prepared(data, x), y)[0],
                                             rel=1e-4)


def test_lines_barrier_equals_its_definition_over_the_points(runs):
    run, _, _ = runs["lines"]
    points = run.points.collect().filter(pl.col("sweep") == "i2", pl.col("split") == "test")
    per_curve = []
    for (_, _step), curve in points.group_by("replicate_a", "step_a"):
        if _step != 0:
            continue
        c = curve.sort("alpha")
        a, loss = c["alpha"].to_numpy(), c["loss"].to_numpy()
        per_curve.append(float(np.max(loss - ((1 - a) * loss[0] + a * loss[-1]))))
    assert len(per_curve) == 2
    row = run.barriers.collect().filter(pl.col("sweep") == "i2", pl.col("metric") == "loss", pl.col("step") == 0)
    assert row["barrier_linear_mean"][0] == pytest.approx(np.mean(per_curve), abs=1e-9)


def test_lines_sharpness_equals_the_full_hessian(runs):
    run, _, _ = runs["lines"]
    states = _states(run)
    row = run.table("sharpness").filter(pl.col("alpha") == 1.0, pl.col("replicate_a") == 0).row(0, named=True)
    data, x, y = _split(run, "test")
    x, y = _prepared(data, x)[:row["examples"]], y[:row["examples"]]
    model = _model(run)
    model.load_state_dict(_final(run, states, 0))
    params = {n: p.detach().double() for n, p in model.named_parameters()}
    buffers = {n: b.double() if b.is_floating_point() else b for n, b in model.named_buffers()}
    model.double()
    names, shapes = list(params), [p.shape for p in params.values()]
    flat0 = torch.cat([p.reshape(-1) for p in params.values()])

    def loss_of(flat):
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            parts[n] = flat[i:i + s.numel()].reshape(s)
            i += s.numel()
        out = torch.func.functional_call(model, {**parts, **buffers}, (x.double(),))
        return torch.nn.functional.cross_entropy(out, y)
    hessian = torch.func.hessian(loss_of)(flat0)
    eig = torch.linalg.eigvalsh(hessian)
    assert row["loss"] == pytest.approx(loss_of(flat0).item(), rel=1e-4)
    assert row["lambda_max"] == pytest.approx(eig[-1].item(), rel=2e-3)
    assert row["eigenvalues"][1] == pytest.approx(eig[-2].item(), rel=2e-2)
    assert row["trace"] == pytest.approx(torch.trace(hessian).item(), rel=0.5)  # Hutchinson, 3 probes: its order


def test_lines_planes_and_trajectory_match_closed_forms(runs):
    run, _, _ = runs["lines"]
    states = _states(run)
    centre = run.table("surface").filter(pl.col("sweep") == "t4", pl.col("kind") == "grid", pl.col("a") == 0.0,
                                         pl.col("b") == 0.0, pl.col("replicate") == 1)
    assert centre["loss"][0] == pytest.approx(_test_loss(run, _final(run, states, 1)), rel=1e-5)  # θ_T itself
    traj = run.table("trajectory").filter(pl.col("replicate") == 0).sort("step")
    names = [n for n, _ in _model(run).named_parameters()]
    flat = {s: torch.cat([t[n].double().reshape(-1) for n in names]).numpy()
            for (r, s), t in states.items() if r == 0}
    steps = sorted(flat)
    d = flat[steps[-1]] - flat[0]
    mid = flat[steps[1]] - flat[0]
    assert traj["alpha"][-1] == pytest.approx(np.linalg.norm(d), rel=1e-9)
    assert traj["alpha"][1] == pytest.approx(mid @ d / np.linalg.norm(d), rel=1e-9, abs=1e-12)


# --- the merges job --------------------------------------------------------------------------------------------------

def test_merges_every_kind_and_plain_references(runs):
    run, stdout, _ = runs["merges"]
    merges = run.table("merges")
    assert set(merges["sweep"]) == {"soup", "ta", "ties", "ties_global", "dare", "dare_ties", "slerp"}
    assert not merges["loss"].is_nan().any() and not merges["error"].is_nan().any()
    states = _states(run)
    finals = [_final(run, states, k) for k in (0, 1)]
    uniform = {k: (finals[0][k].double() + finals[1][k].double()).div(2).to(finals[0][k].dtype)
               if finals[0][k].is_floating_point() else finals[1][k] for k in finals[0]}
    want = _test_loss(run, uniform)
    soup = merges.filter(pl.col("sweep") == "soup", pl.col("merge") == "uniform", pl.col("split") == "test")
    assert soup["loss"][0] == pytest.approx(want, rel=1e-5)
    dare0 = merges.filter(pl.col("sweep") == "dare", pl.col("lam") == 0.0, pl.col("split") == "test")
    assert dare0["loss"][0] == pytest.approx(want, rel=1e-5)  # p = 0 drops nothing: the uniform average
    for t, k in ((0.0, 0), (1.0, 1)):  # SLERP's ends are the fine-tunes themselves
        end = merges.filter(pl.col("sweep") == "slerp", pl.col("lam") == t, pl.col("split") == "test")
        assert end["members"][0] == "0,1" and end["loss"][0] == pytest.approx(_test_loss(run, finals[k]), rel=1e-5)
    ta0 = merges.filter(pl.col("sweep") == "ta", pl.col("lam") == 0.0, pl.col("split") == "test")
    assert ta0["loss"][0] == pytest.approx(_test_loss(run, states[(0, 0)]), rel=1e-5)  # θ_pre itself
    sharp = run.table("sharpness")
    assert sharp.height == 1 and sharp["lambda_max"][0] > 0 and np.isfinite(sharp["trace"][0])
    wise = run.curves.collect().filter(pl.col("sweep") == "wise")
    assert set(wise["split"]) == {"test", "test_clean"} and not wise["loss_mean"].is_nan().any()


def test_runs_leave_nothing_to_do_on_a_rerun(runs):
    _, _, here = runs["lines"]
    done = _run_cli(here / JOBS["lines"].name, here, here / "results")
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"trained 0 replicate\(s\), evaluated 0 of \d+ work items", done.stdout), done.stdout[-2000:]


def test_matrix_hints_cover_the_types():
    """The option walk reads every nested spec (a new nested spec needs no edit here)."""
    nested = [h for _, h in codec.hints(SweepSpec).items() if dataclasses.is_dataclass(h)]
    assert len(nested) >= 4 and all(typing.get_type_hints(h) for h in nested)
