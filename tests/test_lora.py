"""LoRA adapters as fine-tunes: a PEFT adapter folder over its base is the model peft's own `merge_and_unload()`
makes, and through `raysweep run` its task vector merges and its line are evaluated like any fine-tune's."""
import json
import math

import polars as pl
import pytest
import torch

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from test_lm import SEQ, _cli, plain_loss, plain_windows  # noqa: E402

from raysweep.errors import SpecError  # noqa: E402
from raysweep.train.formats import format_of, read_state  # noqa: E402


def _gpt2_base(folder, seed=0):
    config = transformers.GPT2Config(vocab_size=257, n_positions=SEQ, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=None, eos_token_id=None)
    torch.manual_seed(seed)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def _adapter(base, out, seed, **lora):
    """A LoRA adapter of `base` saved by peft, its A and B drawn at random (B is 0 at peft's init); returns the
    fine-tune as peft's merge_and_unload() makes it."""
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base))
    wrapped = peft.get_peft_model(model, peft.LoraConfig(**lora))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "modules_to_save" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    wrapped.save_pretrained(str(out))
    merged = wrapped.merge_and_unload()
    return {k: v.detach().clone() for k, v in merged.state_dict().items()}


def test_a_gpt2_adapter_is_the_model_peft_merges(tmp_path):
    """GPT-2's Conv1D stores weights (in, out): peft's fan_in_fan_out transposes ΔW, and so must we."""
    base = _gpt2_base(tmp_path / "base")
    want = _adapter(base, tmp_path / "ad", 1, r=4, lora_alpha=16, target_modules=["c_attn", "c_proj"],
                    fan_in_fan_out=True)
    assert format_of(str(tmp_path / "ad")) == "peft"
    got = read_state(str(tmp_path / "ad"))
    base_state = read_state(str(base))
    moved = [n for n in base_state if not torch.equal(base_state[n], want[n])]
    assert len(moved) == 6  # c_attn, attn.c_proj and mlp.c_proj of 2 blocks: the test sees a real change
    for name, tensor in base_state.items():
        assert torch.allclose(got[name], want[name], rtol=1e-5, atol=1e-6), name


def test_a_llama_adapter_with_rslora_patterns_embeddings_and_saved_modules(tmp_path):
    """Linear layers (out, in), rsLoRA's α/√r, a per-module α and rank, LoRA on the embedding, a module saved whole."""
    config = transformers.LlamaConfig(vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=SEQ,
                                      tie_word_embeddings=False, bos_token_id=None, eos_token_id=None,
                                      pad_token_id=None)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "base")
    want = _adapter(tmp_path / "base", tmp_path / "ad", 2, r=4, lora_alpha=8, use_rslora=True,
                    target_modules=["q_proj", "v_proj", "embed_tokens"], rank_pattern={"v_proj": 2},
                    alpha_pattern={"q_proj": 3}, modules_to_save=["lm_head"])
    got = read_state(str(tmp_path / "ad"))
    for name in read_state(str(tmp_path / "base")):
        assert torch.allclose(got[name], want[name], rtol=1e-5, atol=1e-6), name
    assert not torch.equal(got["lm_head.weight"], read_state(str(tmp_path / "base"))["lm_head.weight"])
    # kept in a store as its factors over a stored base, it reads back as the same fine-tune, bit for bit
    from raysweep.io.checkpoints import load_tensors, map_tensors, save_sized
    from raysweep.io.store import Store
    from raysweep.train.external import low_rank

    store = Store(str(tmp_path / "store"))
    expected = {n: t for n, t in got.items()}
    state, (own, meta) = low_rank(store, "run", str(tmp_path / "ad"), expected, {})
    assert all(torch.equal(state[n], got[n]) for n in got)  # the fine-tune as the folder reads
    assert "model.embed_tokens.weight::lora_B" in own and "lm_head.weight" in own  # an update, a module saved whole
    assert sum(t.numel() for t in own.values()) * 1.5 < sum(t.numel() for t in got.values())  # lm_head is whole
    sha, _ = save_sized(store, "run/ad.safetensors", own, meta)
    for read in (load_tensors, map_tensors):
        back = read(store, "run/ad.safetensors", sha)
        assert set(back) == set(got) and all(torch.equal(back[n], got[n]) for n in got), read.__name__


