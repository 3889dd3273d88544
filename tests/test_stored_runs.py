"""A run stored by an earlier raysweep is found and not recomputed: tests/data/stored_v1 was made (replicates,
instability children, a curve's bend, swept and aggregated) by the code before the work vocabulary moved into
raysweep/work and the training tasks became typed (issue 34). Its hash, its tasks and items, and its tables
must read the same with the code of now."""
import json
import shutil
from pathlib import Path

import polars as pl

from raysweep.analysis import aggregate
from raysweep.api import Run
from raysweep.io import paths
from raysweep.io.store import Store
from raysweep.kinds.curve import bends_todo
from raysweep.spec import parse_job
from raysweep.sweep.planner import missing

STORED = Path(__file__).parent / "data" / "stored_v1"


def test_a_run_stored_before_the_refactor_is_found_and_not_recomputed(tmp_path):
    root = tmp_path / "store"
    shutil.copytree(STORED, root)
    raw = json.loads((root / "job.json").read_text())
    run = Run(parse_job(raw), Store(str(root)))
    assert run.job.hash == "39150bc836" and (root / paths.run_dir(run.job.name, run.job.hash)).is_dir()
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert run._untrained(run.replicates) == []  # every replicate, child and bend is found done
    assert run.children_todo() == [] and bends_todo(run.job, run.store, run.replicates) == []
    items = run.plan()
    assert items and missing(items, run.store, run.job) == []
    stored = {name: pl.read_parquet(root / paths.table(run.dir, name)) for name in ("curves", "barriers")}
    summary = run.sweep(progress=False, local=True)
    assert summary.items_run == 0 and summary.items_total == len(items)
    tables = aggregate.aggregate(run.store, run.job)
    for name, df in stored.items():  # the same numbers; the tables have grown columns since (n of planned) and
        # barrier_mean is named peak_over_ends (issue 42): the stored columns, renamed, equal the new ones
        old = df.rename({c: c.replace("barrier_mean", "peak_over_ends") for c in df.columns})
        assert tables[name].select(old.columns).equals(old), name
        if name == "barriers":
            assert tables[name]["complete"].all() and "planned" in tables[name].columns
    changed = [p for p, t in before.items() if p.stat().st_mtime_ns != t and "tables" not in p.parts]
    assert changed == []  # no checkpoint, state or points file was written again
