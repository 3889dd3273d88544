"""Datasets in the store: `raysweep data pack` (Ray tasks, resumable, checked) and the training stream
(Ray Data decode on any node, each example once per epoch across ranks, deterministic, resumable)."""
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datafiles import write_image_folder
from typer.testing import CliRunner

from raysweep.cli import app
from raysweep.data import packed, streams
from raysweep.io.store import Store

HERE = Path(__file__).parent
runner = CliRunner()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imagefolder"))


def test_pack_is_resumable_and_a_damaged_shard_is_named_with_its_repair(source, tmp_path, ray_session):
    store = Store(str(tmp_path / "s"))
    folder, man = packed.pack(str(source), "toy", store, shard_images=8)
    assert man["splits"]["train"]["count"] == 21 and man["splits"]["val"]["count"] == 9
    assert [s["count"] for s in man["splits"]["train"]["shards"]] == [8, 8, 5] and man["classes"] == [
        "cat",
        "dog",
        "eel",
    ]
    target = store.sub(folder)
    rows = target.read_table([s["path"] for s in man["splits"]["train"]["shards"]]).to_pylist()
    listing = sorted(p.relative_to(source / "train").as_posix() for p in (source / "train").rglob("*.*"))
    # written in one seeded permutation (numpy's, seeded by (seed, split) as the manifest records): index is
    # the listing position, so every image is there once, under its own label and bytes
    assert man["shuffle_seed"] == 0
    perm = np.random.default_rng([0, *b"train"]).permutation(len(listing)).tolist()
    assert [r["index"] for r in rows] == perm and [r["path"] for r in rows] == [listing[i] for i in perm]
    assert [r["label"] for r in rows] == [["cat", "dog", "eel"].index(listing[i].split("/")[0]) for i in perm]
    assert all(r["image"] == (source / "train" / r["path"]).read_bytes() for r in rows)  # the bytes, as they were
    # --keep-order: the listing's order, and the fingerprint packs made before the shuffle had
    kept, man_kept = packed.pack(str(source), "toy_sorted", store, shard_images=8, seed=None)
    assert kept.endswith(folder.rsplit("-", 1)[1]) is False and man_kept["shuffle_seed"] is None
    assert [
        r["path"] for r in store.sub(kept).read_table([man_kept["splits"]["train"]["shards"][0]["path"]]).to_pylist()
    ] == listing[:8]

    # resumable: a shard lost before its record was written is packed again, the others are kept
    lost = man["splits"]["train"]["shards"][1]["path"]
    kept = target.fs.get_file_info(target.full(man["splits"]["train"]["shards"][0]["path"])).mtime_ns
    target.delete(lost.replace(".parquet", ".json"))
    packed.pack(str(source), "toy", store, shard_images=8)
    assert target.exists(lost.replace(".parquet", ".json"))
    assert target.fs.get_file_info(target.full(man["splits"]["train"]["shards"][0]["path"])).mtime_ns == kept

    r = runner.invoke(app, ["data", "check", "toy", "--storage", str(tmp_path / "s")])
    assert r.exit_code == 0 and "all match" in r.output
    data = target.read_bytes(lost)  # a damaged shard: named, with the repair
    (Path(target.full(lost))).write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    r = runner.invoke(app, ["data", "check", "toy", "--storage", str(tmp_path / "s")])
    text = " ".join(r.output.split())
    assert r.exit_code == 1 and "part-00001.parquet does not match its sha256" in text and "--verify" in text
    r = runner.invoke(app, ["data", "pack", str(source), "--name", "toy", "--storage", str(tmp_path / "s"),
                            "--shard-images", "8", "--verify", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["data", "check", "toy", "--storage", str(tmp_path / "s")]).exit_code == 0
    r = runner.invoke(app, ["data", "pack", str(tmp_path), "--name", "x", "--storage", str(tmp_path / "s")])
    assert r.exit_code == 2 and "train/<class>/<image>" in " ".join(r.output.split())


def test_packing_outside_the_cli_starts_a_ray_of_its_own(source, tmp_path, ray_session):
    """Never Ray's implicit start: raysweep would take that Ray for a joined cluster (no autoscaler
    config) and later ask it for a trial's full CPUs, which a 2-CPU machine never has — a hang."""
    import ray

    from raysweep import connect

    connect.shutdown_ray(force=True)
    packed.pack(str(source), "toy", Store(str(tmp_path / "s")), shard_images=8)
    assert ray.is_initialized() and connect.is_local() and not connect.joins_cluster(None)


def test_each_example_once_per_epoch_across_ranks_in_a_seeded_order(source, tmp_path, ray_session):
    store = Store(str(tmp_path / "s"))
    folder, man = packed.pack(str(source), "toy", store, shard_images=8)
    target, shards = store.sub(folder), man["splits"]["train"]["shards"]

    def epoch(e, world, skip=0, seed=3):
        return [[(i, x) for x, _, idx, _ in streams.stream(target.address, shards, 16, 2, seed, e, skip, rank=r,
                                                           world=world, trace=True) for i, x in zip(idx.tolist(), x)]
                for r in range(world)]

    one = epoch(0, 1)[0]
    assert sorted(i for i, _ in one) == list(range(21))  # one rank: every example once
    two = epoch(0, 2)
    ids = [i for rank in two for i, _ in rank]
    assert len(ids) == len(set(ids)) == 20 and all(len(r) == 10 for r in two)  # 21 // 2 each, one left over
    again = epoch(0, 1)[0]
    assert [i for i, _ in again] == [i for i, _ in one] and all(torch.equal(a, b) for (_, a), (_, b) in zip(one, again))
    assert [i for i, _ in epoch(1, 1)[0]] != [i for i, _ in one]  # another epoch, another order
    resumed = epoch(0, 1, skip=3)[0]  # skipping 3 batches of 2 rows: exactly the rest, decoded alike
    assert [i for i, _ in resumed] == [i for i, _ in one][6:] and torch.equal(resumed[0][1], one[6][1])


def test_grayscale_cmyk_and_png_images_decode_to_rgb(source):
    from PIL import Image

    for name in ("train/cat/cat_0.JPEG", "train/dog/dog_0.JPEG", "train/eel/eel_0.png"):
        data = (source / name).read_bytes()
        img = streams.decode(data)
        want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).transpose(2, 0, 1)
        assert img.shape == want.shape and img.dtype == torch.uint8
        assert np.abs(img.numpy().astype(int) - want.astype(int)).mean() < 3  # libjpeg-turbo vs PIL rounding
        view = streams.train_view(data, 0, 0, 0, 16)
        assert view.shape == (3, 16, 16) and view.dtype == torch.uint8


