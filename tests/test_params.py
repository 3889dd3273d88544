"""A line over some tensors only (`params`: globs over state-dict names), the rest held at θ_b (or θ_a)."""
import copy

import polars as pl
import pytest
import torch
from conftest import TINY, run_in_process

from raysweep.data.registry import load_splits
from raysweep.errors import SpecError
from raysweep.io.checkpoints import load_tensors
from raysweep.models import build_model
from raysweep.spec import parse_job
from raysweep.sweep.planner import plan

LINE = {"name": "backbone", "kind": "init_to_final", "alpha": {"num": 3}, "params": {"exclude": ["3.*"]}}


@pytest.mark.parametrize("hold", ["b", "a"])
def test_only_the_named_tensors_move_along_the_line(hold, tmp_path):
    raw = {**copy.deepcopy(TINY), "name": f"params{hold}", "replicates": 1, "model": {"name": "mlp", "hidden": [16]},
           "sweeps": [{**LINE, "hold": hold}]}
    run = run_in_process(raw, tmp_path / "s")
    item = plan(run.job, run.store, [0])[0]
    assert set(item.params) == {"1.weight", "1.bias"}
    a, b = load_tensors(run.store, item.a.path), load_tensors(run.store, item.b.path)
    data = load_splits(run.job.data)
    model = build_model(run.job.model, data.in_shape, data.num_classes)
    row = run.points.filter(pl.col("alpha") == 0.5, pl.col("split") == "test").collect().row(0, named=True)
    held = b if hold == "b" else a
    model.load_state_dict({n: 0.5 * a[n] + 0.5 * b[n] if n.startswith("1.") else held[n] for n in a})
    model.eval()
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(model(data.prepare(data.test_x)), data.test_y).item()
    assert row["loss"] == pytest.approx(want, rel=1e-5)


def test_a_glob_that_names_nothing_is_an_error_naming_the_tensors(tmp_path):
    raw = {**copy.deepcopy(TINY), "name": "paramsbad", "replicates": 1, "model": {"name": "mlp", "hidden": [16]},
           "sweeps": [{**LINE, "params": {"include": ["encoder.*"]}}]}
    from raysweep.io.store import Store
    from raysweep.train.loop import train_replicate

    job = parse_job(raw)
    train_replicate(job, 0, Store(str(tmp_path / "s")))
    with pytest.raises(SpecError, match="'encoder.\\*' matches no tensor of the model's state dict; its names are"):
        plan(job, Store(str(tmp_path / "s")), [0])
