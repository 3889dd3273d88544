"""Text for language models: documents → tokens → windows of next-token prediction.

    pydoc   Python's own documentation (`pydoc_data.topics`: ~90 topics, ~465k characters, in every CPython)
            — the offline corpus for tests and demos
    text    data.root: a .txt file (one document), a .jsonl file (a "text" field per line), a folder of them
            (train/ and test/ subfolders, or train.* and test.* files, when the split is given; otherwise
            read in name order), or a Hugging Face `datasets` folder saved with `save_to_disk` (a
            DatasetDict with train and test, or one Dataset; a "text" column)

Without a given split, every 10th document (index 9, 19, ...) is the test split, the same on every machine.
`data.part = [p, n]` keeps the training documents whose index i (among the training ones) has i % n == p, so
that fine-tunes can see different parts of one corpus.

Tokens: `data.tokenizer` = "" is byte-level (each UTF-8 byte its id, 256 the end of a document: 257 ids); a
tokenizer.json (or a folder holding one, as Hugging Face models ship it) is read with `tokenizers`. Each split's
documents, each ended by the end-of-document token, are joined (`data.packing = "windows"`) or kept apart
(`"documents"`: no window spans two documents), and cut into windows of `data.seq_len`: x = tokens[i : i + T],
y = tokens[i + 1 : i + T + 1]; a last window is padded (x with the end token, y with -100, which no loss, error
or count includes — evaluate/sums.tokens). Causal attention never looks right, so right padding changes no real
token's prediction: no attention mask is needed.

Bits per byte divide a split's total loss by its UTF-8 bytes: `Splits.bytes_per_token` = the split's text
bytes / its target tokens.

`data.tasks`: multiple-choice tasks scored by log-likelihood, an evaluation split each (data/tasks.py).

Tokenized once per store: with a store, a `text` corpus's or a tokenizer's (pydoc in bytes takes less time to
tokenize than to read) tokenized splits (windows, bytes per token, task windows) are kept in
its split cache (`cache/<dataset>-<key>/tokenized.safetensors`), keyed by the source (pydoc: the Python version;
text: each file's path, size and time), the tokenizer's content, the windows, the part and the task files, so a
cluster's actors and later runs read one file instead of tokenizing the corpus again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from raysweep.data.images import data_root
from raysweep.data.tasks import task_examples, task_windows
from raysweep.data.types import IGNORE, DatasetMissing, Splits
from raysweep.errors import SpecError
from raysweep.io import paths
from raysweep.io.external import file_sha
from raysweep.spec import DataSpec, task_split
from raysweep.spec.job import HARNESS

BYTES = 256  # byte-level: ids 0..255 are bytes, 256 ends a document
TEST_EVERY = 10


class ByteTokenizer:
    vocab_size, eos = BYTES + 1, BYTES

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


class FileTokenizer:
    """A `tokenizers` tokenizer.json; the end-of-document token is its eos (</s>, <|endoftext|>, ...)."""

    def __init__(self, path: str):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise SpecError("data.tokenizer needs Hugging Face tokenizers: pip install 'raysweep[lm]'") from None
        file = Path(path).expanduser()
        file = file / paths.HF_TOKENIZER if file.is_dir() else file
        try:
            self.tok = Tokenizer.from_file(str(file))
        except Exception as exc:  # the library's own error types
            raise SpecError(f"data.tokenizer = {path!r} cannot be read ({type(exc).__name__}: {exc}); give a "
                            f"tokenizer.json or the folder holding one") from None
        self.vocab_size = self.tok.get_vocab_size()
        vocab = self.tok.get_vocab()
        ends = [t for t in ("<|endoftext|>", "</s>", "<eos>", "[SEP]", "<|end_of_text|>") if t in vocab]
        self.eos = vocab[ends[0]] if ends else None

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids


def tokenizer_of(spec: DataSpec):
    return FileTokenizer(spec.tokenizer) if spec.tokenizer else ByteTokenizer()


# ------------------------------------------------------------------------------------------------ documents
def pydoc_documents(spec: DataSpec) -> tuple[list[str], list[str] | None]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)], None


def _read_file(path: Path) -> list[str]:
    if path.suffix == ".jsonl":
        docs = []
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if line.strip():
                    try:
                        docs.append(str(json.loads(line)["text"]))
                    except (ValueError, KeyError, TypeError):
                        raise SpecError(f"{path}:{i + 1} is not a JSON object with a \"text\" field") from None
        return docs
    return [path.read_text(encoding="utf-8")]


def _read_files(paths: list[Path]) -> list[str]:
    return [doc for p in sorted(paths) for doc in _read_file(p)]


def _saved_dataset(root: Path):
    """(train, test or None) documents of a `datasets` folder saved with save_to_disk."""
    try:
        import datasets
    except ImportError:
        raise SpecError(f"data.root = {str(root)!r} is a Hugging Face datasets folder; reading it needs "
                        f"`datasets`: pip install 'raysweep[lm]'") from None
    saved = datasets.load_from_disk(str(root))
    if isinstance(saved, datasets.DatasetDict):
        if "train" not in saved:
            raise SpecError(f"data.root = {str(root)!r} holds splits {list(saved)}; raysweep needs a 'train' split")
        test = saved["test"]["text"] if "test" in saved else None
        return list(saved["train"]["text"]), (list(test) if test is not None else None)
    return list(saved["text"]), None


def text_documents(spec: DataSpec) -> tuple[list[str], list[str] | None]:
    """(train documents, test documents or None) of data.root."""
    root = data_root(spec)
    if not root.exists():
        raise DatasetMissing(f"data.name = 'text': {str(root)!r} does not exist; set data.root to a .txt or .jsonl "
                             f"file, a folder of them, or a datasets folder saved with save_to_disk")
    if root.is_file():
        return _read_file(root), None
    if any((root / marker).exists() for marker in paths.HF_DATASET_MARKERS):
        return _saved_dataset(root)
    kinds = ("*.txt", "*.jsonl")
    if (root / "train").is_dir():
        test = [p for k in kinds for p in (root / "test").glob(k)] if (root / "test").is_dir() else []
        return _read_files([p for k in kinds for p in (root / "train").glob(k)]), _read_files(test) or None
    named = {s: [p for k in kinds for p in root.glob(f"{s}{k[1:]}")] for s in ("train", "test")}
    if named["train"]:
        return _read_files(named["train"]), _read_files(named["test"]) or None
    files = [p for k in kinds for p in root.glob(k)]
    if not files:
        raise DatasetMissing(f"data.root = {str(root)!r} holds no .txt or .jsonl files")
    return _read_files(files), None


# -------------------------------------------------------------------------------------------------- windows
def _cut(stream: list[int], seq_len: int, pad: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(x, y) windows of one token stream, the last padded, and its number of targets."""
    tokens = torch.tensor(stream, dtype=torch.long)
    targets = max(len(tokens) - 1, 0)
    n = -(-targets // seq_len)
    x = torch.full((n * seq_len,), pad, dtype=torch.long)
    y = torch.full((n * seq_len,), IGNORE, dtype=torch.long)
    if targets:
        x[:targets], y[:targets] = tokens[:-1], tokens[1:]
    return x.view(n, seq_len), y.view(n, seq_len), targets


def windows(docs: list[str], tokenizer, seq_len: int, packing: str = "windows") -> tuple[torch.Tensor, torch.Tensor,
                                                                                          float]:
    """(x, y) windows (N, T) — of the documents joined (`windows`), or of each document on its own
    (`documents`) — every document ended by the end token, and the bytes per target token of the text."""
    pad = tokenizer.eos if tokenizer.eos is not None else 0
    streams = [tokenizer.encode(doc) + ([tokenizer.eos] if tokenizer.eos is not None else []) for doc in docs]
    if packing == "windows":
        streams = [[t for s in streams for t in s]]
    parts = [_cut(s, seq_len, pad) for s in streams]
    x = torch.cat([p[0] for p in parts]) if parts else torch.zeros((0, seq_len), dtype=torch.long)
    y = torch.cat([p[1] for p in parts]) if parts else torch.zeros((0, seq_len), dtype=torch.long)
    text_bytes = sum(len(d.encode("utf-8")) for d in docs)
    return x, y, text_bytes / max(sum(p[2] for p in parts), 1)


TEXT_CACHE = 1  # the layout of a tokenized corpus in the split cache: a new number is a new cache entry


def cached_corpus(spec: DataSpec, cache, source: list[str], documents, origin: str) -> Splits:
    """The corpus's splits tokenized once per store: with a split cache, read from it when the same source
    (`source`: what identifies the documents, cheaply — files' paths, sizes and times), tokenizer (its content),
    windows, part and task files were tokenized before, else tokenized and kept there; `documents()` reads them."""
    if cache is None or (spec.name == "pydoc" and not spec.tokenizer):  # pydoc in bytes: faster made than read
        return corpus_splits(spec, *documents(), origin=origin)
    identity = [*source, f"tokenizer:{_content_sha(spec.tokenizer) if spec.tokenizer else 'bytes'}",
                f"seq_len:{spec.seq_len}", f"packing:{spec.packing}", f"part:{list(spec.part)}",
                f"layout:{TEXT_CACHE}", *(f"task:{t}:{_content_sha(t) if Path(t).is_file() else t}" for t in spec.tasks
                                          if not t.startswith(HARNESS))]
    t = cache.get_all(spec.name, "tokenized", identity, lambda: _to_tensors(corpus_splits(spec, *documents(),
                                                                                            origin=origin)))
    t = {k: v.long() if v.dtype == torch.int32 else v for k, v in t.items()}  # tokens are kept as int32
    splits = Splits(t["train.x"], t["train.y"], t["test.x"], t["test.y"], int(t["vocab"]), origin=origin,
                    bytes_per_token={"train": float(t["bpt.train"]), "test": float(t["bpt.test"]),
                                     "train_subset": float(t["bpt.train"])})
    for entry in spec.tasks:
        name = task_split(entry)
        if entry.startswith(HARNESS):
            splits.harness[name] = (name, spec.lm_eval_include)
            continue
        labels = t[f"task.{name}.labels"]
        splits.extra[name] = (t[f"task.{name}.x"], t[f"task.{name}.y"])
        splits.choices[name] = (len(t[f"task.{name}.x"]) // len(labels), labels)
        splits.bytes_per_token[name] = float(t[f"bpt.{name}"])
    return splits


def _to_tensors(splits: Splits) -> dict[str, torch.Tensor]:
    out = {"train.x": splits.train_x, "train.y": splits.train_y, "test.x": splits.test_x, "test.y": splits.test_y,
           "vocab": torch.tensor(splits.num_classes), "bpt.train": torch.tensor(splits.bytes_per_token["train"],
                                                                               dtype=torch.float64),
           "bpt.test": torch.tensor(splits.bytes_per_token["test"], dtype=torch.float64)}
    for name, (x, y) in splits.extra.items():
        out.update({f"task.{name}.x": x, f"task.{name}.y": y, f"task.{name}.labels": splits.choices[name][1],
                    f"bpt.{name}": torch.tensor(splits.bytes_per_token[name], dtype=torch.float64)})
    return {k: (v.int() if v.dtype == torch.long else v).contiguous().clone() for k, v in out.items()}  # half the
    # bytes (vocabularies are far below 2**31); a copy each, so that no two names share one storage


def _content_sha(path: str) -> str:
    """The sha256 of a file's content (a tokenizer folder: its tokenizer.json)."""
    file = Path(path).expanduser()
    return file_sha(str(file / paths.HF_TOKENIZER if file.is_dir() else file))


def _listing(root: Path) -> list[str]:
    """What identifies data.root's documents without reading them: each file's relative path, size and time."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [f"file:{p.relative_to(root) if p != root else p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
            for p in files]


def corpus_splits(spec: DataSpec, train: list[str], test: list[str] | None, origin: str) -> Splits:
    if test is None:
        test = [d for i, d in enumerate(train) if i % TEST_EVERY == TEST_EVERY - 1]
        train = [d for i, d in enumerate(train) if i % TEST_EVERY != TEST_EVERY - 1]
    part, parts = spec.part
    train = [d for i, d in enumerate(train) if i % parts == part]
    if not train or not test:
        raise SpecError(f"data {spec.name!r} has {len(train)} training and {len(test)} test documents; both splits "
                        f"need text (check data.root and data.part)")
    tokenizer = tokenizer_of(spec)
    xtr, ytr, btr = windows(train, tokenizer, spec.seq_len, spec.packing)
    xte, yte, bte = windows(test, tokenizer, spec.seq_len, spec.packing)
    splits = Splits(xtr, ytr, xte, yte, tokenizer.vocab_size, origin=origin,
                    bytes_per_token={"train": btr, "test": bte, "train_subset": btr})
    for entry in spec.tasks:  # multiple-choice tasks: a split each (data/tasks.py)
        name = task_split(entry)
        if entry.startswith(HARNESS):  # run by lm-evaluation-harness at each point (evaluate/harness.py)
            splits.harness[name] = (name, spec.lm_eval_include)
            continue
        x, y, labels, per_token = task_windows(task_examples(entry), tokenizer, spec.seq_len)
        splits.extra[name] = (x, y)
        splits.choices[name] = (len(x) // len(labels), labels)
        splits.bytes_per_token[name] = per_token
    return splits


def pydoc(spec: DataSpec, cache=None) -> Splits:
    import sys

    return cached_corpus(spec, cache, [f"pydoc:{sys.version}"], lambda: pydoc_documents(spec), "pydoc_data.topics")


def text(spec: DataSpec, cache=None) -> Splits:
    root = data_root(spec)
    source = _listing(root) if root.exists() else []  # (a missing root: text_documents says so)
    return cached_corpus(spec, cache, source, lambda: text_documents(spec), os.fspath(spec.root))
