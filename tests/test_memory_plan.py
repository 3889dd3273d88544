"""What a sweep actor holds, and plans that cannot fit: memory-mapped checkpoints (io/checkpoints.map_tensors)
read as the loaded ones and never write their file; `eval.ends = "mapped"` gives a run the same rows as ends
on the device; `raysweep show` and `raysweep run` refuse a plan whose actor cannot hold what it must, naming
the settings that make it fit, before anything is stored."""
import hashlib

import polars as pl
import pytest
import torch

from raysweep.errors import CheckpointError
from raysweep.io.checkpoints import load_tensors, map_tensors, save_tensors
from raysweep.io.store import Store


def _state():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 7, generator=g)
    return {"w": w, "head": w, "b": torch.randn(7, generator=g).to(torch.bfloat16),
            "h": torch.randn(3, generator=g).half(), "steps": torch.arange(4), "empty": torch.zeros(0, 3)}


def test_a_mapped_checkpoint_is_the_loaded_one_and_never_writes_its_file(tmp_path):
    store = Store(str(tmp_path))
    sha = save_tensors(store, "c.safetensors", _state())
    mapped, loaded = map_tensors(store, "c.safetensors", sha), load_tensors(store, "c.safetensors", sha)
    assert set(mapped) == set(loaded) == set(_state())
    for name, t in loaded.items():
        assert mapped[name].dtype == t.dtype and mapped[name].shape == t.shape and torch.equal(mapped[name], t), name
    assert mapped["head"] is mapped["w"]  # a tied alias is its source's tensor
    mapped["w"].mul_(0)  # copy-on-write: the process's view changes, the file does not
    data = (tmp_path / "c.safetensors").read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha
    (tmp_path / "c.safetensors").write_bytes(data[:-8])
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        map_tensors(store, "c.safetensors", sha)
    with pytest.raises(CheckpointError, match="cannot be read"):
        map_tensors(store, "c.safetensors")
    with pytest.raises(CheckpointError, match="is missing"):
        map_tensors(store, "gone.safetensors", sha)


def test_a_remote_checkpoint_is_mapped_from_a_node_local_copy(s3_bucket):
    store = Store(f"s3://{s3_bucket[0]}/sweeps")
    sha = save_tensors(store, "r/c.safetensors", _state())
    mapped = map_tensors(store, "r/c.safetensors", sha)
    assert all(torch.equal(mapped[k], v) for k, v in _state().items())
    with pytest.raises(CheckpointError, match="is missing"):
        map_tensors(store, "r/gone.safetensors", "0" * 64)


transformers = pytest.importorskip("transformers")

from test_align_lm import ALIGNED, _gpt2, permuted_gpt2  # noqa: E402
from test_lm import LLAMA_8B, SEQ, _cli  # noqa: E402


