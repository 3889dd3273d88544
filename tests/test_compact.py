"""Compaction of a line sweep's item files into Parquet parts: exactly once, idempotent, resumable."""
import copy

import polars as pl
import pytest
from conftest import TINY, run_in_process

from raysweep.io import paths
from raysweep.sweep import compact as cp
from raysweep.sweep.planner import missing, plan
from raysweep.work.kinds import sweep_folder

RAW = {**copy.deepcopy(TINY), "name": "compacted"}


def _folders(run):
    return [sweep_folder(run.dir, s) for s in run.job.sweeps]


def _tables(run):
    from raysweep.analysis import aggregate

    return aggregate.line_tables(run.store, run.job)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """The same job run twice: left as item files (the default threshold) and compacted (threshold 1)."""
    plain = run_in_process(RAW, tmp_path / "plain")
    monkeypatch.setenv("RAYSWEEP_COMPACT_MIN", "1")
    packed = run_in_process(RAW, tmp_path / "packed")
    return plain, packed


def test_a_compacted_sweep_reads_like_its_item_files(runs):
    plain, packed = runs
    for folder in _folders(packed):
        files = packed.store.list(folder, ".parquet")
        assert files and all(cp.is_part(f) for f in files)  # no item file left
        assert len(packed.store.list(folder, ".json")) == len(files)  # one record per part
    a, b = _tables(plain), _tables(packed)
    assert a[0].equals(b[0]) and a[1].equals(b[1])  # bitwise
    cols = ["sweep", "replicate_a", "step_a", "replicate_b", "step_b", "alpha", "split", "loss", "error"]
    assert plain.points.collect().select(cols).sort(cols).equals(packed.points.collect().select(cols).sort(cols))
    # what is done is still known: nothing to plan, status counts every item
    assert missing(plan(packed.job, packed.store, packed.replicates), packed.store, packed.job) == []
    status = packed.status()["sweeps"]
    assert all(v["done"] == v["total"] > 0 for v in status.values())
    assert packed.compact() == 0  # idempotent: nothing left to fold


def test_a_compaction_killed_at_any_step_reads_each_point_once_and_finishes(runs, monkeypatch):
    plain, packed = runs
    folder = _folders(packed)[0]
    part = packed.store.list(folder, ".parquet")[0]
    record = part.removesuffix(".parquet") + ".json"
    keys = packed.store.read_json(record)["items"]
    # killed after step 2 (record written) but before step 3: the item files are back
    table = packed.store.read_table([part])
    for key in keys:
        rows = table.filter(pl.Series(table["item"].to_pylist()).eq(key).to_arrow())
        packed.store.write_table(f"{folder}/{key}.parquet", rows)
    assert _tables(packed)[0].equals(_tables(plain)[0])  # no point read twice
    assert missing(plan(packed.job, packed.store, packed.replicates), packed.store, packed.job) == []
    # killed after step 1: a part without its record is never read
    packed.store.write_table(f"{folder}/{paths.PART_PREFIX}0000000000000000.parquet", table)
    assert _tables(packed)[0].equals(_tables(plain)[0])
    assert cp.compact(packed.store, folder) == 0  # finishes: leftovers deleted, the orphan part too
    files = packed.store.list(folder, ".parquet")
    assert files == [part] and _tables(packed)[0].equals(_tables(plain)[0])


def test_compaction_waits_for_many_items_and_forgetting_a_replicate_rewrites_parts(runs):
    plain, packed = runs
    folder = _folders(plain)[0]
    n = len(plain.store.list(folder, ".parquet"))
    assert cp.compact(plain.store, folder, cp.COMPACT_MIN_ITEMS) == 0 and len(plain.store.list(folder, ".parquet")) == n
    from raysweep.sweep.planner import done_paths
    from raysweep.work.items import key_replicates

    before = done_paths(packed.store, packed.job)
    packed.forget_replicate(1)
    points = packed.points.collect()
    assert points.height and not ((points["replicate_a"] == 1) | (points["replicate_b"] == 1)).any()
    after = done_paths(packed.store, packed.job)
    assert after == {p for p in before if 1 not in key_replicates(p)} and after != before


def test_a_run_that_joined_ray_compacts_on_the_cluster_with_the_drivers_threshold(runs, tmp_path, monkeypatch,
                                                                                    ray_session):
    plain, _ = runs  # its item files, left as they were (the default threshold)
    monkeypatch.setenv("RAYSWEEP_COMPACT_MIN", "3")  # the driver's setting; the workers' environment says nothing
    before = _tables(plain)
    items = [len(plain.store.list(folder, ".parquet")) for folder in _folders(plain)]
    assert any(n >= 3 for n in items) and any(n < 3 for n in items)  # some folders due, some not
    counts = cp.compact_on_cluster(plain.store, _folders(plain))
    assert counts == [n if n >= 3 else 0 for n in items]
    for folder, n in zip(_folders(plain), items):
        files = plain.store.list(folder, ".parquet")
        assert all(cp.is_part(f) for f in files) == (n >= 3)
    after = _tables(plain)
    for b, a in zip(before, after):  # the same rows, read from the parts
        assert b.sort(b.columns).equals(a.sort(a.columns))
    assert cp.compact_on_cluster(plain.store, _folders(plain)) == [0] * len(counts)  # nothing left to fold