def test_adapters_that_cannot_be_read_say_why(tmp_path):
    base = _gpt2_base(tmp_path / "base")
    _adapter(base, tmp_path / "ad", 1, r=2, lora_alpha=4, target_modules=["c_attn"], fan_in_fan_out=True)
    config = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    (tmp_path / "ad" / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "gpt2"}))
    with pytest.raises(SpecError, match="base_model_name_or_path.*local Hugging Face folder"):
        read_state(str(tmp_path / "ad"))
    (tmp_path / "ad" / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(SpecError, match="DoRA"):
        read_state(str(tmp_path / "ad"))
    (tmp_path / "ad" / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "IA3"}))
    with pytest.raises(SpecError, match="IA3"):
        read_state(str(tmp_path / "ad"))


JOB = """
name = "lora_merges"
replicates = 2
external = [["{base}", "{a}"], ["{base}", "{b}"]]
[data]
name = "pydoc"
seq_len = 32
[model]
name = "causal_lm"
[model.config]
from = "{base}"
[[sweeps]]
name = "between"
kind = "final_to_final"
alpha = {{ values = [0.0, 0.5, 1.0] }}
[[sweeps]]
name = "ta"
kind = "task_arithmetic"
alpha = {{ values = [1.0] }}
"""


@pytest.mark.slow
def test_lora_adapters_as_finetunes_through_raysweep_run(tmp_path):
    """Two adapters of one base as the replicates' last checkpoints (the base their first), kept in the store as
    their low-rank factors over one stored base: the line between them and task arithmetic at λ = 1 — θ_base +
    ΔW_a + ΔW_b — equal a plain loop over the models peft merges."""
    base = _gpt2_base(tmp_path / "base")
    lora = dict(r=4, lora_alpha=16, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True)
    ends = [_adapter(base, tmp_path / name, seed, **lora) for name, seed in (("a", 1), ("b", 2))]
    job = tmp_path / "lora.toml"
    job.write_text(JOB.format(base=base, a=tmp_path / "a", b=tmp_path / "b"))
    done = _cli(["run", str(job), "--storage", str(tmp_path / "out"), "--set", "resources.eval_actors=2"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    from pydoc_data.topics import topics

    import raysweep

    run = raysweep.open(str(job), storage=str(tmp_path / "out"))
    x, y = plain_windows([topics[k] for k in sorted(topics)][9::10], SEQ)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base)).eval()
    pre = {k: v.clone() for k, v in model.state_dict().items()}

    def loss(state):
        model.load_state_dict(state)
        return plain_loss(model, x, y)[0]

    curve = run.table("points").filter(pl.col("sweep") == "between", pl.col("split") == "test")
    for alpha in (0.0, 0.5, 1.0):
        mid = {k: (1 - alpha) * ends[0][k] + alpha * ends[1][k] for k in ends[0]}
        row = curve.filter(pl.col("alpha") == alpha)
        assert row["loss"][0] == pytest.approx(loss(mid), rel=1e-5), alpha
    # the same line in one command: the model's config comes from the first adapter's base
    done = _cli(["interpolate", "--model", "causal_lm", "--data", "pydoc", "--data-arg", f"seq_len={SEQ}",
                 str(tmp_path / "a"), str(tmp_path / "b"), "--alpha", "0:1:3", "--storage", str(tmp_path / "one"),
                 "--no-progress", "--no-report"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    run_id = next(w for w in done.stdout.split() if w.startswith("interpolate/"))
    line = raysweep.open(run_id, storage=str(tmp_path / "one")).points.collect().filter(pl.col("split") == "test")
    assert line.sort("alpha")["loss"].to_list() == pytest.approx(curve.sort("alpha")["loss"].to_list(), rel=1e-6)
    both = {k: pre[k] + (ends[0][k] - pre[k]) + (ends[1][k] - pre[k]) for k in pre}
    # the adapters are kept as their low-rank factors over one stored base: no full model per adapter
    from safetensors import safe_open

    folder = next((tmp_path / "out" / "lora_merges").iterdir())
    assert len(list((folder / "adapter_bases").glob("*.safetensors"))) == 1  # one base (and its sha256 record)
    for k in (0, 1):
        full, low = (folder / f"replicate_{k}" / f"step_{s:08d}.safetensors" for s in (0, 1))
        with safe_open(str(low), framework="pt") as f:
            keys = set(f.keys())
        assert {n for n in keys if "::lora_" in n} and len(keys) < 40  # each adapted weight's B, A and s
        assert low.stat().st_size * 5 < full.stat().st_size
    ta = run.table("merges").filter(pl.col("sweep") == "ta", pl.col("split") == "test")
    assert ta["loss"][0] == pytest.approx(loss(both), rel=1e-5)
    assert ta["loss"][0] != pytest.approx(curve.filter(pl.col("alpha") == 0.5)["loss"][0], rel=1e-3)


@pytest.mark.slow
def test_the_built_in_merges_job_and_an_exported_merge_that_reproduces_its_row(tmp_path):
    """`raysweep run tinylm_merges` (three shipped fine-tunes of the shipped base, one a LoRA adapter), shortened to
    one point per method; its TIES merge exported as a Hugging Face folder gives the row's perplexity and task
    accuracy when transformers loads it."""
    from test_tasks import _plain

    import raysweep
    from raysweep.data.tasks import pydoc_cloze

    short = ["sweeps.finetune_to_finetune.alpha.num=3", "sweeps.task_arithmetic.alpha.values=[0.4]",
             "sweeps.ties.alpha.values=[0.4]", "sweeps.dare.alpha.values=[0.3]", "sweeps.dare_ties.alpha.values=[0.3]",
             "sweeps.slerp.alpha.values=[0.5]"]
    sets = [a for s in short for a in ("--set", s)]
    done = _cli(["run", "tinylm_merges", "--storage", str(tmp_path / "out"), "--set", "resources.eval_actors=2",
                 *sets], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    run = raysweep.open("tinylm_merges", storage=str(tmp_path / "out"), overrides=short)
    merges = run.table("merges")
    assert set(merges["merge"]) == {"single", "uniform", "greedy", "task_arithmetic", "ties", "dare", "dare_ties",
                                    "slerp"}
    assert set(merges["split"]) == {"test", "pydoc_cloze"}
    from raysweep.report.figures import figures, load_tables

    figs = {f.name: f for f in figures(run.job, load_tables(run.tables))}
    assert len(figs["MERGE-ties"].charts) == 3  # loss, error and perplexity against the density
    assert len(figs["G-fig5-finetune_to_finetune"].charts) == 4  # the I5 line in perplexity too
    best = figs["MERGE-best"].charts[0].data  # each method's best point, with its parameter
    assert "density = 0.4" in set(best["point"]) and "best single fine-tune" in set(best["method"])
    out = tmp_path / "ties-0.4"
    done = _cli(["export", "tinylm_merges", "--storage", str(tmp_path / "out"), *sets, "--sweep", "ties", "--lam",
                 "0.4", "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    from pydoc_data.topics import topics

    model = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    loss, _ = plain_loss(model, *plain_windows([topics[k] for k in sorted(topics)][9::10], 64))
    row = merges.filter(pl.col("merge") == "ties", pl.col("split") == "test")
    assert row["perplexity"].item() == pytest.approx(math.exp(loss), rel=1e-5)
    _, task_err, _ = _plain(model, pydoc_cloze(), 64)
    row = merges.filter(pl.col("merge") == "ties", pl.col("split") == "pydoc_cloze")
    assert row["error"].item() == pytest.approx(task_err, abs=1e-12)
