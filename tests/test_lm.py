"""Language models (#44): tied parameters stored once, Hugging Face folders as checkpoints, text windows, token-level
sums — each number against a plain `transformers` / torch computation written here."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from raysweep.data.registry import load_splits  # noqa: E402
from raysweep.errors import SpecError  # noqa: E402
from raysweep.evaluate.sums import count, split_sums, training_loss  # noqa: E402
from raysweep.io.checkpoints import load_tensors, save_tensors, tie, ties  # noqa: E402
from raysweep.io.external import file_sha  # noqa: E402
from raysweep.io.store import Store  # noqa: E402
from raysweep.spec import DataSpec  # noqa: E402
from raysweep.train.formats import read_state  # noqa: E402

SEQ = 32


def gpt2(seed: int, n_embd: int = 32, vocab: int = 257, positions: int = SEQ):
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=n_embd, n_layer=2, n_head=2,
                                     bos_token_id=None, eos_token_id=None)
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(config).eval()


def plain_windows(docs: list[str], seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Byte tokens, 256 after each document, cut into windows the plain way (a loop over positions)."""
    stream = []
    for d in docs:
        stream += list(d.encode()) + [256]
    xs, ys = [], []
    for start in range(0, len(stream) - 1, seq):
        x = stream[start:start + seq]
        y = stream[start + 1:start + seq + 1]
        xs.append(x + [256] * (seq - len(x)))
        ys.append(y + [-100] * (seq - len(y)))
    return torch.tensor(xs), torch.tensor(ys)


def plain_loss(model, x, y, batch: int = 16) -> tuple[float, float]:
    """Token-level cross-entropy and next-token error over the valid tokens, from the model's ModelOutput."""
    total, wrong, n = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = model(input_ids=x[i:i + batch]).logits
            yb = y[i:i + batch]
            total += F.cross_entropy(logits.flatten(0, 1).double(), yb.flatten(), ignore_index=-100,
                                     reduction="sum").item()
            valid = yb != -100
            wrong += int(((logits.argmax(-1) != yb) & valid).sum())
            n += int(valid.sum())
    return total / n, wrong / n


# ------------------------------------------------------------------------------------------ tied parameters
def test_a_tied_parameter_is_stored_once_and_tied_again_on_load(tmp_path):
    from safetensors import safe_open

    model = gpt2(0)
    state = model.state_dict()
    assert ties(state) == {"lm_head.weight": "transformer.wte.weight"}
    store = Store(str(tmp_path))
    sha = save_tensors(store, "ckpt.safetensors", state)
    with safe_open(str(tmp_path / "ckpt.safetensors"), framework="pt") as f:
        assert "lm_head.weight" not in f.keys() and "transformer.wte.weight" in f.keys()
    back = load_tensors(store, "ckpt.safetensors", sha)
    assert set(back) == set(state)
    assert back["lm_head.weight"].data_ptr() == back["transformer.wte.weight"].data_ptr()
    fresh = gpt2(1)
    fresh.load_state_dict(back)
    x = torch.randint(0, 256, (2, SEQ))
    assert torch.equal(fresh(input_ids=x).logits, model(input_ids=x).logits)


def test_a_model_without_ties_is_stored_as_it_was(tmp_path):
    state = {"a": torch.ones(3), "b": torch.ones(3)}  # equal values, two tensors: not tied
    store = Store(str(tmp_path))
    save_tensors(store, "x.safetensors", state)
    back = load_tensors(store, "x.safetensors")
    assert back["a"].data_ptr() != back["b"].data_ptr() and torch.equal(back["a"], back["b"])


# ------------------------------------------------------------------------------------- Hugging Face folders
@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for seed in (0, 1):
        model = gpt2(seed, n_embd=64)
        model.save_pretrained(root / f"seed{seed}", max_shard_size="200KB")
        out[seed] = (root / f"seed{seed}", model)
    return out


def test_a_sharded_huggingface_folder_is_read_whole_with_its_tied_head(folders):
    folder, model = folders[0]
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) >= 2  # sharded: the index and its shards are read
    assert "lm_head.weight" not in index["weight_map"]  # save_pretrained omits the tied copy
    expected = model.state_dict()
    for source in (str(folder), str(folder / "model.safetensors.index.json")):
        state = tie(read_state(source), ties(expected))
        assert set(state) == set(expected)
        assert all(torch.equal(state[n], expected[n]) for n in expected)


