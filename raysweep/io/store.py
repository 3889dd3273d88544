"""Store: every byte raysweep reads or writes goes through this one object over ``pyarrow.fs``.

The root is a local folder (default ``./raysweep-results``, or ``$RAYSWEEP_STORAGE``) or an object
store URI (``s3://bucket/prefix``, ``gs://bucket/prefix``). S3 uses the standard credential chain
(environment, ~/.aws, instance roles) and ``$AWS_ENDPOINT_URL`` (or ``?endpoint_override=`` in the
URI) for S3-compatible stores. Paths given to the methods are relative to the root and use ``/``.
Writes are atomic: a reader never sees half a file (a local write is a rename; an object-store PUT
is all or nothing).
"""
from __future__ import annotations

import errno
import io
import json
import os
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raysweep.errors import StorageFull, StoreError, WriteMismatch

DEFAULT_ROOT = "./raysweep-results"

# This process's requests to its stores and the bytes they moved (the rehearsal's report; each process counts
# its own: the sweep's actors return theirs per item).
IO = {"requests": 0, "bytes_read": 0, "bytes_written": 0}


def full_message(storage: str, what: str) -> str:
    return (f"no space left in the storage {storage} (or its quota is reached) while writing {what}. Free some space "
            f"there or give another --storage; everything finished before is stored: run the same command again "
            f"to resume from there.")


def _count(requests: int, read: int = 0, written: int = 0) -> None:
    IO["requests"] += requests
    IO["bytes_read"] += read
    IO["bytes_written"] += written




def resolve_root(storage: str | None) -> str:
    return storage or os.environ.get("RAYSWEEP_STORAGE") or DEFAULT_ROOT


