"""The "train_subset" split: a fixed, seeded subset of the training split evaluated whole like "test" —
also where the training split is streamed (ImageNet folders, packed datasets). The same examples on every
process and every rerun; its loss is a plain loop's over the same examples."""
import hashlib

import numpy as np
import polars as pl
import pytest
import torch
import torchvision.transforms as T
from conftest import run_in_process
from datafiles import write_image_folder, write_imagenet
from PIL import Image

from raysweep.data import packed, streams
from raysweep.data.cache import SplitCache
from raysweep.data.registry import load_splits
from raysweep.data.subset import subset_indices
from raysweep.io.checkpoints import load_tensors
from raysweep.io.store import Store
from raysweep.models import build_model
from raysweep.spec import DataSpec, parse_job
from raysweep.spec.hashing import sweep_hash
from raysweep.sweep.planner import plan

RAW = {"name": "subset", "replicates": 2, "model": {"name": "mlp", "hidden": [16]},
       "train": {"epochs": 2, "batch_size": 64, "checkpoints": "list", "steps": [0]},
       "eval": {"train_examples": 300},
       "sweeps": [{"name": "i1", "kind": "init_to_final", "alpha": {"num": 3}, "splits": ["test", "train_subset"]}]}


def digest(x: torch.Tensor, y: torch.Tensor) -> str:
    return hashlib.sha256(x.contiguous().numpy().tobytes() + y.numpy().tobytes()).hexdigest()


def test_the_subset_is_n_distinct_training_examples_in_order_and_all_of_them_past_the_split():
    a, b = subset_indices(1797, 300), subset_indices(1797, 300)
    assert torch.equal(a, b) and len(a) == 300 and len(set(a.tolist())) == 300
    assert bool((a[1:] > a[:-1]).all()) and 0 <= int(a[0]) and int(a[-1]) < 1797
    assert a.float().mean().item() == pytest.approx(898, abs=120)  # spread over the split, not its head
    assert torch.equal(subset_indices(50, 80), torch.arange(50))


def test_its_loss_is_a_plain_loop_over_the_same_training_examples(tmp_path):
    run = run_in_process(RAW, tmp_path / "s")
    data = load_splits(run.job.data)
    idx = subset_indices(data.n_train, 300)
    item = plan(run.job, run.store, [0, 1])[0]  # replicate 0: init -> final
    model = build_model(run.job.model, data.in_shape, data.num_classes)
    model.load_state_dict(load_tensors(run.store, item.b.path))
    model.eval()
    total, errors = 0.0, 0
    with torch.no_grad():
        for i in idx.tolist():  # one example at a time: no batching in the reference
            out = model(data.prepare(data.train_x[i:i + 1]))
            total += torch.nn.functional.cross_entropy(out, data.train_y[i:i + 1], reduction="sum").item()
            errors += int(out.argmax(1).item() != data.train_y[i].item())
    got = run.points.filter(pl.col("replicate_a") == 0, pl.col("alpha") == 1.0,
                            pl.col("split") == "train_subset").collect()
    assert got["loss"][0] == pytest.approx(total / 300, rel=1e-5)
    assert got["error"][0] == pytest.approx(errors / 300, abs=1e-9) and got["n_examples"][0] == 300
    assert set(run.curves.collect()["split"]) == {"test", "train_subset"}


def test_the_size_is_in_the_sweep_hash_and_set_in_one_place():
    job = parse_job(RAW)
    other = parse_job({**RAW, "eval": {"train_examples": 400}})
    assert job.sweeps[0].train_examples == 300 and sweep_hash(job.sweeps[0]) != sweep_hash(other.sweeps[0])
    plain = parse_job({**RAW, "sweeps": [{**RAW["sweeps"][0], "splits": ["test"]}]})
    assert plain.sweeps[0].train_examples == 0  # a sweep without the split keeps its hash
    assert job.sweeps[0].split_sizes({"train": 1257, "test": 540}) == [540, 300]
    assert job.sweeps[0].split_sizes({"train": 200, "test": 540}) == [540, 200]
    from raysweep.errors import SpecError

    with pytest.raises(SpecError, match="eval.train_examples"):
        parse_job({**RAW, "sweeps": [{**RAW["sweeps"][0], "train_examples": 10}]})
    with pytest.raises(SpecError, match="train_subset"):  # the streamed training split: the fix names the subset
        parse_job({**RAW, "data": {"name": "imagenet"}, "sweeps": [{**RAW["sweeps"][0], "splits": ["train"]}]})
    parse_job({**RAW, "data": {"name": "imagenet"}})  # and the subset is allowed there


def test_imagenet_folders_decode_the_chosen_training_images_once_into_the_store(tmp_path):
    write_imagenet(tmp_path / "data", train_per_class=7)
    spec = DataSpec(name="imagenet", root=str(tmp_path / "data"))
    data = load_splits(spec, Store(str(tmp_path / "store")))
    files = sorted((tmp_path / "data" / "train").rglob("*.JPEG"))  # ImageFolder's order: class, then file
    idx = subset_indices(len(files), 10).tolist()
    x, y = data.train_subset(10)
    view = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
    assert x.shape == (10, 3, 224, 224) and x.dtype == torch.uint8
    for row, i in enumerate(idx):
        assert torch.equal(x[row], view(Image.open(files[i]).convert("RGB")))
        assert int(y[row]) == ["n01440764", "n01443537", "n01484850"].index(files[i].parent.name)
    cache = SplitCache(Store(str(tmp_path / "store")))  # a second process reads the decoded subset back
    fresh = load_splits.__wrapped__(spec, None)
    again = fresh.train_rows  # the same loader without a cache decodes the same bytes
    assert digest(*again(10)) == digest(x, y)
    from raysweep.data.images import imagenet

    cached = imagenet(spec, cache=cache)
    assert digest(*cached.train_subset(10)) == digest(x, y) and cache.last_source == "cache"


@pytest.mark.parametrize("seed", [0, None])
def test_a_pack_gives_the_same_subset_to_every_process_and_every_rerun(tmp_path, ray_session, seed):
    import ray

    source = write_image_folder(tmp_path / "src", train_per_class=9)
    store = Store(str(tmp_path / "s"))
    _, man = packed.pack(str(source), "toy", store, shard_images=8, row_group=4, seed=seed)
    spec = DataSpec(name="toy", source="store", image_size=32)
    listing = sorted(p.relative_to(source / "train").as_posix() for p in (source / "train").rglob("*.*"))
    if seed is None:  # the listing's order: the rows at the seeded positions
        chosen = [listing[i] for i in subset_indices(len(listing), 11).tolist()]
    else:  # shuffled: the pack's first 11 rows, in the permutation the pack records
        perm = np.random.default_rng([seed, *b"train"]).permutation(len(listing)).tolist()
        chosen = [listing[i] for i in perm[:11]]
    x, y = streams.packed_splits(spec, store).train_subset(11)
    for row, path in enumerate(chosen):
        assert torch.equal(x[row], streams.eval_view((source / "train" / path).read_bytes(), 32)), path
        assert int(y[row]) == ["cat", "dog", "eel"].index(path.split("/")[0])

    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import tests/

    @ray.remote(num_cpus=1)
    def in_a_worker(address: str) -> str:
        s = streams.packed_splits(spec, Store(address), SplitCache(Store(address)))
        return digest(*s.train_subset(11))

    assert ray.get([in_a_worker.remote(store.address) for _ in range(2)]) == [digest(x, y)] * 2
    assert len(store.list("cache", suffix="train_subset-11.safetensors", recursive=True)) == 1
