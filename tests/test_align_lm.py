"""Weight matching of Hugging Face causal LMs (evaluate/lm_groups.py): a GPT-2 and a Llama-style model with
grouped-query heads (and Qwen2's q/k/v biases), permuted by the test's own index arithmetic — which keeps their
outputs, checked — are aligned back exactly; models and settings it cannot handle are refused by name; and
through `raysweep run`, the aligned line between a GPT-2 and its permuted copy is flat at the plain loop's loss
while the unaligned line is not."""
import polars as pl
import pytest
import torch

transformers = pytest.importorskip("transformers")

from test_lm import SEQ, _cli, plain_loss, plain_windows  # noqa: E402

from raysweep.evaluate.align import AlignmentError, align, permutation_spec  # noqa: E402


def _gpt2(seed: int, vocab: int = 257) -> torch.nn.Module:
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=SEQ, n_embd=32, n_layer=2, n_head=4,
                                     initializer_range=0.15, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(seed)
    return _varied(transformers.GPT2LMHeadModel(config))


def _llama(cls=None, seed: int = 0) -> torch.nn.Module:
    cls = cls or transformers.LlamaConfig
    config = cls(vocab_size=61, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
                 intermediate_size=40, max_position_embeddings=SEQ, initializer_range=0.15, bos_token_id=None,
                 eos_token_id=None, pad_token_id=None)
    torch.manual_seed(seed)
    return _varied(transformers.AutoModelForCausalLM.from_config(config))


