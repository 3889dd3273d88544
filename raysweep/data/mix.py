"""How well a packed dataset's row groups mix the classes (`raysweep data check`): a row group is what
a training stream reads as a unit, so a dataset whose groups each hold one or two classes (packed in
an ImageFolder's class-by-class order, by another tool or before raysweep shuffled at pack time)
needs the stream's window shuffle to mix its batches, and mixes best repacked.

The measure is the mean number of distinct classes in a row group against its expectation for the
same group sizes under a uniform shuffle of the split (hypergeometric: a class of K of N images is
absent from a group of n with probability C(N−K, n) / C(N, n)).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import pyarrow.parquet as pq

from raysweep.data.packed import find
from raysweep.io.store import Store

CLUSTERED = 0.75  # a split whose groups hold fewer than this share of the expected distinct classes


@dataclass(frozen=True)
class Mix:
    split: str
    groups: int
    distinct: float  # mean distinct classes per row group
    expected: float  # the same under a uniform shuffle

    @property
    def clustered(self) -> bool:
        return self.expected >= 1.5 and self.distinct < CLUSTERED * self.expected

    def line(self) -> str:
        return (f"{self.split}: {self.distinct:.2f} distinct classes per row group on average over {self.groups} "
                f"groups (a uniform shuffle: {self.expected:.2f})")


def expected_distinct(class_counts: list[int], n: int) -> float:
    """E[distinct classes] in n images drawn without replacement from classes of these sizes."""
    total = sum(class_counts)
    if n >= total:
        return float(sum(1 for k in class_counts if k))

    def log_choose(a: int, b: int) -> float:
        return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1) if 0 <= b <= a else -math.inf

    whole = log_choose(total, n)
    return sum(1.0 - math.exp(log_choose(total - k, n) - whole) for k in class_counts if k)


def group_labels(store: Store, shard: dict) -> list[list[int]]:
    """The labels of each row group of a shard (the label column only)."""
    with store.fs.open_input_file(store.full(shard["path"])) as f:
        pf = pq.ParquetFile(f)
        return [pf.read_row_group(g, columns=["label"]).column("label").to_pylist()
                for g in range(pf.metadata.num_row_groups)]


def class_mix(store: Store, man: dict) -> list[Mix]:
    """Each split's Mix, reading only the label column of every row group."""
    out = []
    for split, info in man["splits"].items():
        groups = [labels for shard in info["shards"] for labels in group_labels(store, shard)]
        counts = list(Counter(lab for g in groups for lab in g).values())
        sizes = Counter(len(g) for g in groups)
        expected = {n: expected_distinct(counts, n) for n in sizes}
        if groups:
            out.append(Mix(split, len(groups), sum(len(set(g)) for g in groups) / len(groups),
                           sum(expected[n] * c for n, c in sizes.items()) / len(groups)))
    return out


def training_mix_warning(store: Store, name: str) -> str:
    """A warning when the training split of the packed dataset `name` is clustered by class (packed in the
    source's order: `--keep-order`, or before packs were shuffled); "" otherwise. A shuffled pack (its
    manifest names the seed) is not read."""
    target, man = find(store, name)
    if man.get("shuffle_seed") is not None:
        return ""
    train = [m for m in class_mix(target, {"splits": {"train": man["splits"]["train"]}}) if m.clustered]
    if not train:
        return ""
    return (f"the training split of {name} is clustered by class (packed in the source's class-by-class order; "
            f"`raysweep data check {name}` measures it): batches mix at most as many classes as the stream's "
            f"window has row groups (data.shuffle_window), which slows and can stall learning. Repack it shuffled: "
            f"`raysweep data pack {man['source']} --name {name} --storage {store.uri}`.")
