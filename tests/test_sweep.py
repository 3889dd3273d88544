"""Planning, exactly-once storage and per-item failures, run in-process (no Ray)."""
import pytest
import torch
from test_evaluate import reference

from raysweep.data import dataset_info, load_splits
from raysweep.errors import NotTrainedError
from raysweep.evaluate.evaluator import Evaluator
from raysweep.io import paths
from raysweep.io.checkpoints import load_tensors
from raysweep.io.manifests import read_manifests
from raysweep.kinds.lines import draw_random_point, random_endpoint
from raysweep.sweep.execute import run_local
from raysweep.sweep.planner import missing, plan
from raysweep.train.loop import train_replicate
from raysweep.work.items import chunk_size, chunks
from raysweep.work.kinds import KINDS


@pytest.fixture
def trained(tiny_job, store):
    for k in range(tiny_job.replicates):
        train_replicate(tiny_job, k, store)
    data = load_splits(tiny_job.data)
    return tiny_job, store, data


def test_plan_counts_and_keys(trained):
    job, store, data = trained
    items = plan(job, store, [0, 1])
    info = dataset_info(job.data)
    assert chunk_size(job, job.sweep("i1"), info) == 4  # as the job says
    assert chunk_size(job, job.sweep("i2"), info) == 5  # automatic: a tiny model takes the whole grid
    for s in job.sweeps:
        n = sum(1 for it in items if it.sweep == s.name)
        assert n == KINDS[s.kind].pairs(2, 4, 0) * len(chunks(s.alpha.points(), chunk_size(job, s, info)))
    assert len({it.path for it in items}) == len(items)
    i2 = [it for it in items if it.sweep == "i2"]
    assert sorted({it.a.step for it in i2}) == [0, 5, 10, 20] and {it.b.step for it in i2} == {20}


def test_untrained_job_cannot_be_planned(tiny_job, store):
    with pytest.raises(NotTrainedError, match="raysweep train tiny"):
        plan(tiny_job, store, [0, 1])


def test_rows_are_exact_and_stored_once(trained):
    job, store, data = trained
    items = plan(job, store, [0, 1])
    ev = Evaluator(job, store, data)
    first = run_local(job, store, items[:5], ev)
    assert [r["status"] for r in first] == ["ok"] * 5
    assert len(missing(items, store, job)) == len(items) - 5
    run_local(job, store, missing(items, store, job), ev)
    assert missing(items, store, job) == []
    # every row checks out against the float64 reference built from the checkpoint files
    it = items[0]
    table = store.read_table([it.path]).to_pylist()
    sa = load_tensors(store, it.a.path, it.a.sha256)
    sb = load_tensors(store, it.b.path, it.b.sha256)
    assert [r["alpha"] for r in table if r["split"] == "test"] == list(it.alphas)
    for row in table:
        assert row["sha256_a"] == it.a.sha256 and row["job"] == "tiny" and row["hash"] == job.hash
        loss, err = reference(job, data, sa, sb, row["alpha"], row["split"])
        assert row["loss"] == pytest.approx(loss, rel=1e-5) and row["error"] == pytest.approx(err)


def test_random_point_is_seeded_and_scaled(trained):
    job, store, data = trained
    planned = random_endpoint(store, job, 0, 4.0)
    assert planned.sha256 == "" and not store.exists(planned.path)  # the planner only names it
    sha1 = draw_random_point(store, job, 0, 4.0, data.in_shape, data.num_classes)
    e1 = random_endpoint(store, job, 0, 4.0)
    assert e1.sha256 == sha1
    store.delete(e1.path.replace(".safetensors", ".json"))
    assert draw_random_point(store, job, 0, 4.0, data.in_shape, data.num_classes) == sha1  # redrawn identically
    init = load_tensors(store, paths.checkpoint(paths.run_dir(job.name, job.hash), 0, 0))
    rnd = load_tensors(store, e1.path)
    ratio = rnd["1.weight"].norm() / init["1.weight"].norm()
    assert 2.5 < ratio < 6  # 4x an independent init draw of the same distribution
    assert torch.equal(rnd["2.running_var"], torch.ones(16))  # buffers are not scaled


def test_a_corrupted_checkpoint_fails_only_its_items(trained):
    job, store, data = trained
    items = plan(job, store, [0, 1])
    m = read_manifests(store, job, 1)
    bad = m[5]["path"]
    store.write_bytes(bad, store.read_bytes(bad)[:100])
    results = run_local(job, store, items)
    failed = [r for r, it in zip(results, items) if r["status"] != "ok"]
    uses_bad = [it for it in items if bad in (it.a.path, it.b.path)]
    assert len(failed) == len(uses_bad) > 0
    assert all(bad.split("/")[-1] in r["message"] and r["status"] == "checkpoint" for r in failed)
    assert len(missing(items, store, job)) == len(uses_bad)  # all the rest is stored


def test_errors_by_kind_transient_retried_oom_named(trained, monkeypatch):
    from raysweep.api import failure_message
    from raysweep.io.store import Store
    from raysweep.sweep.execute import run_item
    from raysweep.sweep.prep import prepare

    job, store, data = trained
    item = prepare(job, store, plan(job, store, [0, 1], sweeps=["i1"]))[0]
    store.delete(item.path)
    ev = Evaluator(job, store, data)

    class Flaky(Store):
        """A store whose first `fail` writes break like a dropped connection."""
        def __init__(self, root, fail):
            super().__init__(root)
            self.fail, self.calls = fail, 0

        def write_bytes(self, path, data):
            self.calls += 1
            if self.calls <= self.fail:
                raise OSError("connection reset by peer")
            super().write_bytes(path, data)

    flaky = Flaky(store.uri, fail=2)
    assert run_item(ev, job, flaky, item, retries=3, backoff=0)["status"] == "ok" and flaky.calls == 3
    store.delete(item.path)
    down = Flaky(store.uri, fail=99)
    r = run_item(ev, job, down, item, retries=3, backoff=0)
    assert r["status"] == "transient" and down.calls == 3 and not store.exists(item.path)

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    monkeypatch.setattr(ev, "evaluate_pair", oom)
    r = run_item(ev, job, store, item, retries=3, backoff=0)
    assert r["status"] == "oom"
    text = failure_message(job, [r], store)
    assert "eval.batch_size" in text and "--set eval.batch_size=" in text


def test_a_different_chunking_never_skips_an_alpha(trained):
    """Keys name the α indices they hold: re-chunking plans new items, it never reuses wrong ones."""
    from raysweep.spec import parse_job

    job, store, data = trained
    items = plan(job, store, [0, 1], sweeps=["i1"])
    run_local(job, store, items)
    rechunked = parse_job({**job.to_dict(), "sweeps": [{**job.sweep("i1").__dict__, "alpha": {"num": 11},
                                                       "chunk": 3}]})
    again = plan(rechunked, store, [0, 1], sweeps=["i1"])
    # chunks of 3 hold other α than the stored chunks of 4, so all of them are planned again
    assert missing(again, store, rechunked) == again
    same = parse_job({**job.to_dict(), "sweeps": [{**job.sweep("i1").__dict__, "alpha": {"num": 11}}]})
    assert missing(plan(same, store, [0, 1], sweeps=["i1"]), store, same) == []