def test_a_cluster_decodes_on_its_cpu_only_node_and_trains_from_the_bucket(source, s3_bucket, tmp_path):
    bucket, client = s3_bucket
    raw = {"name": "packedconv", "replicates": 1, "data": {"name": "toy", "source": "store", "image_size": 16},
           "model": {"name": "smallconv.nets:build", "kwargs": {"width": 4}},
           "train": {"epochs": 2, "batch_size": 4, "checkpoints": "every_epoch", "log_splits": ["test"]},
           "eval": {"batch_size": 16},
           "sweeps": [{"name": "i1", "kind": "init_to_final", "alpha": {"num": 3}}]}
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(HERE / "packed_cluster.py"), json.dumps(raw), bucket, str(source),
                           str(report)], cwd=HERE.parent / "examples", capture_output=True, text=True, timeout=900)
    out = json.loads(report.read_text()) if report.exists() else {}
    assert proc.returncode == 0 and "curve_rows" in out, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert out["pack"] == {"train": [21, 3], "val": [9, 2]}
    for ids, nodes in out["streamed"]:  # while the trainer node's CPU is busy, the CPU-only node decodes
        assert sorted(ids) == list(range(21)) and nodes == [out["decoder_node"]]
    assert out["stream_driver_node"] == out["trainer_node"]
    assert out["failures"] == 0 and out["items"] == 1 and out["curve_rows"] == 3
    steps = [m["step"] for m in out["manifests"]]
    assert steps == [0, 6, 12] and all(m["images_per_s"] > 0 for m in out["manifests"][1:])
    keys = {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])}
    assert any(k.startswith("sweeps/datasets/toy-") and k.endswith("manifest.json") for k in keys)
    assert sum("/replicate_0/step_" in k and k.endswith(".safetensors") for k in keys) == 3


def test_a_crashed_worker_is_reported_and_its_dump_kept_out_of_a_successful_pack(tmp_path):
    """Ray workers that abort (SIGABRT, as a worker torn down mid-call does) while `raysweep data pack` runs on a
    Ray of the test's: Ray retries their shards, the command succeeds, prints no crash dump, and names each
    crash with its log; the shards are whole."""
    import os
    import signal
    import threading
    import time

    import psutil
    from datafiles import write_imagenet

    source = write_imagenet(tmp_path / "src", classes=tuple(f"c{i}" for i in range(6)), train_per_class=30,
                            val_per_class=4, size=(24, 24))
    import shutil
    import tempfile

    from conftest import free_port

    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="rsp-", dir="/tmp"))  # short: Ray's sockets live there
    head = subprocess.run([str(Path(sys.executable).parent / "ray"), "start", "--head", "--num-cpus", "2",
                           "--port", str(port), "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp),
                           "--include-dashboard", "false", "--disable-usage-stats"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert head.returncode == 0, head.stderr
    address = f"127.0.0.1:{port}"
    killed: list[int] = []
    stop = threading.Event()

    def abort_workers():  # up to two pack workers, each mid-task
        while not stop.is_set() and len(killed) < 2:
            for p in psutil.process_iter(["pid", "cmdline"]):
                if "ray::pack_shard" in " ".join(p.info["cmdline"] or []) and p.info["pid"] not in killed:
                    os.kill(p.info["pid"], signal.SIGABRT)
                    killed.append(p.info["pid"])
                    break
            time.sleep(0.01)
    killer = threading.Thread(target=abort_workers)
    killer.start()
    try:
        r = subprocess.run([sys.executable, "-m", "raysweep", "data", "pack", str(source), "--name", "toy",
                            "--storage", str(tmp_path / "s"), "--address", address, "--shard-images", "2",
                            "--no-progress"], capture_output=True, text=True, timeout=600,
                           env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    finally:
        stop.set()
        killer.join()
        ours = [p for p in psutil.process_iter(["pid", "cmdline"])  # this test's Ray only: its temp folder, port
                if str(temp) in " ".join(p.info["cmdline"] or [])
                or f"127.0.0.1:{port}" in " ".join(p.info["cmdline"] or [])]
        for proc in ours + [c for p in ours for c in p.children(recursive=True)]:
            try:
                proc.kill()
            except psutil.Error:
                pass
        shutil.rmtree(temp, ignore_errors=True)
    said = r.stdout + r.stderr
    assert r.returncode == 0, said[-3000:]
    assert killed, "no pack worker was caught mid-task"
    assert "Fatal Python error" not in said and "Aborted" not in said and "Traceback" not in said
    reported = said.count("crashed during the pack")
    assert reported == len(killed), said[-3000:]
    assert all(f"pid {pid}" in said for pid in killed)
    check = runner.invoke(app, ["data", "check", "toy", "--storage", str(tmp_path / "s")])
    assert check.exit_code == 0, check.output
