import re

import pytest
from conftest import TINY, make_job

from raysweep.jobs import builtin_jobs, load_job
from raysweep.spec import SpecError, apply_overrides, parse_job, sweep_hash


def test_every_job_file_validates():
    jobs = builtin_jobs()
    assert "digits_mlp" in jobs
    for name in jobs:
        job = load_job(name)
        assert job.name == name, f"{name}.toml must declare name = {name!r}"
        assert job.sweeps


@pytest.mark.parametrize(
    "raw_change, fragment",
    [
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"train": {"lr": "fast"}}, "train.lr must be float"),
        ({"train": {"epochs": 0}}, "train.epochs must be between 1 and 100,000"),
        ({"train": {"lr": float("inf")}}, "train.lr must be a finite number"),
        ({"train": {"momentum": float("nan")}}, "train.momentum must be a finite number"),
        ({"train": {"momentum": 1.5}}, "train.momentum must be < 1"),
        ({"replicates": 1_000_000_000}, "replicates must be between 1 and 10,000"),
        ({"seed": 2**70}, "seed = 1180591620717411303424 is out of range"),
        ({"seed": 2**40}, "seed must be in "),
        ({"name": "../../escape"}, "is not a plain name"),
        ({"name": "/abs"}, "is not a plain name"),
        ({"name": ""}, "is not a plain name"),
        ({"model": {"hidden": [10**9]}}, "model.hidden: at most 1,000 widths"),
        (
            {"sweeps": [{"name": "x", "kind": "random_to_final", "random_scale": float("inf")}]},
            "random_scale must be a finite number",
        ),
        ({"model": {"activation": "gelu"}}, "model.activation = 'gelu' is not valid"),
        ({"train": {"checkpoints": "sometimes"}}, "train.checkpoints"),
        ({"replicates": True}, "replicates must be int"),
        ({"eval": {"compile_mode": "fast"}}, "eval.compile_mode = 'fast' is not valid"),
        ({"eval": {"cpu_batch_size": -1}}, "eval.cpu_batch_size must be in [0, 2**24]"),
    ],
)
def test_bad_fields_are_named(raw_change, fragment):
    raw = {**TINY, **raw_change}
    with pytest.raises(SpecError, match=re.escape(fragment)):
        parse_job(raw, "t")


@pytest.mark.parametrize("alpha, fragment", [
    ({"start": 1.0, "stop": 0.0}, "must be greater than start"),
    ({"num": 1}, "num must be between 2"),
    ({"values": [0.0, 0.5, 0.5]}, "strictly increasing"),
    ({"values": [0.0, float("nan")]}, "must be a finite number"),
    ({"values": []}, "values is empty"),
    ({"start": 0.0, "stop": 1e-20, "num": 50}, "too close"),
])
def test_bad_alpha_grids(alpha, fragment):
    raw = {**TINY, "sweeps": [{"name": "x", "alpha": alpha}]}
    with pytest.raises(SpecError, match=fragment):
        parse_job(raw, "t")


def test_overrides_reach_nested_fields_and_sweeps_by_name():
    raw = apply_overrides(
        TINY, ["train.lr=0.05", "sweeps.i1.alpha.num=7", "model.hidden=[8, 8]", "description=hi there"]
    )
    job = parse_job(raw)
    assert job.train.lr == 0.05 and job.sweep("i1").alpha.num == 7 and job.model.hidden == (8, 8)
    assert job.description == "hi there"
    assert TINY["train"]["lr"] == 0.1  # the input is not modified


@pytest.mark.parametrize("override, fragment", [
    ("train.lrr=1", "unknown key 'lrr'"),
    ("sweeps.nope.alpha.num=3", "no sweep named 'nope'"),
    ("train.lr", "has no '='"),
    ("train.lr.x=1", "not a table"),
])
def test_bad_overrides(override, fragment):
    with pytest.raises(SpecError, match=fragment):
        apply_overrides(TINY, [override])


def test_hash_covers_training_fields_only():
    base = make_job()
    assert make_job(train__lr=0.05).hash != base.hash
    assert make_job(replicates=5).hash == base.hash  # more replicates extend the same run
    assert make_job(sweeps=[]).hash == base.hash  # sweeps never retrain
    assert make_job(data__root="/elsewhere").hash == base.hash  # where the data lives is not what it is
    assert make_job(train__log_splits=["test"]).hash == base.hash  # what is logged does not change weights
    assert make_job(data__num_workers=4).hash != base.hash  # each loader worker draws its own augmentations
    assert make_job(train__amp=True).hash != base.hash
    # a field set explicitly to its default value does not change the hash
    assert make_job(train__weight_decay=0.0).hash == base.hash


def test_sweep_hash_follows_the_numbers_not_the_chunking():
    job = make_job()
    s = job.sweep("i1")
    assert sweep_hash(s) == sweep_hash(make_job(sweeps=[{**TINY["sweeps"][0], "chunk": 2}]).sweep("i1"))
    assert sweep_hash(s) != sweep_hash(make_job(sweeps=[{**TINY["sweeps"][0], "alpha": {"num": 12}}]).sweep("i1"))


def test_alpha_grid_hits_zero_and_one_exactly():
    job = load_job("digits_mlp")
    pts = job.sweep("extrapolate").alpha.points()
    assert 0.0 in pts and 1.0 in pts and len(pts) == 201


def test_unknown_job_lists_known_ones(tmp_path):
    with pytest.raises(SpecError, match="digits_mlp"):
        load_job("no_such_job")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[train\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_job(str(bad))


def test_hashes_are_pinned():
    """Adding a field with a default must keep every old hash: these values are the stored runs' (made
    under RECIPE 2: built-in models keep PyTorch's default biases, CIFAR-10 uses ImageNet's mean/std)."""
    job = load_job("digits_mlp")
    assert job.hash == "0efa818fdc"
    defaults = [
        "model.init=openlth",
        "model.input_dropout_rescale=true",
        "train.lr_decay=step",
        "data.pixels=standardized",
    ]
    assert load_job("digits_mlp", defaults).hash == job.hash
    assert sweep_hash(job.sweep("init_to_final")) == sweep_hash(
        parse_job(
            {
                "name": "x",
                "sweeps": [{"name": "y", "kind": "init_to_final", "alpha": {"num": 100}, "splits": ["train", "test"]}],
            }
        ).sweep("y")
    )
    from raysweep.spec import SweepSpec

    assert sweep_hash(SweepSpec(name="a", kind="projection")) == sweep_hash(SweepSpec(name="b", kind="projection"))


def test_the_spec_knows_the_registries_names_without_importing_them():
    from raysweep.data import DATASETS
    from raysweep.models import MODELS
    from raysweep.spec.job import BUILTIN_DATASETS, BUILTIN_MODELS

    assert set(BUILTIN_MODELS) == set(MODELS) and set(BUILTIN_DATASETS) == set(DATASETS)