def test_a_bf16_folder_keeps_its_dtype_when_read(tmp_path):
    model = gpt2(0).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "bf16")
    state = read_state(str(tmp_path / "bf16"))
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.bfloat16}


def test_a_folder_with_a_missing_shard_is_named(tmp_path, folders):
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(folders[0][0], folder)
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(SpecError, match=shard.name):
        read_state(str(folder))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SpecError, match="save_pretrained"):
        read_state(str(empty))


def test_a_folders_content_is_its_digest(tmp_path, folders):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(folders[0][0], folder)
    before = file_sha(str(folder))
    assert before == file_sha(str(folders[0][0]))  # the content, not the path
    assert before != file_sha(str(folders[1][0]))
    shard = sorted(folder.glob("model-*.safetensors"))[-1]
    shard.write_bytes(shard.read_bytes()[:-1] + b"\0")
    assert file_sha(str(folder)) != before


# -------------------------------------------------------------------------------------------- text windows
def test_pydoc_windows_are_the_documentation_in_bytes():
    from pydoc_data.topics import topics

    data = load_splits(DataSpec(name="pydoc", seq_len=SEQ))
    docs = [topics[k] for k in sorted(topics)]
    test_docs = docs[9::10]
    train_docs = [d for i, d in enumerate(docs) if i % 10 != 9]
    x, y = plain_windows(test_docs, SEQ)
    assert torch.equal(data.test_x, x) and torch.equal(data.test_y, y)
    x, y = plain_windows(train_docs, SEQ)
    assert torch.equal(data.train_x, x) and torch.equal(data.train_y, y)
    assert data.num_classes == 257
    targets = int((data.test_y != -100).sum())
    assert data.bytes_per_token["test"] == pytest.approx(sum(len(d.encode()) for d in test_docs) / targets)
    half = load_splits(DataSpec(name="pydoc", seq_len=SEQ, part=(1, 2)))
    assert torch.equal(half.train_x, plain_windows(train_docs[1::2], SEQ)[0])


def test_text_folders_jsonl_and_saved_datasets_read_alike(tmp_path):
    docs = [f"document {i}: " + "lorem ipsum dolor sit amet " * (i + 1) for i in range(12)]
    (tmp_path / "txt").mkdir()
    for i, d in enumerate(docs):
        (tmp_path / "txt" / f"{i:02d}.txt").write_text(d)
    (tmp_path / "split").mkdir()
    (tmp_path / "split" / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[:9]))
    (tmp_path / "split" / "test.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[9:]))
    folder = load_splits(DataSpec(name="text", root=str(tmp_path / "txt"), seq_len=16))
    assert torch.equal(folder.test_x, plain_windows(docs[9::10], 16)[0])
    given = load_splits(DataSpec(name="text", root=str(tmp_path / "split"), seq_len=16))
    assert torch.equal(given.test_y, plain_windows(docs[9:], 16)[1])
    assert torch.equal(given.train_y, plain_windows(docs[:9], 16)[1])
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": docs[:9]}),
                          "test": datasets.Dataset.from_dict({"text": docs[9:]})}).save_to_disk(str(tmp_path / "hf"))
    saved = load_splits(DataSpec(name="text", root=str(tmp_path / "hf"), seq_len=16))
    assert torch.equal(saved.train_x, given.train_x) and torch.equal(saved.test_y, given.test_y)
    (tmp_path / "bad.jsonl").write_text('{"txt": 1}\n')
    with pytest.raises(SpecError, match="bad.jsonl:1"):
        load_splits(DataSpec(name="text", root=str(tmp_path / "bad.jsonl")))


