"""Datasets in the object store (`raysweep data pack`): an ImageFolder tree — ImageNet's train/ and
val/, or any folder of class sub-folders — as Parquet shards of encoded image bytes and int64
labels, with a manifest, so that every node of a cluster reads the data from the store instead of
its own disk:

    <storage>/datasets/<name>-<fingerprint>/manifest.json     classes, counts, every shard's sha256
    <storage>/datasets/<name>-<fingerprint>/<split>/part-<k>.parquet   index, label, path, image
                                                               (+ part-<k>.json: the shard's record)

Each split is written in one seeded global permutation of its images (`--seed`, recorded in the
manifest and part of the fingerprint), so every shard and every row group is a uniform mix of the
classes — an ImageFolder lists its images class by class, and a class-sorted row group makes a
training batch of one or two classes. Each shard holds SHARD_IMAGES images in row groups of
ROW_GROUP (the unit a training stream reads).
Shards are packed by Ray tasks (every CPU of the cluster, or of a laptop's local Ray); a shard is
done once its record is written (after the shard itself), so an interrupted pack resumes with the
shards it lacks; the manifest is written last. The fingerprint covers the source listing (names and
sizes) and the shard layout: a changed source is a new dataset.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from raysweep.connect import init_ray
from raysweep.errors import DatasetMissing, SpecError
from raysweep.io import paths
from raysweep.io.store import Store

FORMAT = 1
SHARD_IMAGES = 1024  # ImageNet: 1,252 train shards of ~110 MB
ROW_GROUP = 128  # images per row group: what one decode task reads
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "test")}  # packed split -> its source folder
SCHEMA = pa.schema([("index", pa.int64()), ("label", pa.int64()), ("path", pa.string()), ("image", pa.binary())])


@dataclass(frozen=True)
class Listing:
    source: str
    classes: tuple[str, ...]
    files: dict  # split -> [(path relative to the source, label, size)], sorted by path

    def fingerprint(self, shard_images: int, row_group: int = ROW_GROUP, seed: int | None = 0) -> str:
        """The listing and the layout; `seed` None: the listing's order (as packs made before the
        pack-time shuffle, whose fingerprints it keeps)."""
        layout = {"format": FORMAT, "classes": self.classes, "shard": shard_images, "group": row_group}
        layout.update({} if seed is None else {"shuffle": seed})
        payload = json.dumps({**layout, "files": {s: [(p, n) for p, _, n in f] for s, f in sorted(self.files.items())}})
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def list_source(source: str) -> Listing:
    """The images of an ImageFolder tree (a local folder or an s3:// / gs:// URI): SOURCE/train/<class>/…
    and SOURCE/val/<class>/… (or test/); labels are the sorted train class folders' indices."""
    store = Store(source)
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        for name in names:
            entries = [(p, size) for p, size, _ in store.list_info(name, "", recursive=True)
                       if p.lower().endswith(IMAGE_EXTENSIONS) and p.count("/") >= 2]
            if entries:
                found[split] = entries
                break
    if "train" not in found or "val" not in found:
        raise DatasetMissing(
            f"{source} is not an ImageFolder tree raysweep can pack: it needs train/<class>/<image> and "
            f"val/<class>/<image> (or test/) folders of images ({', '.join(IMAGE_EXTENSIONS)}); found "
            f"{', '.join(f'{k}/ ({len(v)} images)' for k, v in found.items()) or 'no images'}.")
    classes = tuple(sorted({p.split("/")[1] for p, _ in found["train"]}))
    unknown = sorted({p.split("/")[1] for p, _ in found["val"]} - set(classes))
    if unknown:
        raise DatasetMissing(f"{source}: {len(unknown)} class folder(s) of the validation split have no training "
                             f"folder (e.g. {unknown[:3]}); both splits need the same class names.")
    label = {c: i for i, c in enumerate(classes)}
    files = {split: [(p, label[p.split("/")[1]], size) for p, size in sorted(entries)]
             for split, entries in found.items()}
    return Listing(store.uri, classes, files)


def pack_shard(source: str, target: str, split: str, k: int, entries: list, row_group: int = ROW_GROUP) -> dict:
    """Read one shard's images from the source and store them as Parquet (a Ray task). `entries` are
    (index, path, label). Returns the shard's record, written after the shard: the commit point."""
    src, dst = Store(source), Store(target)
    images = [src.read_bytes(p) for _, p, _ in entries]
    table = pa.table({"index": [i for i, _, _ in entries], "label": [lab for _, _, lab in entries],
                      "path": [p.split("/", 1)[1] for _, p, _ in entries], "image": images}, schema=SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group)
    data = buf.getvalue()
    shard = paths.dataset_shard(split, k)
    dst.write_bytes(shard, data)
    groups = [min(row_group, len(entries) - g) for g in range(0, len(entries), row_group)]
    record = {"path": shard, "count": len(entries), "bytes": len(data), "groups": groups,
              "sha256": hashlib.sha256(data).hexdigest(), "first": entries[0][0]}
    dst.write_json(paths.dataset_shard_record(shard), record)
    return record


def pack_order(n: int, seed: int | None, split: str) -> list[int]:
    """The order a split's n images are written in: a permutation seeded by (seed, split), or the
    listing's own order for `seed` None."""
    if seed is None:
        return list(range(n))
    import numpy as np

    return np.random.default_rng([seed, *split.encode()]).permutation(n).tolist()


def plan_shards(listing: Listing, shard_images: int, seed: int | None = 0) -> list[tuple[str, int, list]]:
    """(split, k, entries) of every shard; entries are (index, path, label), index the position in the
    listing (an example's identity: its augmentation is drawn from it), in `pack_order`."""
    out = []
    for split, files in sorted(listing.files.items()):
        rows = [(i, files[i][0], files[i][1]) for i in pack_order(len(files), seed, split)]
        out += [(split, k, rows[s:s + shard_images]) for k, s in enumerate(range(0, len(rows), shard_images))]
    return out


def done_record(store: Store, split: str, k: int, verify: bool = False) -> dict | None:
    """A shard's record if the shard is stored as recorded (its size; with `verify`, its sha256)."""
    shard = paths.dataset_shard(split, k)
    try:
        record = store.read_json(paths.dataset_shard_record(shard))
    except (FileNotFoundError, ValueError):
        return None
    info = store.fs.get_file_info(store.full(shard))
    if info.size != record.get("bytes"):
        return None
    if verify and hashlib.sha256(store.read_bytes(shard)).hexdigest() != record.get("sha256"):
        return None
    return record


def manifest(name: str, listing: Listing, shard_images: int, records: dict, row_group: int = ROW_GROUP,
             seed: int | None = 0) -> dict:
    splits = {}
    for split, files in sorted(listing.files.items()):
        mine = [records[key] for key in sorted(records) if key[0] == split]
        splits[split] = {"count": len(files), "shards": mine}
    return {"format": FORMAT, "name": name, "fingerprint": listing.fingerprint(shard_images, row_group, seed),
            "source": listing.source, "classes": list(listing.classes), "shard_images": shard_images,
            "row_group": row_group, "shuffle_seed": seed, "splits": splits,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name or ""):
        raise SpecError(f"--name {name!r} is not a plain name (letters, digits, '_', '-', '.'); it names the "
                        f"dataset's folder in the store")


def pack(source: str, name: str, store: Store, shard_images: int = SHARD_IMAGES, verify: bool = False,
         progress=None, row_group: int = ROW_GROUP, seed: int | None = 0) -> tuple[str, dict]:
    """Pack SOURCE into the store as Ray tasks (one per shard still missing) on the Ray this process
    joined (a local one is started if none is); returns (the dataset's folder, its manifest). Each
    split is written in `pack_order` (`seed` None: the listing's order, class by class).
    `progress(done, total)` after each shard."""
    import ray

    check_name(name)
    listing = list_source(source)
    folder = paths.dataset_dir(name, listing.fingerprint(shard_images, row_group, seed))
    target = store.sub(folder)
    shards = plan_shards(listing, shard_images, seed)
    records = {}
    for split, k, _ in shards:
        record = done_record(target, split, k, verify)
        if record is not None:
            records[(split, k)] = record
    todo = [s for s in shards if (s[0], s[1]) not in records]
    if todo:
        init_ray()  # never Ray's implicit start: raysweep would take that Ray for a cluster it joined
    task = ray.remote(num_cpus=1, max_retries=3)(pack_shard)
    pending = {task.remote(Store(source).address, target.address, split, k, entries, row_group): (split, k)
               for split, k, entries in todo}
    if progress:
        progress(len(records), len(shards))
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(ready[0])
        records[key] = ray.get(ready[0])
        if progress:
            progress(len(records), len(shards))
    out = manifest(name, listing, shard_images, records, row_group, seed)
    target.write_json(paths.dataset_manifest(), out)
    return folder, out


def find(store: Store, name: str) -> tuple[Store, dict]:
    """(the dataset's own Store, its manifest): `name` packed in this store (the newest if packed from
    several sources), or a URI/folder of a packed dataset."""
    if "://" in name or name.startswith(("/", ".")):
        candidates = [Store(name)]
    else:
        folders = [d for d in store.list_dirs("datasets") if d.rsplit("/", 1)[-1].rsplit("-", 1)[0] == name]
        candidates = [store.sub(d) for d in folders]
    found = []
    for cand in candidates:
        try:
            found.append((cand, cand.read_json(paths.dataset_manifest())))
        except (FileNotFoundError, ValueError):
            continue
    if not found:
        stored = sorted({d.rsplit("/", 1)[-1] for d in store.list_dirs("datasets")})
        raise DatasetMissing(f"no packed dataset {name!r} in {store.url('datasets')} (packed there: "
                             f"{', '.join(stored) or 'none'}). Pack it once with `raysweep data pack SOURCE --name "
                             f"{name} --storage {store.uri}`; an interrupted pack has no manifest yet: run it again.")
    return max(found, key=lambda f: f[1].get("created", ""))


def check(store: Store, name: str) -> list[str]:
    """Every shard of a packed dataset read back against its manifest (size, sha256, row count); the
    problems found, each naming the shard (empty: the dataset is whole)."""
    target, man = find(store, name)
    problems = []
    for split, info in man["splits"].items():
        if sum(s["count"] for s in info["shards"]) != info["count"]:
            problems.append(f"{split}: the shards hold {sum(s['count'] for s in info['shards'])} images, the "
                            f"manifest says {info['count']}")
        for shard in info["shards"]:
            try:
                data = target.read_bytes(shard["path"])
            except FileNotFoundError:
                problems.append(f"{target.url(shard['path'])} is missing")
                continue
            if hashlib.sha256(data).hexdigest() != shard["sha256"]:
                problems.append(f"{target.url(shard['path'])} does not match its sha256 ({len(data)} bytes, "
                                f"recorded {shard['bytes']})")
            elif pq.ParquetFile(io.BytesIO(data)).metadata.num_rows != shard["count"]:
                problems.append(f"{target.url(shard['path'])} holds another number of rows than recorded")
    return problems
