"""`raysweep data ...`: datasets packed into the store (`data pack`) and checked (`data check`)."""
from __future__ import annotations

from typing import Optional

import typer

from raysweep.cli_common import AddressOpt, StorageOpt, _err, _guard
from raysweep.connect import init_ray, now_ms, worker_deaths
from raysweep.progress import CountProgress, warn

data_app = typer.Typer(help="Datasets in the object store: pack an ImageFolder tree once, then every node streams it.",
                       no_args_is_help=True)


@data_app.command("pack")
@_guard
def pack(
    source: str = typer.Argument(
        ..., help="An ImageFolder tree: SOURCE/train/<class>/*, SOURCE/val/<class>/* (a folder, or s3:// / gs://)"
    ),
    name: str = typer.Option(..., "--name", help='The dataset\'s name in jobs (data.name, data.source = "store")'),
    storage: Optional[str] = StorageOpt,
    address: Optional[str] = AddressOpt,
    shard_images: int = typer.Option(1024, "--shard-images", help="Images per Parquet shard"),
    row_group: int = typer.Option(
        128, "--row-group", help="Images per Parquet row group (what a stream reads as a unit)"
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the global permutation each split is written in"),
    keep_order: bool = typer.Option(
        False, "--keep-order", help="Write the images in the source's order (class by class) instead: not for training"
    ),
    verify: bool = typer.Option(False, "--verify", help="Re-hash shards already packed (repairs damaged ones)"),
    progress: bool = typer.Option(True, help="Show progress"),
) -> None:
    """Pack SOURCE into <storage>/datasets/<name>-<fingerprint>/ as Parquet shards, each split written in one
    seeded random order (every row group a mix of the classes), with Ray tasks on every CPU of the cluster
    (or a local Ray); resumable.  Example: raysweep data pack /data/imagenet --name imagenet
    --storage s3://bucket/sweeps --address auto"""
    if not 1 <= shard_images <= 1 << 20:
        _err(f"--shard-images {shard_images} is not in [1, 1048576]", 2)
    if not 1 <= row_group <= 1 << 20:
        _err(f"--row-group {row_group} is not in [1, 1048576] (a shard's row groups: at most --shard-images)", 2)
    if not 0 <= seed < 2**32:
        _err(f"--seed {seed} is not in [0, 2**32)", 2)
    from raysweep.data.packed import pack as pack_
    from raysweep.io.store import Store

    store = Store(storage)
    store.check()
    init_ray(address, log_to_driver=False)  # the tasks print nothing; a crashed worker is reported below instead
    started = now_ms()
    with CountProgress(f"pack {name}: shards", enabled=progress) as bar:
        folder, man = pack_(source, name, store, shard_images, verify, progress=bar.update, row_group=row_group,
                            seed=None if keep_order else seed)
    for dead in worker_deaths(started):  # every shard is stored and recorded (sha256); the crash is still news
        warn(f"a Ray worker (pid {dead['pid']}) crashed during the pack: {dead['why']} — its shard was packed again "
             f"by a retry and recorded with its sha256 (`raysweep data check {name}` re-reads every shard). Its "
             f"log: {dead['log']}")
    counts = ", ".join(f"{s} {v['count']:,} images in {len(v['shards'])} shards" for s, v in man["splits"].items())
    typer.echo(f"packed {name}: {len(man['classes'])} classes; {counts}\n  {store.url(folder)}\n"
               f"  use it with --set data.source=store --set data.name={name} (jobs read it from this --storage)")


@data_app.command("check")
@_guard
def check(name: str = typer.Argument(..., help="A packed dataset's name, or its folder/URI"),
          storage: Optional[str] = StorageOpt) -> None:
    """Read every shard of a packed dataset back against its manifest (sha256, rows), and measure how well
    its row groups mix the classes.  Example: raysweep data check imagenet --storage s3://bucket/sweeps"""
    from raysweep.data.mix import class_mix
    from raysweep.data.packed import check as check_
    from raysweep.data.packed import find
    from raysweep.io.store import Store

    store = Store(storage)
    target, man = find(store, name)
    problems = check_(store, name)
    if problems:
        shown = "\n  - ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        _err(f"packed dataset {name} at {target.uri} is damaged:\n  - {shown}\nRepair: run `raysweep data pack "
             f"{man['source']} --name {name} --storage {store.uri} --verify` (it re-packs exactly the damaged "
             f"shards); until then runs that read it fail.", 1)
    total = sum(len(v["shards"]) for v in man["splits"].values())
    typer.echo(f"{name}: {total} shards, {sum(v['count'] for v in man['splits'].values()):,} images — all match "
               f"their manifest ({target.uri})")
    mixes = class_mix(target, man)
    for mix in mixes:
        typer.echo(f"  class mix, {mix.line()}")
    clustered = [m.split for m in mixes if m.clustered and m.split == "train"]
    if clustered:
        typer.echo(
            f"warning: the training split of {name} is clustered by class (its row groups hold far fewer classes "
            f"than a shuffled split's): it was packed in the source's class-by-class order. Training still mixes "
            f"batches through the stream's window shuffle (data.shuffle_window), but a batch then holds at most "
            f"as many classes as the window has row groups. Repack it shuffled: `raysweep data pack "
            f"{man['source']} --name {name} --storage {store.uri}` (a new folder, which jobs then read: the newest "
            f"pack of a name; the old one is kept).",
            err=True,
        )