def test_a_tokenizer_file_tokenizes_the_text(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    docs = [f"the cat {i} sat on the mat " * 3 for i in range(20)]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(docs, trainers.WordLevelTrainer(special_tokens=["[UNK]", "</s>"]))
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    data = load_splits(DataSpec(name="text", root=str(tmp_path / "corpus.jsonl"), tokenizer=str(tmp_path), seq_len=8))
    assert data.num_classes == tok.get_vocab_size()
    eos = tok.token_to_id("</s>")
    stream = [t for d in docs[9::10] for t in tok.encode(d, add_special_tokens=False).ids + [eos]]
    assert data.test_x.flatten()[:len(stream) - 1].tolist() == stream[:-1]
    assert data.test_y.flatten()[:len(stream) - 1].tolist() == stream[1:]


def test_a_tokenized_corpus_is_kept_in_the_store_and_read_back_until_its_sources_change(tmp_path):
    """With a store, a text corpus and its tasks are tokenized once: a second load reads the cache file and gives
    the same splits as tokenizing without a store; a changed corpus file, tokenizer or window is tokenized anew."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from raysweep.data.cache import SplitCache
    from raysweep.data.text import text
    from raysweep.io.store import Store

    docs = [f"the cat {i} sat on the mat " * 3 for i in range(20)]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(docs, trainers.WordLevelTrainer(special_tokens=["[UNK]", "</s>"]))
    tok.save(str(tmp_path / "tokenizer.json"))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    task = tmp_path / "mc.jsonl"
    task.write_text("".join(json.dumps({"context": "the cat", "choices": ["sat", "mat"], "label": i % 2}) + "\n"
                            for i in range(6)))
    spec = DataSpec(name="text", root=str(corpus), tokenizer=str(tmp_path), seq_len=8, tasks=(str(task),))
    plain = text(spec)
    cache = SplitCache(Store(str(tmp_path / "store")))
    sources = []
    for _ in range(2):
        cached = text(spec, cache)
        sources.append(cache.last_source)
        for field in ("train_x", "train_y", "test_x", "test_y"):
            assert torch.equal(getattr(cached, field), getattr(plain, field)), field
            assert getattr(cached, field).dtype == torch.long
        assert cached.bytes_per_token == plain.bytes_per_token and cached.num_classes == plain.num_classes
        assert cached.choices["mc"][0] == 2 and torch.equal(cached.choices["mc"][1], plain.choices["mc"][1])
        assert all(torch.equal(a, b) for a, b in zip(cached.extra["mc"], plain.extra["mc"]))
    assert sources == ["decoded", "cache"]
    assert list((tmp_path / "store" / "cache").glob("text-*/tokenized.safetensors"))
    text(dataclasses.replace(spec, seq_len=16), cache)
    assert cache.last_source == "decoded"
    corpus.write_text(corpus.read_text() + json.dumps({"text": "one more document"}) + "\n")
    longer = text(spec, cache)
    assert cache.last_source == "decoded" and longer.bytes_per_token["train"] != plain.bytes_per_token["train"]


# ------------------------------------------------------------------------------------------ token-level sums
def test_sums_over_tokens_divide_by_valid_tokens_and_skip_padding():
    model = gpt2(3)
    docs = ["short", "a somewhat longer document of text", "x" * 50]
    x, y = plain_windows(docs, SEQ)
    assert (y == -100).any()  # the last window is padded
    want_loss, want_err = plain_loss(model, x, y)

    def logits_only(inp):
        return model(input_ids=inp).logits

    for forward in (logits_only, model):  # a tensor, or transformers' ModelOutput (its .logits)
        with torch.no_grad():
            sums = split_sums(forward, x, y, 2)
        assert count(y) == int((y != -100).sum())
        assert sums[0].item() / count(y) == pytest.approx(want_loss, rel=1e-6)  # fp32 logits
        assert sums[1].item() / count(y) == pytest.approx(want_err, abs=0)
    with torch.no_grad():
        assert training_loss(model(input_ids=x), y).item() == pytest.approx(want_loss, rel=1e-5)


def test_the_built_in_model_is_transformers_gpt2_with_its_seeded_init():
    from raysweep.models import build_model
    from raysweep.spec import ModelSpec

    spec = ModelSpec(name="causal_lm", config=json.dumps({"model_type": "gpt2", "n_embd": 32, "n_layer": 2,
                                                          "n_head": 2}))
    a, b = build_model(spec, (SEQ,), 257, seed=5), build_model(spec, (SEQ,), 257, seed=5)
    assert type(a).__name__ == "GPT2LMHeadModel"
    assert a.config.vocab_size == 257 and a.config.n_positions == SEQ
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    x = torch.randint(0, 257, (2, SEQ))
    assert a(x).shape == (2, SEQ, 257)  # logits, not a ModelOutput
    with pytest.raises(SpecError, match="vocab_size"):
        build_model(ModelSpec(name="causal_lm", config=json.dumps({"vocab_size": 100})), (SEQ,), 257)


# ---------------------------------------------------------------------------------------- through the CLI
def _cli(args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    quiet = ["--no-progress"] if args[0] == "run" else []
    return subprocess.run([sys.executable, "-m", "raysweep", *args, *quiet], capture_output=True, text=True,
                          env=env, timeout=900, cwd=cwd)


@pytest.mark.slow
def test_a_line_between_two_huggingface_folders_equals_a_plain_transformers_loop(tmp_path, folders):
    """`raysweep run` on a job whose external checkpoints are two sharded save_pretrained folders, two actors:
    every point is the plain loop's loss of the interpolated transformers model, in loss, error and perplexity."""
    job = tmp_path / "pair.toml"
    job.write_text(f"""
name = "hf_pair"
replicates = 2
external = [["{folders[0][0]}"], ["{folders[1][0]}"]]
[data]
name = "pydoc"
seq_len = {SEQ}
[model]
name = "causal_lm"
[model.config]
from = "{folders[0][0]}"
[eval]
batch_size = 64
[[sweeps]]
name = "i5"
kind = "final_to_final"
alpha = {{ start = 0.0, stop = 1.0, num = 3 }}
""")
    done = _cli(["run", str(job), "--storage", str(tmp_path / "out"), "--set", "resources.eval_actors=2"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    import raysweep

    points = raysweep.open(str(job), storage=str(tmp_path / "out")).points.collect().sort("alpha")
    assert len(points) == 3
    from pydoc_data.topics import topics

    docs = [topics[k] for k in sorted(topics)]
    x, y = plain_windows(docs[9::10], SEQ)
    a, b = folders[0][1].state_dict(), folders[1][1].state_dict()
    model = gpt2(9, n_embd=64)
    for row in points.iter_rows(named=True):
        alpha = row["alpha"]
        model.load_state_dict({n: (1 - alpha) * a[n] + alpha * b[n] for n in a})
        loss, err = plain_loss(model, x, y)
        assert row["loss"] == pytest.approx(loss, rel=1e-5), alpha
        assert row["error"] == pytest.approx(err, abs=1e-12)
        assert row["perplexity"] == pytest.approx(torch.tensor(loss).exp().item(), rel=1e-5)
        text_bytes = sum(len(d.encode()) for d in docs[9::10])
        assert row["bits_per_byte"] == pytest.approx(loss * int((y != -100).sum()) / text_bytes / 0.6931471805599453,
                                                     rel=1e-5)
    # the same line in one command: the model's config comes from the first folder
    done = _cli(["interpolate", "--model", "causal_lm", "--data", "pydoc", "--data-arg", f"seq_len={SEQ}",
                 str(folders[0][0]), str(folders[1][0] / "model.safetensors.index.json"), "--alpha", "0:1:3",
                 "--storage", str(tmp_path / "one"), "--no-progress", "--no-report"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "test loss: barrier" in done.stdout
    run_id = next(w for w in done.stdout.split() if w.startswith("interpolate/"))
    line = raysweep.open(run_id, storage=str(tmp_path / "one")).points.collect().sort("alpha")
    assert line["loss"].to_list() == pytest.approx(points["loss"].to_list(), rel=1e-6)


TRAINED = """
name = "tinylm_short"
replicates = 2
[data]
name = "pydoc"
seq_len = 32
[model]
name = "causal_lm"
[model.config]
model_type = "gpt2"
n_embd = 32
n_layer = 2
n_head = 2
[train]
optimizer = "adamw"
lr = 0.003
batch_size = 64
epochs = 1
checkpoints = "list"
steps = [0, 20]
log_splits = ["test"]
[eval]
train_examples = 64
[[sweeps]]
name = "i1"
kind = "init_to_final"
alpha = { start = 0.0, stop = 1.0, num = 3 }
splits = ["train_subset", "test"]
"""


@pytest.mark.slow
def test_a_tied_gpt2_trains_through_tune_and_its_checkpoints_stay_tied(tmp_path):
    """A causal_lm job trains through Tune (the step-0 checkpoint of a tied model once failed), each checkpoint
    holds the tied embedding once, and the I1 line's ends are the plain loop's numbers for the weights read from
    the checkpoint files with safetensors alone."""
    job = tmp_path / "short.toml"
    job.write_text(TRAINED)
    done = _cli(["run", str(job), "--storage", str(tmp_path / "out"), "--set", "resources.eval_actors=2"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    from safetensors.torch import load

    import raysweep

    run = raysweep.open(str(job), storage=str(tmp_path / "out"))
    points = run.points.collect()
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=257, n_positions=32, n_embd=32, n_layer=2, n_head=2, bos_token_id=None, eos_token_id=None)).eval()
    from pydoc_data.topics import topics

    docs = [topics[k] for k in sorted(topics)]
    x, y = plain_windows(docs[9::10], 32)
    checkpoints = run.checkpoints.collect()
    final = max(checkpoints["step"])
    assert sorted(set(checkpoints["step"])) == [0, 20, final]
    for r in checkpoints.filter(checkpoints["step"] != 20).iter_rows(named=True):
        state = load(run.store.read_bytes(r["path"]))
        assert "lm_head.weight" not in state  # stored once
        state["lm_head.weight"] = state["transformer.wte.weight"]
        model.load_state_dict(state)
        loss, _ = plain_loss(model, x, y)
        alpha = 0.0 if r["step"] == 0 else 1.0
        row = points.filter((points["replicate_a"] == r["replicate"]) & (points["alpha"] == alpha)
                            & (points["split"] == "test"))
        assert row["loss"].item() == pytest.approx(loss, rel=1e-5)
    test_rows = points.filter(points["split"] == "test")
    ends = [test_rows.filter(test_rows["alpha"] == a).sort("replicate_a")["loss"] for a in (0.0, 1.0)]
    assert (ends[1] < ends[0]).all()  # trained


def test_a_bf16_folder_builds_a_bf16_model_whose_checkpoints_stay_bf16(tmp_path):
    """A config that says bf16 (a bf16 folder's, via `from`) builds the model in bf16, so what enters the store
    keeps the source dtype; the state read for it is the folder's, tensor for tensor."""
    from raysweep.models import build_model
    from raysweep.spec import ModelSpec
    from raysweep.train.external import mismatch

    source = gpt2(4).to(torch.bfloat16)
    source.config.dtype = torch.bfloat16
    source.save_pretrained(tmp_path / "bf16")
    model = build_model(ModelSpec(name="causal_lm", config=json.dumps({"from": str(tmp_path / "bf16")})), (SEQ,), 257)
    expected = model.state_dict()
    assert {t.dtype for t in expected.values() if t.is_floating_point()} == {torch.bfloat16}
    state = tie(read_state(str(tmp_path / "bf16")), ties(expected))
    assert mismatch("bf16", state, expected) == ""
    assert all(torch.equal(state[n], t) for n, t in source.state_dict().items())


MERGES = """
name = "tinylm_dare"
replicates = 2
[data]
name = "pydoc"
seq_len = 32
part = [{part}, 2]
tasks = ["pydoc_cloze"]
[model]
name = "causal_lm"
[model.config]
from = "{base}"
[train]
init_from = "{base}"
optimizer = "adamw"
lr = 0.003
batch_size = 64
epochs = 1
checkpoints = "list"
steps = [0]
log_splits = ["test"]
[[sweeps]]
name = "dare"
kind = "dare"
alpha = {{ values = [0.5] }}
splits = ["test", "pydoc_cloze"]
[[sweeps]]
name = "slerp"
kind = "slerp"
alpha = {{ values = [0.5] }}
"""


@pytest.mark.slow
def test_show_counts_what_a_merge_actor_holds(tmp_path):
    """A merge sweep's actor holds the model, θ_pre and every fine-tune (each merged tensor is written into the model
    as it is made) and the float64 work of merging the largest tensor (the embedding: TIES stacks, trims and sorts
    the k task vectors, (3k + 2) x 8 bytes an entry); task arithmetic also keeps Σ_k τ_k in float64 — the largest
    sweep of the job is the line `show` prints. With eval.ends = "mapped" the inputs stay in the page cache: the
    model once, and the plan that did not fit an 80 GB actor does."""
    body = LLAMA_8B.replace('kind = "final_to_final"\nalpha = { start = 0.0, stop = 1.0, num = 26 }',
                            'kind = "ties"\nalpha = { values = [0.5] }')
    assert body != LLAMA_8B
    largest, floats, logits = 128256 * 4096, 8_030_261_248, 8 * 2048 * 128256 * 4 / 2**30
    ta = '\n[[sweeps]]\nname = "ta"\nkind = "task_arithmetic"\n'
    for extra, ends, copies, what, work in (
            ("", "device", 4, "the model, θ_pre and the 2 fine-tunes", 8 * largest * 8),
            (ta, "device", 4, "the model, θ_pre and the 2 fine-tunes", 8 * largest * 4 + 8 * floats),
            ("", "mapped", 1, "the model; θ_pre and the 2 fine-tunes memory-mapped on the host", 8 * largest * 8)):
        job = tmp_path / "merge8b.toml"
        job.write_text(body.replace("batch_size = 8", f'batch_size = 8\nends = "{ends}"') + extra)
        done = _cli(["show", str(job)], tmp_path)
        line = next(x for x in done.stdout.splitlines() if "memory per sweep actor" in x)
        assert f"x {copies} ({what})" in line
        weights = float(line.split("parameters = ")[1].split(" GiB")[0])
        shown = float(line.split(f"x {copies} ({what}) + ")[1].split(" GiB of float64 merge work")[0])
        assert shown == pytest.approx(work / 2**30, abs=0.01)
        total = float(line.rsplit("= ", 1)[1].split(" GiB")[0])
        assert total == pytest.approx(copies * weights + work / 2**30 + logits, abs=0.05)
        if ends == "device":  # 4 copies of 15 GiB and the work do not fit an 80 GB GPU: printed, then refused
            assert done.returncode != 0
            assert "this plan does not fit" in done.stderr and 'eval.ends = "mapped"' in done.stderr
        else:
            assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_merges_of_lm_finetunes_export_as_folders_that_from_pretrained_loads(tmp_path, folders):
    """Fine-tunes of one Hugging Face base (a folder as train.init_from), merged by DARE and by SLERP through the
    CLI: the tied embedding is one parameter with one mask, and the exported merges give the table's loss — DARE's
    as a sharded Hugging Face folder that `from_pretrained` loads (tied weights stored once, the index, the
    weights cast by --dtype), SLERP's as a safetensors file."""
    from safetensors.torch import load_file

    import raysweep

    job = tmp_path / "dare.toml"
    job.write_text(MERGES.format(base=folders[0][0], part=1))
    done = _cli(["run", str(job), "--storage", str(tmp_path / "out"), "--set", "resources.eval_actors=2"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    from pydoc_data.topics import topics

    docs = [topics[k] for k in sorted(topics)]
    rows = raysweep.open(str(job), storage=str(tmp_path / "out")).table("merges").filter(pl.col("split") == "test")

    out = tmp_path / "dare-0.5"
    done = _cli(["export", str(job), "--storage", str(tmp_path / "out"), "--sweep", "dare", "--lam", "0.5",
                 "--out", str(out), "--shard-size", "60KB"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    files = sorted(p.name for p in out.iterdir())
    assert "model.safetensors.index.json" in files and len([f for f in files if f.endswith(".safetensors")]) > 1
    stored = [n for f in out.glob("*.safetensors") for n in load_file(str(f))]
    assert "transformer.wte.weight" in stored and "lm_head.weight" not in stored  # as save_pretrained stores it
    assert json.loads((out / "raysweep_export.json").read_text())["lam"] == "0.5"
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # tied again on loading
    loss, err = plain_loss(model, *plain_windows(docs[9::10], SEQ))
    row = rows.filter(pl.col("merge") == "dare")
    assert row["loss"].item() == pytest.approx(loss, rel=1e-5)
    assert row["error"].item() == pytest.approx(err, abs=1e-12)
    from test_tasks import _plain  # a multiple-choice task along the merge: the plain loop over its choices

    from raysweep.data.tasks import pydoc_cloze

    cloze = raysweep.open(str(job), storage=str(tmp_path / "out")).table("merges").filter(
        pl.col("merge") == "dare", pl.col("split") == "pydoc_cloze")
    task_loss, task_err, task_se = _plain(model, pydoc_cloze(), SEQ)
    assert cloze["n_examples"].item() == 200 and cloze["error"].item() == pytest.approx(task_err, abs=1e-12)
    assert cloze["loss"].item() == pytest.approx(task_loss, rel=1e-5)
    assert cloze["error_se"].item() == pytest.approx(task_se, rel=1e-9)

    half = tmp_path / "dare-bf16"
    done = _cli(["export", str(job), "--storage", str(tmp_path / "out"), "--sweep", "dare", "--lam", "0.5",
                 "--out", str(half), "--dtype", "bf16"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert all(t.dtype == torch.bfloat16 for t in load_file(str(half / "model.safetensors")).values())
    assert transformers.AutoModelForCausalLM.from_pretrained(str(half)).dtype == torch.bfloat16
    again = _cli(["export", str(job), "--storage", str(tmp_path / "out"), "--sweep", "dare", "--lam", "0.5",
                  "--out", str(half)], tmp_path)
    assert again.returncode != 0 and "not an empty folder" in again.stderr  # nothing overwritten

    file = tmp_path / "slerp.safetensors"
    done = _cli(["export", str(job), "--storage", str(tmp_path / "out"), "--sweep", "slerp", "--lam", "0.5",
                 "--pair", "0,1", "--out", str(file)], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    merged = load_file(str(file))
    assert torch.equal(merged["lm_head.weight"], merged["transformer.wte.weight"])
    model = transformers.GPT2LMHeadModel.from_pretrained(str(folders[0][0])).eval()
    model.load_state_dict(merged)
    loss, _ = plain_loss(model, *plain_windows(docs[9::10], SEQ))
    assert rows.filter(pl.col("merge") == "slerp")["loss"].item() == pytest.approx(loss, rel=1e-5)


LLAMA_8B = """
name = "llama8b_pair"
replicates = 2
[data]
name = "pydoc"
seq_len = 2048
[model]
name = "causal_lm"
[model.config]
model_type = "llama"
hidden_size = 4096
intermediate_size = 14336
num_hidden_layers = 32
num_attention_heads = 32
num_key_value_heads = 8
vocab_size = 128256
max_position_embeddings = 8192
dtype = "bfloat16"
[eval]
batch_size = 8
[resources]
actor_memory_gb = 80  # one 80 GB GPU per actor, wherever `show` runs
[[sweeps]]
name = "i5"
kind = "final_to_final"
alpha = { start = 0.0, stop = 1.0, num = 26 }
"""


def test_show_counts_an_8b_pair_without_building_it(tmp_path):
    """`raysweep show` of a Llama-3-8B-shaped pair: its parameters (Meta's published 8,030,261,248), the bytes a
    sweep actor holds (bf16 weights x 3 and one batch's fp32 logits) — counted on the meta device, in seconds."""
    job = tmp_path / "llama8b.toml"
    job.write_text(LLAMA_8B)
    done = _cli(["show", str(job)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if "memory per sweep actor" in x)
    assert "8,030,261,248 parameters" in line
    logits = 8 * 2048 * 128256 * 4
    assert f"{logits / 2**30:,.2f} GiB of fp32 logits" in line
    weights_gib = float(line.split("parameters = ")[1].split(" GiB")[0])
    assert weights_gib == pytest.approx(8_030_261_248 * 2 / 2**30, abs=0.01)  # bf16; the rotary buffers are bytes
    total = float(line.rsplit("= ", 1)[1].split(" GiB")[0])
    assert total == pytest.approx(3 * weights_gib + logits / 2**30, abs=0.02)


@pytest.mark.slow
def test_the_built_in_finetunes_job_merges_lm_finetunes_with_perplexity(tmp_path):
    """`raysweep run tinylm_finetunes`, shortened: three fine-tunes of the shipped Hugging Face base (a folder as
    train.init_from and as the model's config); the merges table has perplexity, and the uniform soup's row is
    the plain loop's loss of the mean of the three checkpoint files."""
    short = ["--set", "train.epochs=1", "--set", "eval.train_examples=64",
             "--set", "sweeps.base_to_finetune.alpha.num=3", "--set", "sweeps.finetune_to_finetune.alpha.num=3"]
    done = _cli(["run", "tinylm_finetunes", "--storage", str(tmp_path / "out"), "--set", "resources.eval_actors=2",
                 *short], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    from safetensors.torch import load

    import raysweep

    run = raysweep.open("tinylm_finetunes", storage=str(tmp_path / "out"), overrides=[s for s in short if s != "--set"])
    merges = run.table("merges")
    assert {"perplexity", "bits_per_byte"} <= set(merges.columns)
    finals = run.checkpoints.collect().filter(lambda_final := (run.checkpoints.collect()["step"] > 0))
    assert lambda_final.sum() == 3
    states = [load(run.store.read_bytes(p)) for p in finals["path"]]
    mean = {n: sum(s[n] for s in states) / 3 for n in states[0]}
    mean["lm_head.weight"] = mean["transformer.wte.weight"]
    model = transformers.GPT2LMHeadModel.from_pretrained(str(Path(raysweep.__file__).parent / "jobs" / "tinylm_base"))
    model.eval().load_state_dict(mean)
    from pydoc_data.topics import topics

    docs = [topics[k] for k in sorted(topics)]
    loss, err = plain_loss(model, *plain_windows(docs[9::10], 64))
    soup = merges.filter((merges["merge"] == "uniform") & (merges["split"] == "test"))
    assert soup["loss"].item() == pytest.approx(loss, rel=1e-5)
    assert soup["perplexity"].item() == pytest.approx(float(torch.tensor(loss).exp()), rel=1e-5)


def test_a_config_and_a_tokenizer_are_hashed_by_content_not_by_path(tmp_path, folders):
    """model.config's `from` and data.tokenizer name files: the run is the same wherever those files lie (an
    installed package and a clone, two machines), and another file is another run."""
    import shutil

    from raysweep.jobs import load_job

    for name in ("a", "b"):
        shutil.copytree(folders[0][0], tmp_path / name)
    shutil.copytree(folders[1][0], tmp_path / "other")
    (tmp_path / "a" / "tokenizer.json").write_text("{}")
    (tmp_path / "b" / "tokenizer.json").write_text("{}")

    def job(folder):
        text = TRAINED.replace('model_type = "gpt2"\nn_embd = 32\nn_layer = 2\nn_head = 2', f'from = "{folder}"')
        file = tmp_path / f"job-{Path(folder).name}.toml"
        file.write_text(text.replace('seq_len = 32', f'seq_len = 32\ntokenizer = "{folder}"'))
        return load_job(str(file))

    a, b = job(tmp_path / "a"), job(tmp_path / "b")
    assert a.model.config != b.model.config and a.hash == b.hash
    (tmp_path / "b" / "tokenizer.json").write_text('{"version": "1.0"}')
    assert job(tmp_path / "b").hash != a.hash
    config = json.loads((tmp_path / "other" / "config.json").read_text())
    config["n_embd"] = 32
    (tmp_path / "other" / "config.json").write_text(json.dumps(config))
    (tmp_path / "other" / "tokenizer.json").write_text("{}")
    assert job(tmp_path / "other").hash != a.hash
    with pytest.raises(SpecError, match="no config.json there"):
        job(tmp_path / "missing")


def test_documents_packing_never_spans_two_documents():
    docs = ["short", "a somewhat longer document of text", "x" * 50]
    from raysweep.data.text import ByteTokenizer, windows

    x, y, _ = windows(docs, ByteTokenizer(), 16, "documents")
    want_x, want_y = zip(*(plain_windows([d], 16) for d in docs))
    assert torch.equal(x, torch.cat(want_x)) and torch.equal(y, torch.cat(want_y))
    assert len(x) == sum(-(-len(d.encode()) // 16) for d in docs)  # each document's own windows