def _s3(uri: str) -> tuple[pafs.FileSystem, str, dict]:
    """S3 with the standard credential chain; $AWS_ENDPOINT_URL for S3-compatible stores.

    Returns the filesystem, the bucket/prefix, and the options in effect (endpoint, scheme, region),
    so that other processes open the same store whatever their own environment says."""
    parsed = urlparse(uri)
    query = dict(parse_qsl(parsed.query))
    endpoint = (query.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL_S3")
                or os.environ.get("AWS_ENDPOINT_URL"))
    # An endpoint that accepts connections but never answers fails in ~2 x 20 s, not minutes; the
    # request timeout bounds the wait for each response (not a whole transfer).
    kwargs = {"connect_timeout": 5.0, "request_timeout": 20.0,
              "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=2)}
    options = {}
    region = query.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = options["region"] = region
    if endpoint:
        ep = urlparse(endpoint if "://" in endpoint else f"{query.get('scheme', 'https')}://{endpoint}")
        scheme = query.get("scheme", ep.scheme or "https")
        kwargs.update(endpoint_override=ep.netloc, scheme=scheme)
        options.update(endpoint_override=ep.netloc, scheme=scheme)
    return pafs.S3FileSystem(**kwargs), f"{parsed.netloc}{parsed.path}", options


class Store:
    def __init__(self, root: str | None = None):
        if root is not None and not str(root).strip():
            raise StoreError("--storage is empty; give a folder or an s3:// / gs:// URI (or leave it out for "
                             f"$RAYSWEEP_STORAGE, else {DEFAULT_ROOT}).")
        self.uri = resolve_root(root)
        if "://" not in self.uri:
            self.uri = str(Path(self.uri).expanduser().resolve())
        self._options: dict = {}
        try:
            if self.uri.startswith("s3://"):
                self.fs, self.base, self._options = _s3(self.uri)
            else:
                self.fs, self.base = pafs.FileSystem.from_uri(self.uri)
                if "?" in self.uri and "://" in self.uri:
                    self._options = dict(parse_qsl(self.uri.split("?", 1)[1]))
        except (pa.ArrowInvalid, OSError, ValueError) as exc:
            raise StoreError(f"cannot open storage {self.uri!r}: {exc}. Give a local folder or an "
                             f"s3:// / gs:// URI with --storage or $RAYSWEEP_STORAGE.") from None
        self.base = self.base.rstrip("/")
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        self.uri = self.uri.split("?", 1)[0] if not self.is_local else self.uri
        if self.is_local and Path(self.base).exists() and not Path(self.base).is_dir():
            raise StoreError(f"storage {self.uri} is a file, not a folder: give a folder (it is created if missing) "
                             f"or an s3:// / gs:// URI with --storage or $RAYSWEEP_STORAGE.")

    def check(self, write: bool = True) -> None:
        """Fail fast, before any work: the root must be reachable and (with `write`) writable. With
        write=False nothing is written: the read-only commands' check of an object store."""
        if self.is_local and not write:
            return
        if self.is_local:  # the nearest existing folder must take a new folder; nothing is left behind here
            path = Path(self.base)
            while not path.exists():
                path = path.parent
            problem = "is not a folder" if not path.is_dir() else "" if os.access(path, os.W_OK | os.X_OK) else \
                "is not writable"
            if not problem:
                probe = path / f".raysweep-probe-{uuid.uuid4().hex}"
                try:  # os.access says yes to root everywhere; only a try tells (/proc, a read-only mount)
                    probe.mkdir()
                    probe.rmdir()
                except OSError as exc:
                    problem = f"cannot hold a new folder ({exc.strerror})"
            if problem:
                raise StoreError(f"storage {self.uri} cannot be used: {path} {problem}. Check the path and its "
                                 f"permissions, or give another --storage; nothing was written.")
            return
        bucket = self.base.split("/", 1)[0]
        probe = f".raysweep-probe-{uuid.uuid4().hex}"
        try:
            if not self.is_local:
                info = self.fs.get_file_info(bucket)
                if info.type == pafs.FileType.NotFound:
                    raise StoreError(f"storage {self.uri}: the bucket {bucket!r} does not exist. Create it "
                                     f"(e.g. `aws s3 mb s3://{bucket}`) or fix the URI given to --storage.")
            if write:
                self.write_bytes(probe, b"ok")
                self.delete(probe)
            else:
                self.fs.get_file_info(pafs.FileSelector(self.full(""), allow_not_found=True))
        except StoreError:
            raise
        except (OSError, pa.ArrowException) as exc:
            text = str(exc).lower()
            hint = ("check the endpoint ($AWS_ENDPOINT_URL) and the network" if any(
                        w in text for w in ("connect", "curl", "timeout", "timed out")) else
                    "check the credentials ($AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY, ~/.aws, the instance "
                    f"role) and that they may {'write' if write else 'read'} there" if not self.is_local
                    else "check the path and its permissions")
            raise StoreError(f"storage {self.uri} cannot be used: {str(exc).strip()}. {hint[0].upper()}{hint[1:]}; "
                             f"nothing was written.") from None

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

    @property
    def address(self) -> str:
        """What another process passes to Store() to open this same store: the URI with the options in
        effect here (endpoint, scheme, region), whether they came from the URI or the environment."""
        return f"{self.uri}?{urlencode(sorted(self._options.items()))}" if self._options else self.uri

    def __reduce__(self):  # ship to Ray workers by address; each process opens its own filesystem
        return (Store, (self.address,))

    def sub(self, path: str) -> "Store":
        """The store rooted at `path` inside this one, with the same endpoint, scheme and region."""
        if self.is_local:
            return Store(self.full(path))
        query = f"?{urlencode(sorted(self._options.items()))}" if self._options else ""
        return Store(f"{self.url(path)}{query}")

    def full(self, path: str) -> str:
        return f"{self.base}/{path}" if path else self.base

    def url(self, path: str) -> str:
        """A URI a person can paste: the root URI joined with `path`."""
        return f"{self.uri.rstrip('/')}/{path}"

    # ------------------------------------------------------------ reads
    def exists(self, path: str) -> bool:
        _count(1)
        return self.fs.get_file_info(self.full(path)).type != pafs.FileType.NotFound

    def read_bytes(self, path: str) -> bytes:
        try:
            with self.fs.open_input_stream(self.full(path)) as f:
                data = f.read()
            _count(1, read=len(data))
            return data
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url(path)} does not exist") from None

    def read_json(self, path: str):
        return json.loads(self.read_bytes(path))

    def list(self, prefix: str, suffix: str = "", recursive: bool = False) -> list[str]:
        """Relative paths of the files under `prefix` whose names end with `suffix`, sorted."""
        _count(1)
        sel = pafs.FileSelector(self.full(prefix), allow_not_found=True, recursive=recursive)
        start = len(self.base) + 1
        return sorted(i.path[start:] for i in self.fs.get_file_info(sel)
                      if i.type == pafs.FileType.File and i.path.endswith(suffix)
                      and "/." not in i.path[start:])

    def list_info(self, prefix: str, suffix: str = "", recursive: bool = False) -> list[tuple[str, int, int]]:
        """(relative path, size, mtime in ns) of the files under `prefix` ending with `suffix`, sorted:
        enough to notice that a file changed without reading it."""
        _count(1)
        sel = pafs.FileSelector(self.full(prefix), allow_not_found=True, recursive=recursive)
        start = len(self.base) + 1
        return sorted((i.path[start:], i.size or 0, i.mtime_ns or 0) for i in self.fs.get_file_info(sel)
                      if i.type == pafs.FileType.File and i.path.endswith(suffix) and "/." not in i.path[start:])

    def list_dirs(self, prefix: str) -> list[str]:
        """Relative paths of the folders directly under `prefix`, sorted."""
        _count(1)
        sel = pafs.FileSelector(self.full(prefix), allow_not_found=True)
        start = len(self.base) + 1
        return sorted(i.path[start:] for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.Directory)

    def read_table(self, paths: list[str]) -> pa.Table:
        """The files' rows in order, their schemas unified (a column some lack is null there). One Arrow
        dataset scan: the footers and row groups are read in C++ threads, not file by file in Python (a
        compaction of 37,500 one-row files spends a fraction of the driver time)."""
        if not paths:
            return pa.table({})
        import pyarrow.dataset as ds

        factory = ds.FileSystemDatasetFactory(self.fs, [self.full(p) for p in paths], ds.ParquetFileFormat())
        table = factory.finish(factory.inspect(fragments=None)).to_table()
        _count(len(paths), read=table.nbytes)
        return table

    def dataset(self, paths: list[str]):
        import pyarrow.dataset as ds
        return ds.dataset([self.full(p) for p in paths], format="parquet", filesystem=self.fs)

    # ------------------------------------------------------------ writes
    def write_bytes(self, path: str, data: bytes, tries: int = 3) -> None:
        """Atomic write (a temporary sibling, then a rename; object stores put whole objects), checked:
        the object is read back as the size that was sent, else written again, then WriteMismatch (an
        OSError: a transient error to the sweep, retried per item). A proxy or server that stores
        something else than the body (an S3-compatible server keeping a raw aws-chunked body) is caught
        here, not at aggregation."""
        target = self.full(path)
        for attempt in range(1, tries + 1):
            try:
                self._put(target, data)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "no space left" in str(exc).lower():
                    raise StorageFull(errno.ENOSPC, full_message(self.uri, self.url(path))) from None
                raise
            size = self.fs.get_file_info(target).size
            _count(2, written=len(data))
            if size == len(data):
                return
            if attempt < tries:
                time.sleep(0.2 * attempt)
        raise WriteMismatch(f"{self.url(path)} reads back as {size} bytes after writing {len(data)} ({tries} tries): "
                            f"the store keeps something else than what was sent")

    def _put(self, target: str, data: bytes) -> None:
        parent = target.rsplit("/", 1)[0]
        if self.is_local:
            self.fs.create_dir(parent, recursive=True)
            tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, target)
        else:
            with self.fs.open_output_stream(target) as f:
                f.write(data)

    def write_json(self, path: str, obj) -> None:
        self.write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())

    def write_table(self, path: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        self.write_bytes(path, buf.getvalue())

    def delete(self, path: str) -> None:
        _count(2)
        info = self.fs.get_file_info(self.full(path))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.full(path))
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.full(path))
