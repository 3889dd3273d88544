"""Streamed training (data.source = "store") must learn as a shuffled DataLoader does: batches as
mixed as a uniform shuffle's even from a class-sorted pack, the same test error as a plain torchvision
loop from the same step-0 weights, decoding never starved of CPUs, and a stream that never waits in
silence. Expectations come from closed forms (hypergeometric distinct counts) and a plain loop."""
import statistics
import time

import pytest
import torch
from datafiles import write_digits_folder, write_image_folder
from typer.testing import CliRunner

from raysweep.cli import app
from raysweep.cluster.policy import Capacity, concurrent_trials, decoding_room
from raysweep.data import packed, streams
from raysweep.data.mix import expected_distinct
from raysweep.data.watch import Watched
from raysweep.io.store import Store
from raysweep.spec import SpecError, parse_job

runner = CliRunner()
CLASSES = tuple(f"c{i}" for i in range(10))


def _shards(groups: int, rows: int) -> list[dict]:
    return [{"path": f"train/part-{s:05d}.parquet", "count": rows * 4, "bytes": 1000, "groups": [rows] * 4}
            for s in range(groups // 4)]


def test_a_window_shuffles_rows_across_its_groups_uniformly_and_resumes_exactly():
    shards = _shards(40, 16)  # 40 row groups of 16 rows
    seen, distinct = [], []
    for epoch in range(6):
        pieces = streams.epoch_pieces(shards, 5, epoch, window=8)
        assert all(len(p.groups) <= 8 for p in pieces)
        rows = [(p.groups[k], r) for p in pieces for k, r in p.rows]
        assert sorted(rows) == sorted(((s["path"], g), r) for s in shards for g in range(4) for r in range(16))
        # inside a window the rows are one uniform permutation: a run of 16 rows draws from as many
        # groups as 16 draws without replacement from 8 groups of 16 rows do (hypergeometric)
        for p in pieces:
            distinct += [len({k for k, _ in p.rows[i:i + 16]}) for i in range(0, len(p.rows), 16)]
        seen.append(rows)
    want = expected_distinct([16] * 8, 16)
    assert abs(statistics.mean(distinct) - want) < 0.05 * want, (statistics.mean(distinct), want)
    assert seen[0] != seen[1]  # another epoch, another order
    again = [(p.groups[k], r) for p in streams.epoch_pieces(shards, 5, 0, window=8) for k, r in p.rows]
    assert again == seen[0]
    resumed = [(p.groups[k], r) for p in streams.epoch_pieces(shards, 5, 0, skip_rows=100, window=8) for k, r in p.rows]
    assert resumed == seen[0][100:]
    ranks = [
        [(p.groups[k], r) for p in streams.epoch_pieces(shards, 5, 0, rank=i, world=3, window=8) for k, r in p.rows]
        for i in range(3)
    ]
    assert sum(ranks, []) == seen[0][:3 * (640 // 3)]  # ranks split the one sequence: each row once
    assert streams.window_groups(shards) == 40  # 1 kB groups: all of them fit in the window's bytes
    big = [{**s, "bytes": 4 * (256 << 20)} for s in shards]  # 256 MiB groups: MIN_WINDOW of them
    assert streams.window_groups(big) == streams.MIN_WINDOW and streams.window_groups(big, 3) == 3


@pytest.fixture(scope="module")
def sorted_folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("sorted"), classes=CLASSES, train_per_class=30, val_per_class=1)


def _mean_distinct(batches) -> float:
    return statistics.mean(len(set(y.tolist())) for _, y in batches)


def test_a_class_sorted_pack_streams_batches_as_mixed_as_a_uniform_shuffle(sorted_folder, tmp_path, ray_session):
    """Today's failure: 128-row groups of one class each made a batch of one or two classes."""
    store = Store(str(tmp_path / "s"))
    want = expected_distinct([30] * 10, 16)  # a batch of 16 from a uniform shuffle of 10 × 30 images: ≈ 8.2
    # packed class by class (as another tool, or --keep-order, leaves it): the window shuffle mixes it
    folder, man = packed.pack(str(sorted_folder), "sortedpack", store, shard_images=64, row_group=16, seed=None)
    shards = man["splits"]["train"]["shards"]
    groups = [len(set(y)) for y in _group_labels(store.sub(folder), shards)]
    assert max(groups) <= 2  # the pack really is class-sorted
    batches = [b for e in range(3) for b in streams.stream(store.sub(folder).address, shards, 8, 16, 1, e)][:-1]
    got = _mean_distinct(b for b in batches if len(b[1]) == 16)
    assert abs(got - want) < 0.05 * want, (got, want)
    r = runner.invoke(app, ["data", "check", "sortedpack", "--storage", str(tmp_path / "s")])
    text = " ".join(r.output.split())
    assert r.exit_code == 0 and "clustered by class" in text and "Repack it shuffled" in text

    # packed shuffled (the default): every row group is already a mix, so even a window of one group mixes
    folder, man = packed.pack(str(sorted_folder), "mixedpack", store, shard_images=64, row_group=16)
    shards = man["splits"]["train"]["shards"]
    batches = [b for e in range(3) for b in streams.stream(store.sub(folder).address, shards, 8, 16, 1, e, window=1)]
    got = _mean_distinct(b for b in batches if len(b[1]) == 16)
    assert abs(got - want) < 0.05 * want, (got, want)
    r = runner.invoke(app, ["data", "check", "mixedpack", "--storage", str(tmp_path / "s")])
    assert r.exit_code == 0 and "clustered" not in r.output and "distinct classes per row group" in r.output


def _group_labels(target: Store, shards: list[dict]) -> list[list[int]]:
    import pyarrow.parquet as pq

    out = []
    for s in shards:
        with target.fs.open_input_file(target.full(s["path"])) as f:
            pf = pq.ParquetFile(f)
            out += [pf.read_row_group(g, columns=["label"]).column("label").to_pylist()
                    for g in range(pf.metadata.num_row_groups)]
    return out


def _job(world: int) -> dict:
    return {"name": "parity", "replicates": 1,
            "data": {"name": "digitsjpg", "source": "store", "image_size": 16},
            "model": {"name": "mlp", "hidden": [128]},
            "train": {"epochs": 12, "batch_size": 32, "lr": 0.1, "milestones": [8, 10], "gamma": 0.1,
                      "checkpoints": "list", "steps": [0], "log_splits": ["test"]},
            "resources": {"workers_per_trial": world}}


def _plain_loop(root, state: dict, seed: int, size: int = 16) -> float:
    """A researcher's plain loop: torchvision ImageFolder, a shuffled DataLoader, the same augmentation
    (RandomResizedCrop scale (0.1, 1), ratio (0.8, 1.25), flip), SGD with the same steps; test error."""
    import torchvision
    from torchvision.transforms import v2

    from raysweep.models import build_model

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    train_tf = v2.Compose([v2.PILToTensor(), v2.RandomResizedCrop(size, scale=(0.1, 1), ratio=(0.8, 1.25)),
                           v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    val_tf = v2.Compose([v2.PILToTensor(), v2.Resize(size * 256 // 224), v2.CenterCrop(size),
                         v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    train = torchvision.datasets.ImageFolder(str(root / "train"), transform=train_tf)
    val = torchvision.datasets.ImageFolder(str(root / "val"), transform=val_tf)
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    model = build_model(parse_job(_job(1), "test").model, (3, size, size), 10)
    model.load_state_dict(state)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [8, 10], 0.1)
    for _ in range(12):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        sched.step()
    model.eval()
    x = torch.stack([val[i][0] for i in range(len(val))])
    with torch.no_grad():
        return (model(x).argmax(1) != torch.tensor(val.targets)).float().mean().item()


@pytest.mark.timeout(900)
def test_streamed_training_learns_like_a_shuffled_dataloader(tmp_path, ray_session, capfd):
    """scikit-learn digits as a class-sorted ImageFolder of 16×16 JPEGs (1,438 / 359), packed class by
    class: one rank and two ranks (Ray Train) each end within 0.03 test error of a plain shuffled
    DataLoader loop from the same step-0 weights (the mean of 3 orders; their spread is ≈ 0.01)."""
    from safetensors.torch import load_file

    import raysweep
    from raysweep.io import paths
    from raysweep.io.manifests import read_manifests

    root = write_digits_folder(tmp_path / "digits")
    store = Store(str(tmp_path / "s"))
    packed.pack(str(root), "digitsjpg", store, seed=None)  # class-sorted: the window shuffle alone mixes it
    errors = {}
    for world in (1, 2):
        run = raysweep.open(parse_job(_job(world), "test"), storage=str(tmp_path / "s"))
        run.train(progress=False)
        manifests = read_manifests(store, run.job, 0)
        errors[world] = manifests[max(manifests)]["test_error"]
        if world == 1:
            state = load_file(store.full(paths.checkpoint(paths.run_dir(run.job.name, run.job.hash), 0, 0)))
    reference = statistics.mean(_plain_loop(root, state, seed) for seed in range(3))
    assert reference < 0.15  # the setting learns (a class-sorted stream ended near 0.67 on a harder version)
    assert abs(errors[1] - reference) < 0.03 and abs(errors[2] - reference) < 0.03, (errors, reference)
    out = capfd.readouterr()
    log = out.out + out.err
    for noise in ("PlacementGroupCleaner", "PreemptionWatcher", "Reporting training result"):
        assert noise not in log  # Ray Train's chatter stays out of the user's console


def _cap(cpus: float, local: bool) -> Capacity:
    return Capacity(cpus, 0.0, cpus, 0.0, local)


def test_ranks_leave_decoding_a_cpu_or_the_run_stops_with_the_numbers():
    two_ranks = parse_job({"name": "s", "data": {"name": "x", "source": "store"},
                           "resources": {"workers_per_trial": 2}}, "test")
    # a laptop's local Ray (2 CPUs): the two ranks shrink to 0.5 each, decoding keeps 1
    assert decoding_room(two_ranks, 1.0, _cap(2, True)) == 0.5
    assert decoding_room(two_ranks, 1.0, _cap(8, True)) == 1.0  # room enough: unchanged
    # a cluster that cannot ever leave decoding a CPU: exit 2 before training, naming the numbers and the fix
    with pytest.raises(SpecError) as e:
        decoding_room(two_ranks, 1.0, _cap(2, False))
    text = str(e.value)
    assert "hold 2 of the 2 CPUs" in text and "cpus_per_trial = 0.5" in text and "CPU node type" in text
    with pytest.raises(SpecError, match="more CPUs"):
        decoding_room(two_ranks, 1.0, _cap(1, True))  # one CPU: nothing to shrink to
    # trials at once: as many as leave decoding its CPU (3 one-rank replicates on 4 CPUs: 3; on 2: 1)
    one = parse_job({"name": "s", "replicates": 3, "data": {"name": "x", "source": "store"}}, "test")
    assert concurrent_trials(one, {"cpu": 1.0}, 3, _cap(4, True)) == 3
    assert concurrent_trials(one, {"cpu": 1.0}, 3, _cap(2, True)) == 1
    in_memory = parse_job({"name": "s", "replicates": 3}, "test")
    assert concurrent_trials(in_memory, {"cpu": 1.0}, 3, _cap(2, True)) == 3


def test_a_stalled_stream_says_why_while_it_waits(ray_session):
    import ray

    @ray.remote(num_cpus=2)
    class Hog:  # holds every CPU, as two ranks of 1 CPU on a 2-CPU machine did
        def ping(self):
            return 1

    @ray.remote(num_cpus=1)
    def decode():
        return 1

    hog = Hog.remote()
    ray.get(hog.ping.remote())
    said = []

    def batches():
        yield ray.get(decode.remote(), timeout=8)

    start = time.monotonic()
    with pytest.raises(ray.exceptions.GetTimeoutError):
        for _ in Watched(batches(), "rank 0's training stream", stall=2, say=said.append):
            pass
    ray.kill(hog)
    assert time.monotonic() - start < 30 and len(said) >= 2
    assert "0 of 2 CPUs free" in said[0] and "cpus_per_trial" in said[0]
