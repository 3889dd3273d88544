"""The split cache: decoded evaluation splits kept in the Store, read by every further process."""
from __future__ import annotations

from typing import Callable

import torch

from raysweep.io import paths


class SplitCache:
    """Decoded evaluation splits kept in the Store (``cache/<dataset>-<fingerprint>/<split>``) as
    uint8 safetensors with a sha256, so a cluster decodes a dataset once, not once per GPU actor.

    The fingerprint covers every file of the split (relative path and size) and the transform, so a
    changed dataset is decoded anew. A damaged cache file is decoded again and rewritten."""

    def __init__(self, store):
        self.store = store
        self.last_source = ""  # "cache" or "decoded": what the last get() did (tests, logs)

    def get(self, dataset: str, split: str, identity: list, decode: Callable[[], tuple[torch.Tensor, torch.Tensor]]):
        t = self.get_all(dataset, split, identity, lambda: dict(zip("xy", decode())))
        return t["x"], t["y"]

    def get_all(self, dataset: str, split: str, identity: list,
                decode: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The named tensors `decode` makes, read from the cache when a file of the same identity is there (a
        tokenized text dataset keeps all its splits in one file)."""
        import hashlib
        import json

        from raysweep.io.checkpoints import CheckpointError, load_tensors, save_tensors

        key = hashlib.sha256(json.dumps(sorted(identity)).encode()).hexdigest()[:16]
        path = paths.split_cache(dataset, key, split)
        meta = paths.split_cache_record(dataset, key, split)
        if self.store.exists(meta):
            try:
                t = load_tensors(self.store, path, self.store.read_json(meta)["sha256"])
                self.last_source = "cache"
                return t
            except (CheckpointError, KeyError, ValueError) as exc:
                import logging

                logging.getLogger("raysweep").warning("split cache %s is unusable (%s); decoding again",
                                                      self.store.url(path), exc)
        t = decode()
        sha = save_tensors(self.store, path, t)
        first = t.get("x", next(iter(t.values())))
        self.store.write_json(meta, {"dataset": dataset, "split": split, "sha256": sha, "n": len(first),
                                     "shape": list(first.shape), "dtype": str(first.dtype), "tensors": sorted(t)})
        self.last_source = "decoded"
        return t
