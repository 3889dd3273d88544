"""eval.fold_bn: conv → BatchNorm pairs folded into one convolution give the unfolded curve."""
import pytest
import torch
from torch import nn

from raysweep.data import Splits
from raysweep.evaluate import Evaluator
from raysweep.evaluate.fold import fold
from raysweep.io.checkpoints import save_tensors
from raysweep.io.store import Store
from raysweep.models import build_model
from raysweep.spec import ModelSpec, parse_job


def _trained_like(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():  # running statistics as training leaves them
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3, generator=g)
            m.running_var.uniform_(0.3, 3.0, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)
    return model


@pytest.mark.parametrize("name", ["cifar_resnet_20", "cifar_vgg_16"])
def test_folded_evaluation_equals_the_unfolded_model(tmp_path, name):
    model = _trained_like(build_model(ModelSpec(name=name), (3, 32, 32), 10, seed=0).eval(), 1)
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    folded = fold(model)
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert folded is not None and len(folded.pairs) == convs  # every conv of both nets feeds a BN
    folded.refold()
    with torch.no_grad():
        out, again = folded(x), model(x)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(again, ref)  # the model itself is untouched: folding lives on the traced copy

    # the same line through the Evaluator, folded and not: interpolated weights and statistics
    g = torch.Generator().manual_seed(0)
    xs, ys = torch.rand(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    splits = Splits(xs, ys, xs, ys, 10)
    store = Store(str(tmp_path))
    a = _trained_like(build_model(ModelSpec(name=name), (3, 32, 32), 10, seed=1), 2).state_dict()
    b = _trained_like(build_model(ModelSpec(name=name), (3, 32, 32), 10, seed=3), 4).state_dict()
    sha_a, sha_b = save_tensors(store, "a.safetensors", a), save_tensors(store, "b.safetensors", b)
    rows = {}
    for on in (False, True):
        job = parse_job({"name": "fold", "data": {"name": "blobs"}, "model": {"name": name},
                         "eval": {"batch_size": 32, "fold_bn": on}})
        ev = Evaluator(job, store, splits)
        ta, tb = ev.endpoint("a.safetensors", sha_a), ev.endpoint("b.safetensors", sha_b)
        rows[on] = ev.evaluate_pair(ta, tb, [0.0, 0.3, 0.5, 1.0], ("test",))
        rows[f"{on}-reset"] = ev.evaluate_pair(ta, tb, [0.5], ("test",), bn="reset", bn_batches=2)
    for plain, fused in zip(rows[False] + rows["False-reset"], rows[True] + rows["True-reset"]):
        assert fused["loss"] == pytest.approx(plain["loss"], rel=1e-5)
        assert fused["error"] == pytest.approx(plain["error"], abs=1 / 64)


def test_a_model_without_conv_bn_pairs_is_evaluated_unfolded(caplog):
    mlp = build_model(ModelSpec(hidden=(8,)), (1, 8, 8), 10)
    with caplog.at_level("WARNING", logger="raysweep"):
        assert fold(mlp) is None
    assert "no convolution followed by a BatchNorm" in caplog.text
