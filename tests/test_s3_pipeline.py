"""The whole pipeline against a real S3-protocol server on 127.0.0.1, through the production paths."""
import re

from conftest import write_job_toml
from typer.testing import CliRunner

from raysweep.api import Run
from raysweep.cli import app
from raysweep.io.store import Store


def test_run_results_query_plot_on_s3(ray_session, s3_bucket, tiny_job, tmp_path):
    name, client = s3_bucket
    uri = f"s3://{name}/sweeps"
    run = Run(tiny_job, Store(uri))
    summary = run.run(progress=False)
    assert summary.items_run == summary.items_total > 0 and not summary.failures

    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    prefix = f"sweeps/tiny/{tiny_job.hash}/"
    assert all(k.startswith(prefix) for k in keys)
    rel = [k[len(prefix):] for k in keys]
    assert {f"replicate_{k}/step_{s:08d}.{ext}" for k in (0, 1) for s in (0, 5, 10, 20)
            for ext in ("safetensors", "json")} <= set(rel)
    assert {"job.json", "report.html", "tables/curves.parquet", "tables/barriers.parquet",
            "tables/checkpoints.parquet", "replicate_0/done.json", "replicate_0/state.safetensors"} <= set(rel)
    points = [r for r in rel if r.startswith("points/")]
    assert len(points) == summary.items_total
    assert all(
        re.fullmatch(r"points/line/i[1256]-[0-9a-f]{10}/r\d-(s\d+|random)__r\d-s\d+__a\d{5}-\d{5}\.parquet", p)
        for p in points
    )
    assert any(r.startswith("tune/") for r in rel)  # Tune's own state lives in the bucket too

    # results and query read straight from the bucket
    job_file = write_job_toml(tmp_path / "tiny.toml")
    r = CliRunner().invoke(app, ["query", job_file, "select count(*) as n from points", "--storage", uri,
                                 "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert int(r.output.splitlines()[1]) == run.points.collect().height
    r = CliRunner().invoke(app, ["results", job_file, "--table", "barriers", "--storage", uri, "--format", "csv"])
    assert r.exit_code == 0 and r.output.count("\n") == run.barriers.collect().height + 1
    out = tmp_path / "report.html"
    r = CliRunner().invoke(app, ["plot", job_file, "--storage", uri, "--out", str(out)])
    assert r.exit_code == 0 and "vegaEmbed" in out.read_text()
    r = CliRunner().invoke(app, ["status", job_file, "--storage", uri])
    assert "replicate 1: trained, 4 checkpoints" in r.output and "report: written" in r.output


def test_run_fails_fast_on_a_missing_bucket(s3_server, tmp_path):
    job_file = write_job_toml(tmp_path / "tiny.toml")
    r = CliRunner().invoke(app, ["run", job_file, "--storage", "s3://no-bucket-here/x", "--no-progress"])
    assert r.exit_code == 2 and "does not exist" in r.output

