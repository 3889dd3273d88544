"""More than one test distribution: a loader's extra splits are swept and aggregated like "test"; a line over two
of them gets the WiSE-FT figure only where it starts from a pretrained model (train.init_from): WiSE-FT's caption
speaks of one."""
import polars as pl
import pytest
import torch
from conftest import run_in_process

from raysweep.data.offline import digits
from raysweep.data.registry import load_splits
from raysweep.errors import SpecError
from raysweep.io.checkpoints import load_tensors
from raysweep.models import build_model
from raysweep.report.figures import figures, load_tables
from raysweep.spec import DataSpec, parse_job
from raysweep.sweep.planner import plan

RAW = {"name": "shifted", "replicates": 2, "data": {"name": "digits_shifted"}, "model": {"name": "mlp", "hidden": [16]},
       "train": {"epochs": 2, "batch_size": 64, "checkpoints": "list", "steps": [0]},
       "sweeps": [{"name": "wise", "kind": "init_to_final", "alpha": {"num": 3}, "splits": ["test", "test_clean"]}]}


def test_an_extra_split_is_swept_like_test(tmp_path):
    run = run_in_process(RAW, tmp_path / "s")
    data = load_splits(run.job.data)
    clean = digits(DataSpec())  # the extra split is the clean digits' own test split
    assert torch.equal(data.split("test_clean")[0], clean.test_x) and not torch.equal(data.test_x, clean.test_x)
    item = plan(run.job, run.store, [0, 1])[0]
    model = build_model(run.job.model, data.in_shape, data.num_classes)
    model.load_state_dict(load_tensors(run.store, item.b.path))
    model.eval()
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(model(data.prepare(clean.test_x)), clean.test_y).item()
    got = run.points.filter(pl.col("replicate_a") == 0, pl.col("alpha") == 1.0, pl.col("split") == "test_clean")
    assert got.collect()["loss"][0] == pytest.approx(want, rel=1e-5)
    assert set(run.curves.collect()["split"]) == {"test", "test_clean"}
    names = [f.name for f in figures(run.job, load_tables(run.tables))]
    assert "WiSE-FT-wise" not in names and "F-fig1-wise" in names  # trained from a seed: no pretrained model
    import dataclasses

    tuned = dataclasses.replace(run.job, train=dataclasses.replace(run.job.train, init_from="pretrained.pt"))
    assert "WiSE-FT-wise" in [f.name for f in figures(tuned, load_tables(run.tables))]
    with pytest.raises(SpecError, match="has the splits \\['train', 'test', 'test_clean'\\]"):
        plan(parse_job({**RAW, "sweeps": [{**RAW["sweeps"][0], "splits": ["test_dark"]}]}), run.store, [0, 1])
