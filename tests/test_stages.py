"""The rehearsal's stage runner and the checks that keep it from hanging, each alone (no Ray): deadlines that
name what a stage waited for, refusals vs bugs, the projection's fit to the largest node, every-kind
exactly-once counting, and missing items reported as failures after the last round."""
from __future__ import annotations

import time

import pytest

from raysweep.errors import RehearsalFailed, SpecError, StoreError
from raysweep.run.stages import Stages


def test_a_stage_past_its_deadline_fails_naming_what_it_waited_for():
    stages = Stages(timeout=0.5, echo=lambda _: None)

    def waits():
        stages.waiting = "a node with 8 CPUs for the projection"
        while True:  # a wait that never ends (Ray's waits return to Python to check signals, as this loop does)
            time.sleep(0.05)
    t = time.monotonic()
    with pytest.raises(RehearsalFailed, match=r"stage projection: it did not finish in 0.5 s, waiting for a node "
                                              r"with 8 CPUs for the projection"):
        stages.run("projection", waits)
    assert time.monotonic() - t < 5
    assert stages.run("next", lambda: (1, "fine")) == 1  # the alarm is disarmed after a stage
    time.sleep(0.7)  # and no late alarm fires


def test_refusals_are_named_and_bugs_keep_their_traceback():
    stages = Stages(timeout=10, echo=lambda _: None)
    for exc in (SpecError("no such bucket"), StoreError("cannot reach it")):
        with pytest.raises(RehearsalFailed, match="stage store: .* Fix: check it"):
            stages.run("store", lambda exc=exc: (_ for _ in ()).throw(exc), "check it")

    def bug():
        raise KeyError("oops")
    with pytest.raises(KeyError) as info:
        stages.run("data", bug)
    assert "(in the rehearsal's stage data)" in info.value.__notes__
    assert info.traceback[-1].name == "bug"  # its own traceback, not a paragraph


def test_the_cli_names_the_stage_of_a_bug(capsys, monkeypatch):
    import typer

    from raysweep.cli_common import _guard

    @_guard
    def command():
        exc = ValueError("boom")
        exc.add_note("(in the rehearsal's stage data)")
        raise exc
    monkeypatch.delenv("RAYSWEEP_DEBUG", raising=False)
    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 1
    err = capsys.readouterr().err
    assert "unexpected ValueError: boom (in the rehearsal's stage data) — this is a raysweep bug" in err
    monkeypatch.setenv("RAYSWEEP_DEBUG", "1")
    with pytest.raises(ValueError):  # the traceback, whole
        command()


def test_the_projection_fits_the_largest_node(monkeypatch):
    from raysweep.cluster import policy
    from raysweep.jobs import load_job
    from raysweep.run import projection

    job = load_job("imagenet_resnet50", ["resources.accelerator=cpu"])
    assert job.resources.cpus_per_trial == 8
    cluster = policy.Capacity(cpus_now=2, gpus_now=0, cpus_max=2, gpus_max=0, local=False)
    monkeypatch.setattr(projection, "capacity", lambda: cluster)
    monkeypatch.setattr(policy, "node_types", lambda: [])  # an autoscaler that adds no node type
    monkeypatch.setattr(policy, "autoscaler_capacity", lambda: None)
    nodes = [{"id": "a", "ip": "1", "cpus": 2.0, "gpus": 0.0}, {"id": "b", "ip": "2", "cpus": 0.0, "gpus": 0.0}]
    monkeypatch.setattr(projection, "where_the_work_runs", lambda *a, **k: pytest.fail("it would wait forever"))
    out, text = projection.project(job, None, {}, nodes)
    assert out is None and text.startswith("NOT measured: no node has 8 CPUs (largest: 2 CPUs")
    # a node type of 16 CPUs the autoscaler can add: then it is asked for (and waited on, under the deadline)
    monkeypatch.setattr(policy, "node_types", lambda: [{"CPU": 16.0}])
    assert policy.largest_node(nodes, cluster) == {"cpus": 16.0, "gpus": 0.0}
    # on a local Ray the trial is fitted to the machine, as training fits it
    local = policy.Capacity(cpus_now=2, gpus_now=0, cpus_max=2, gpus_max=0, local=True)
    assert policy.trial_resources(job, local)["cpu"] == 2


def test_items_not_stored_after_the_last_round_are_failures(store, tiny_job):
    from raysweep.sweep.rounds import failure_message, sweep_rounds
    from raysweep.work.items import Endpoint, LineItem

    e = Endpoint(0, 0, "x", "")
    items = [LineItem("i1", "init_to_final", "h", f"k{i}", f"{tiny_job.name}/p/k{i}.parquet", e, e, (0.0,), ("test",))
             for i in range(2)]
    summary = sweep_rounds(tiny_job, store, items, lambda todo, results: None, rounds=2)  # a stage that stores nothing
    assert sorted(f["key"] for f in summary.failures) == sorted(it.path for it in items)
    assert {f["status"] for f in summary.failures} == {"lost"}
    assert "k0 of sweep i1 was not stored after 2 rounds" in failure_message(tiny_job, summary.failures, store)


def test_stored_counts_see_every_copy(store):
    from raysweep.io import paths
    from raysweep.work.stored import stored_counts

    folder = "job/h/points/merge/soup-abc"
    for key in ("a", "b"):
        store.write_bytes(paths.point_file(folder, key), b"x")
    part = f"{folder}/{paths.PART_PREFIX}1"
    store.write_bytes(part + paths.PARQUET, b"x")
    store.write_json(part + paths.JSON, {"items": ["b", "c", "c"]})  # b as a file and in a part: read once
    counts = stored_counts(store, folder)
    assert counts == {paths.point_file(folder, "a"): 1, paths.point_file(folder, "b"): 1,
                      paths.point_file(folder, "c"): 2}
