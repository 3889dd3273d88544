"""The whole pipeline through Ray Tune and Ray Data, against the same work done in-process."""
import polars as pl
import pytest

from raysweep.api import Run
from raysweep.io.store import Store
from raysweep.sweep.execute import run_local
from raysweep.sweep.planner import plan
from raysweep.train.loop import train_replicate


def test_ray_pipeline_matches_in_process_and_reruns_compute_nothing(ray_session, tiny_job, tmp_path):
    run = Run(tiny_job, Store(str(tmp_path / "ray")))
    summary = run.run(progress=False)
    assert summary.trained == [0, 1] and summary.items_run == summary.items_total > 0
    assert not summary.failures and run.store.exists(f"{run.dir}/report.html")

    # the same job, trained and swept in this process without Ray
    local = Store(str(tmp_path / "local"))
    for k in range(2):
        train_replicate(tiny_job, k, local)
    run_local(tiny_job, local, plan(tiny_job, local, [0, 1]))
    key = ["sweep", "replicate_a", "step_a", "replicate_b", "step_b", "alpha", "split"]
    ray_points = run.points.collect().sort(key)
    local_points = Run(tiny_job, local).points.collect().sort(key)
    assert ray_points.height == local_points.height == sum(
        len(it.alphas) * len(it.splits) for it in run.plan())
    assert ray_points["sha256_b"].to_list() == local_points["sha256_b"].to_list()  # bitwise same training
    for col in ("loss", "error"):
        assert ray_points[col].to_list() == pytest.approx(local_points[col].to_list(), rel=1e-6, nan_ok=True)

    again = run.run(progress=False)
    assert again.trained == [] and again.items_run == 0
    assert run.points.collect().height == ray_points.height


def test_more_replicates_extend_the_same_run(ray_session, tiny_job, tmp_path):
    from raysweep.spec import parse_job

    store = Store(str(tmp_path / "s"))
    Run(tiny_job, store).train(progress=False)
    bigger = parse_job({**tiny_job.to_dict(), "replicates": 3})
    assert bigger.hash == tiny_job.hash
    assert Run(bigger, store).train(progress=False) == [2]


def test_query_and_tables(ray_session, tiny_job, tmp_path):
    run = Run(tiny_job, Store(str(tmp_path / "q")))
    run.run(progress=False, report=False)
    q = run.query("select sweep, count(*) as n from curves group by sweep order by sweep")
    assert q.to_dict(as_series=False) == {"sweep": ["i1", "i2", "i5", "i6"], "n": [22, 20, 9, 5]}
    b = run.table("barriers", sweep="i2")
    assert set(b["metric"]) == {"loss", "error"} and sorted(set(b["step"])) == [0, 5, 10, 20]
    assert isinstance(run.curves, pl.LazyFrame)


def test_gpu_request_on_a_cpu_only_local_ray_is_an_error(ray_session, tiny_job, tmp_path):
    from raysweep.spec import SpecError, parse_job

    job = parse_job({**tiny_job.to_dict(), "resources": {"gpus_per_trial": 1.0}})
    with pytest.raises(SpecError, match="gpus_per_trial = 1, but this machine's Ray has 0 GPUs"):
        Run(job, Store(str(tmp_path / "g"))).train(progress=False)
    job = parse_job({**tiny_job.to_dict(), "resources": {"accelerator": "gpu"}})
    with pytest.raises(SpecError, match="is meant for GPUs .*--set resources.accelerator=cpu"):
        Run(job, Store(str(tmp_path / "g"))).train(progress=False)
    assert not (tmp_path / "g" / "tiny").exists() or not any((tmp_path / "g" / "tiny").rglob("*.safetensors"))