def _varied(model: torch.nn.Module) -> torch.nn.Module:
    """Norm weights and biases away from their init's ones and zeros, so that every tensor shows its order."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn(p.shape))
    return model.eval()


def _perm(n: int, g: torch.Generator) -> torch.Tensor:
    """A random permutation other than the identity."""
    while torch.equal(p := torch.randperm(n, generator=g), torch.arange(n)):
        pass
    return p


def permuted_gpt2(state: dict, layers: int, heads: int, seed: int = 7) -> dict:
    """GPT-2's units shuffled by hand: the residual features everywhere, each block's heads (each head's q/k
    dimensions by one permutation and its v dimensions by another) and MLP units. Conv1D weights are (in, out)."""
    g = torch.Generator().manual_seed(seed)
    width = state["transformer.wte.weight"].shape[1]
    d = width // heads
    r = _perm(width, g)
    out = {k: v.clone() for k, v in state.items()}
    for name in ("transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight"):
        if name in out:
            out[name] = state[name][:, r]
    for name in ("transformer.ln_f.weight", "transformer.ln_f.bias"):
        out[name] = state[name][r]
    for i in range(layers):
        p = f"transformer.h.{i}."
        order = _perm(heads, g)
        qk = torch.cat([order[h] * d + _perm(d, g) for h in range(heads)])  # new head h is old head order[h]
        v = torch.cat([order[h] * d + _perm(d, g) for h in range(heads)])
        columns = torch.cat([qk, width + qk, 2 * width + v])
        hidden = _perm(state[p + "mlp.c_fc.weight"].shape[1], g)
        for name in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "attn.c_proj.bias", "mlp.c_proj.bias"):
            out[p + name] = state[p + name][r]
        out[p + "attn.c_attn.weight"] = state[p + "attn.c_attn.weight"][r][:, columns]
        out[p + "attn.c_attn.bias"] = state[p + "attn.c_attn.bias"][columns]
        out[p + "attn.c_proj.weight"] = state[p + "attn.c_proj.weight"][v][:, r]
        out[p + "mlp.c_fc.weight"] = state[p + "mlp.c_fc.weight"][r][:, hidden]
        out[p + "mlp.c_fc.bias"] = state[p + "mlp.c_fc.bias"][hidden]
        out[p + "mlp.c_proj.weight"] = state[p + "mlp.c_proj.weight"][hidden][:, r]
    return out


def permuted_llama(state: dict, config, seed: int = 7) -> dict:
    """A Llama-style model's units shuffled by hand: residual features, each block's key/value heads as whole
    blocks of rows with the query heads that read them (no permutation inside a head: rotary q and k), and MLP
    units. Linear weights are (out, in)."""
    g = torch.Generator().manual_seed(seed)
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    d = config.hidden_size // heads
    r = _perm(config.hidden_size, g)
    out = {k: v.clone() for k, v in state.items()}
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        out[name] = state[name][:, r]
    out["model.norm.weight"] = state["model.norm.weight"][r]
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        order = _perm(kv, g)
        block_q = heads // kv * d
        rows_q = torch.cat([torch.arange(order[j] * block_q, (order[j] + 1) * block_q) for j in range(kv)])
        rows_kv = torch.cat([torch.arange(order[j] * d, (order[j] + 1) * d) for j in range(kv)])
        hidden = _perm(config.intermediate_size, g)
        for name in ("input_layernorm.weight", "post_attention_layernorm.weight"):
            out[p + name] = state[p + name][r]
        for name, rows in (("q_proj", rows_q), ("k_proj", rows_kv), ("v_proj", rows_kv)):
            out[p + f"self_attn.{name}.weight"] = state[p + f"self_attn.{name}.weight"][rows][:, r]
            if p + f"self_attn.{name}.bias" in state:
                out[p + f"self_attn.{name}.bias"] = state[p + f"self_attn.{name}.bias"][rows]
        out[p + "self_attn.o_proj.weight"] = state[p + "self_attn.o_proj.weight"][r][:, rows_q]
        out[p + "mlp.gate_proj.weight"] = state[p + "mlp.gate_proj.weight"][hidden][:, r]
        out[p + "mlp.up_proj.weight"] = state[p + "mlp.up_proj.weight"][hidden][:, r]
        out[p + "mlp.down_proj.weight"] = state[p + "mlp.down_proj.weight"][r][:, hidden]
    return out


def _logits(model, state, x):
    model.load_state_dict(state)
    with torch.no_grad():
        return model(input_ids=x).logits


@pytest.mark.parametrize("which", ["gpt2", "llama", "qwen2"])
def test_a_permuted_lm_keeps_its_outputs_and_is_aligned_back_exactly(which):
    if which == "gpt2":
        model = _gpt2(0)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        shuffled = permuted_gpt2(state, 2, 4)
    else:
        model = _llama(None if which == "llama" else transformers.Qwen2Config)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        shuffled = permuted_llama(state, model.config)
    if which == "qwen2":
        assert any(k.endswith("q_proj.bias") for k in state)
    x = torch.randint(0, model.config.vocab_size, (3, SEQ), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_logits(model, shuffled, x), _logits(model, state, x), rtol=1e-4, atol=1e-5)
    assert all(not torch.equal(state[k], shuffled[k]) for k in state if state[k].dim())  # every tensor moved
    once = (lambda s: {k: v for k, v in s.items() if k != "lm_head.weight"}) if which == "gpt2" else dict
    back = align(model, once(state), once(shuffled))  # GPT-2's tied head given once, as the Evaluator holds it
    assert set(back) == set(once(state))
    assert all(torch.equal(back[k], state[k]) for k in back)


def test_models_and_settings_weight_matching_cannot_handle_are_refused_by_name():
    config = transformers.GPTNeoXConfig(vocab_size=50, hidden_size=32, num_attention_heads=4, num_hidden_layers=1,
                                        intermediate_size=40, max_position_embeddings=SEQ)
    neox = transformers.AutoModelForCausalLM.from_config(config)
    with pytest.raises(AlignmentError, match="gpt_neox.*Drop `align`"):
        permutation_spec(neox)


ALIGNED = """
name = "aligned_pair"
replicates = 2
external = [["{a}"], ["{b}"]]
[data]
name = "pydoc"
seq_len = {seq}
[model]
name = "causal_lm"
[model.config]
from = "{a}"
[eval]
batch_size = 64
[[sweeps]]
name = "plain"
kind = "final_to_final"
alpha = {{ values = [0.0, 0.5, 1.0] }}
[[sweeps]]
name = "aligned"
kind = "final_to_final"
align = "{align}"
alpha = {{ values = [0.0, 0.25, 0.5, 1.0] }}
"""


@pytest.mark.slow
def test_the_aligned_line_between_a_gpt2_and_its_permuted_copy_is_flat_through_raysweep_run(tmp_path):
    """Two Hugging Face folders, a GPT-2 and the same network with its units shuffled by hand, as two replicates;
    `raysweep run` with two actors: the weight-matched line is the model itself at every α (the plain loop's
    loss), the unaligned line's midpoint is the plain loop's loss of the averaged weights, another network. And
    align = "activations" on a language model is refused before any work, naming what to use."""
    model = _gpt2(3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    shuffled = permuted_gpt2(state, 2, 4)
    model.save_pretrained(tmp_path / "a")
    model.load_state_dict(shuffled)
    model.save_pretrained(tmp_path / "b")
    job = tmp_path / "pair.toml"
    job.write_text(ALIGNED.format(a=tmp_path / "a", b=tmp_path / "b", seq=SEQ, align="weights"))
    done = _cli(["run", str(job), "--storage", str(tmp_path / "out"), "--set", "resources.eval_actors=2"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    from pydoc_data.topics import topics

    import raysweep

    x, y = plain_windows([topics[k] for k in sorted(topics)][9::10], SEQ)
    model.load_state_dict(state)
    itself = plain_loss(model, x, y)[0]
    model.load_state_dict({k: (state[k] + shuffled[k]) / 2 for k in state})
    averaged = plain_loss(model, x, y)[0]
    points = raysweep.open(str(job), storage=str(tmp_path / "out")).points.collect().filter(pl.col("split") == "test")
    aligned = points.filter(pl.col("sweep") == "aligned").sort("alpha")
    assert aligned["alpha"].to_list() == [0.0, 0.25, 0.5, 1.0]
    assert aligned["loss"].to_list() == pytest.approx([itself] * 4, rel=1e-5)
    plain = points.filter(pl.col("sweep") == "plain").sort("alpha")
    assert plain["loss"].to_list() == pytest.approx([itself, averaged, itself], rel=1e-5)
    assert abs(averaged - itself) > 0.05  # the unaligned midpoint is a different network

    job.write_text(ALIGNED.format(a=tmp_path / "a", b=tmp_path / "b", seq=SEQ, align="activations"))
    done = _cli(["run", str(job), "--storage", str(tmp_path / "out2")], tmp_path)
    assert done.returncode != 0
    assert 'align = "activations" follows the model\'s graph' in done.stderr
    assert 'use align = "weights"' in done.stderr
    assert not (tmp_path / "out2").exists()  # refused when the job is read, before anything is stored
