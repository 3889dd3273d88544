"""raysweep's merges against mergekit's (arcee-ai/mergekit, pinned in constraints.txt) on the same Hugging Face
folders and parameters: linear (the uniform soup), TIES (per-tensor trim, sign election, disjoint mean) and
SLERP (tensor by tensor). mergekit writes its merge to disk; raysweep's functions merge in memory; the
weights must agree to float32 rounding (mergekit merges in float32, raysweep in float64)."""
import pytest
import torch

pytest.importorskip("mergekit")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow


def _folders(tmp_path):
    """A tiny GPT-2 base and two fine-tunes of it (the base plus noise of different sizes per tensor)."""
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=16, vocab_size=64)
    torch.manual_seed(0)
    base = transformers.GPT2LMHeadModel(config)
    base.save_pretrained(tmp_path / "base")
    for k, scale in ((1, 0.02), (2, 0.05)):
        model = transformers.GPT2LMHeadModel(config)
        model.load_state_dict(base.state_dict())
        with torch.no_grad():
            for p in model.parameters():
                p.add_(scale * torch.randn_like(p))
        model.save_pretrained(tmp_path / f"ft{k}")
    return [_state(tmp_path / n) for n in ("base", "ft1", "ft2")]


def _state(folder):
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _mergekit(tmp_path, name, text):
    import yaml
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    config = MergeConfiguration.model_validate(yaml.safe_load(text.replace("DIR", str(tmp_path))))
    run_merge(config, str(tmp_path / name), MergeOptions(copy_tokenizer=False, quiet=True, write_model_card=False))
    return _state(tmp_path / name)


def _same(ours: dict, theirs: dict, names):
    assert set(theirs) <= set(names) and len(theirs) >= len(names) - 1  # lm_head tied: stored once, or not at all
    for n in theirs:
        assert torch.allclose(ours[n].float(), theirs[n].float(), rtol=1e-5, atol=1e-6), n


def test_linear_ties_and_slerp_equal_mergekits(tmp_path):
    from raysweep.evaluate.merges import mean_state, slerp, ties_merge

    base, ft1, ft2 = _folders(tmp_path)
    names = list(base)

    theirs = _mergekit(tmp_path, "linear", """
merge_method: linear
models:
  - {model: DIR/ft1, parameters: {weight: 1.0}}
  - {model: DIR/ft2, parameters: {weight: 1.0}}
dtype: float32
""")
    _same(dict(zip(names, mean_state([[ft1[n] for n in names], [ft2[n] for n in names]]))), theirs, names)

    for density in (0.3, 1.0):
        theirs = _mergekit(tmp_path, f"ties{density}", f"""
merge_method: ties
base_model: DIR/base
models:
  - {{model: DIR/ft1, parameters: {{weight: 1.0, density: {density}}}}}
  - {{model: DIR/ft2, parameters: {{weight: 1.0, density: {density}}}}}
parameters: {{normalize: true}}
dtype: float32
""")
        ours = ties_merge([base[n] for n in names], [[ft1[n] for n in names], [ft2[n] for n in names]], density)
        _same(dict(zip(names, ours)), theirs, names)

    for t in (0.3, 0.75):
        theirs = _mergekit(tmp_path, f"slerp{t}", f"""
merge_method: slerp
base_model: DIR/ft1
models:
  - {{model: DIR/ft1}}
  - {{model: DIR/ft2}}
parameters: {{t: {t}}}
dtype: float32
""")
        _same({n: slerp(ft1[n], ft2[n], t) for n in names}, theirs, names)
        line = {n: (1 - t) * ft1[n] + t * ft2[n] for n in names}  # SLERP is not the line here: the test can fail
        assert any(not torch.allclose(line[n], theirs[n], atol=1e-5) for n in theirs)
