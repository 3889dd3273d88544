"""Checkpoints trained elsewhere, as bytes: local paths or s3:// / gs:// URIs, and the digest of
their content that the run's hash covers (no torch here; ``train/external.py`` copies them in)."""
from __future__ import annotations

import functools
import hashlib
import json
import os

from raysweep.errors import SpecError
from raysweep.io.store import Store


def read_bytes(uri: str) -> bytes:
    """The bytes of a local file or an object-store URI (the Store's credentials and endpoint)."""
    if "://" in uri:
        parent, name = uri.rsplit("/", 1)
        return Store(parent).read_bytes(name)
    try:
        with open(os.path.expanduser(uri), "rb") as f:
            return f.read()
    except OSError as exc:
        raise SpecError(f"external checkpoint {uri!r} cannot be read ({exc.strerror}); check the path") from None


@functools.lru_cache(maxsize=1024)
def _file_sha(uri: str, stamp: tuple) -> str:
    return hashlib.sha256(read_bytes(uri)).hexdigest()


def file_sha(uri: str) -> str:
    stamp = ()
    if "://" not in uri and os.path.exists(os.path.expanduser(uri)):
        st = os.stat(os.path.expanduser(uri))
        stamp = (st.st_size, st.st_mtime_ns)
    return _file_sha(uri, stamp)


def external_digest(external: tuple[tuple[str, ...], ...]) -> str:
    """What the run is made of: the content (sha256) of every file, in replicate and step order."""
    return hashlib.sha256(json.dumps([[file_sha(u) for u in files] for files in external]).encode()).hexdigest()[:16]