@pytest.mark.slow
def test_mapped_ends_give_the_rows_of_ends_on_the_device_through_raysweep_run(tmp_path):
    """The aligned and the plain line between a GPT-2 and its shuffled copy, two actors, once with the ends on
    the device and once memory-mapped: every row's loss, error and perplexity bit for bit the same."""
    model = _gpt2(5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.save_pretrained(tmp_path / "a")
    model.load_state_dict(permuted_gpt2(state, 2, 4, seed=3))
    model.save_pretrained(tmp_path / "b")
    job = tmp_path / "pair.toml"
    job.write_text(ALIGNED.format(a=tmp_path / "a", b=tmp_path / "b", seq=SEQ, align="weights"))
    import raysweep

    tables = []
    for ends in ("device", "mapped"):
        out = tmp_path / ends
        done = _cli(["run", str(job), "--storage", str(out), "--set", "resources.eval_actors=2", "--set",
                     f"eval.ends={ends}"], tmp_path)
        assert done.returncode == 0, done.stderr[-4000:]
        points = raysweep.open(str(job), storage=str(out), overrides=[f"eval.ends={ends}"]).points.collect()
        tables.append(points.sort("sweep", "split", "alpha").select("sweep", "split", "alpha", "loss", "error",
                                                                    "perplexity"))
    assert len(tables[0]) == 3 + 4  # the test split: the plain line's 3 points, the aligned line's 4
    assert tables[0].equals(tables[1])
    assert tables[0].filter(pl.col("sweep") == "aligned")["loss"].n_unique() == 1  # flat: the check is not vacuous


def test_show_refuses_a_plan_that_does_not_fit_and_names_the_settings_that_would(tmp_path):
    """A Llama-3-8B-shaped pair in bf16 on 40 GiB actors: three copies (45 GiB) and a batch's logits do not fit,
    one model with its ends memory-mapped (15 GiB + 7.8 GiB) does — `show` prints the plan and refuses, naming
    eval.ends = "mapped" with what it would hold; with it, the plan is accepted."""
    job = tmp_path / "llama8b.toml"
    weights = 8_030_261_248 * 2  # bf16 (the rotary inverse frequencies add bytes, within the tolerance)
    job.write_text(LLAMA_8B.replace("actor_memory_gb = 80", "actor_memory_gb = 40"))
    done = _cli(["show", str(job)], tmp_path)
    assert done.returncode != 0
    message = done.stderr
    assert "this plan does not fit" in message and "may use 40.00 GiB (resources.actor_memory_gb)" in message
    logits = 8 * 2048 * 128256 * 4
    mapped = float(message.split('eval.ends = "mapped" (')[1].split(": ")[1].split(" GiB")[0])
    assert mapped == pytest.approx((weights + logits) / 2**30, abs=0.02)
    assert "lower eval.batch_size" in message and "memory per sweep actor" in done.stdout
    job.write_text(LLAMA_8B.replace("actor_memory_gb = 80", "actor_memory_gb = 40").replace(
        "batch_size = 8", "batch_size = 8\nends = \"mapped\""))
    done = _cli(["show", str(job)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "x 1 (the model; the pair's two ends memory-mapped on the host)" in done.stdout


def test_run_refuses_a_plan_that_does_not_fit_before_anything_is_stored(tmp_path):
    job = tmp_path / "llama8b.toml"
    job.write_text(LLAMA_8B.replace("actor_memory_gb = 80", "actor_memory_gb = 40"))
    done = _cli(["run", str(job), "--storage", str(tmp_path / "out")], tmp_path)
    assert done.returncode != 0
    assert "this plan does not fit" in done.stderr and 'eval.ends = "mapped"' in done.stderr
    assert not (tmp_path / "out").exists()



MERGES = """
name = "mapped_merges"
replicates = 2
external = [["{base}", "{a}"], ["{base}", "{b}"]]
[data]
name = "pydoc"
seq_len = {seq}
[model]
name = "causal_lm"
[model.config]
from = "{base}"
[[sweeps]]
name = "ta"
kind = "task_arithmetic"
alpha = {{ values = [0.5, 1.0] }}
[[sweeps]]
name = "ties"
kind = "ties"
alpha = {{ values = [0.3, 1.0] }}
[[sweeps]]
name = "dt"
kind = "dare_ties"
alpha = {{ values = [0.5] }}
"""


@pytest.mark.slow
def test_merges_from_mapped_inputs_give_the_rows_of_inputs_on_the_device(tmp_path):
    """Task arithmetic, TIES and dare_ties over two fine-tunes of a GPT-2 through `raysweep run`: with θ_pre and the
    fine-tunes memory-mapped and each merged tensor written into the model as it is made, every row is bit for bit
    the row of the inputs held on the device."""
    base = _gpt2(1)
    state = {k: v.clone() for k, v in base.state_dict().items()}
    base.save_pretrained(tmp_path / "base")
    g = torch.Generator().manual_seed(4)
    for name in ("a", "b"):
        base.load_state_dict({k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in state.items()})
        base.save_pretrained(tmp_path / name)
    job = tmp_path / "merges.toml"
    job.write_text(MERGES.format(base=tmp_path / "base", a=tmp_path / "a", b=tmp_path / "b", seq=SEQ))
    import raysweep

    tables = []
    for ends in ("device", "mapped"):
        done = _cli(["run", str(job), "--storage", str(tmp_path / ends), "--set", f"eval.ends={ends}"], tmp_path)
        assert done.returncode == 0, done.stderr[-4000:]
        merges = raysweep.open(str(job), storage=str(tmp_path / ends)).table("merges")
        tables.append(merges.sort("sweep", "merge", "lam", "split").select("sweep", "lam", "split", "loss",
                                                                           "error"))
    assert len(tables[0]) == 5 and tables[0]["loss"].n_unique() == 5
    assert tables[0].equals(tables[1])


def test_interpolate_refuses_a_pair_its_actors_cannot_hold(tmp_path):
    """`raysweep interpolate` checks the plan as `run` does: two GPT-2 folders on actors given 0.1 MiB each."""
    model = _gpt2(2)
    model.save_pretrained(tmp_path / "a")
    model.save_pretrained(tmp_path / "b")
    done = _cli(["interpolate", "--model", "causal_lm", "--data", "pydoc", "--data-arg", f"seq_len={SEQ}",
                 str(tmp_path / "a"), str(tmp_path / "b"), "--alpha", "0:1:3", "--storage", str(tmp_path / "out"),
                 "--set", "resources.actor_memory_gb=0.0001", "--no-progress", "--no-report"], tmp_path)
    assert done.returncode != 0
    assert "this plan does not fit" in done.stderr and "(resources.actor_memory_gb)" in done.stderr
    assert not (tmp_path / "out").exists()
