"""The Evaluator against independent computations: a float64 reference loop and a closed form."""
import numpy as np
import pytest
import torch
from conftest import make_job
from torch.optim.swa_utils import update_bn

from raysweep.data import epoch_order, load_splits
from raysweep.evaluate.evaluator import Evaluator
from raysweep.evaluate.sums import BN_RESET_SEED
from raysweep.io.checkpoints import CheckpointError, save_tensors
from raysweep.models import build_model


def _endpoints(job, store, data, seeds=(1, 2), train_bn=True):
    """Two random models, BN running stats made non-trivial; saved to the store."""
    out = []
    for s in seeds:
        model = build_model(job.model, data.in_shape, data.num_classes, seed=s)
        if train_bn:
            model.train()
            with torch.no_grad():
                model(data.train_x[:200] * (1 + s))  # different running stats per endpoint
        path = f"ck/{s}.safetensors"
        out.append((path, save_tensors(store, path, model.state_dict()), model.state_dict()))
    return out


def reference(job, data, sa, sb, alpha, split, bn="interpolate", bn_batches=3):
    """Plain float64 loop: build θ(α) as a state dict, load it, evaluate batch by batch."""
    model = build_model(job.model, data.in_shape, data.num_classes).double()
    state = {k: ((1 - alpha) * sa[k].double() + alpha * sb[k].double()) if sa[k].is_floating_point() else sa[k]
             for k in sa}
    model.load_state_dict(state)
    x, y = data.split(split)
    if bn == "reset":
        order = epoch_order(len(data.train_x), BN_RESET_SEED, 0)
        bs = job.train.batch_size
        batches = [data.train_x[order[i * bs:(i + 1) * bs]].double() for i in range(bn_batches)]
        update_bn(batches, model)
    model.eval()
    with torch.no_grad():
        logits = model(x.double())
        loss = torch.nn.functional.cross_entropy(logits, y).item()
        err = (logits.argmax(1) != y).double().mean().item()
    return loss, err


@pytest.mark.parametrize("bn", ["interpolate", "reset"])
def test_evaluator_matches_float64_reference(tiny_job, store, bn):
    data = load_splits(tiny_job.data)
    (pa, sha_a, sa), (pb, sha_b, sb) = _endpoints(tiny_job, store, data)
    ev = Evaluator(tiny_job, store, data)
    a, b = ev.endpoint(pa, sha_a), ev.endpoint(pb, sha_b)
    alphas = [-0.5, 0.0, 0.3, 0.5, 0.77, 1.0, 1.5]
    rows = ev.evaluate_pair(a, b, alphas, ("train", "test"), bn=bn, bn_batches=3)
    assert len(rows) == len(alphas) * 2
    assert all(np.isfinite(r["loss"]) for r in rows if 0 <= r["alpha"] <= 1)
    for r in rows:
        loss, err = reference(tiny_job, data, sa, sb, r["alpha"], r["split"], bn, 3)
        # beyond [0, 1], interpolated BN running variances can turn negative: NaN on both sides
        assert r["loss"] == pytest.approx(loss, rel=1e-5, nan_ok=True)
        assert r["error"] == pytest.approx(err, abs=1e-12, nan_ok=True)
        assert r["n_examples"] == len(data.split(r["split"])[1])


def test_bn_modes_differ_when_stats_are_off(tiny_job, store):
    data = load_splits(tiny_job.data)
    (pa, sha_a, _), (pb, sha_b, _) = _endpoints(tiny_job, store, data)
    ev = Evaluator(tiny_job, store, data)
    a, b = ev.endpoint(pa, sha_a), ev.endpoint(pb, sha_b)
    kept = ev.evaluate_pair(a, b, [0.5], ("test",), bn="interpolate")[0]["loss"]
    reset = ev.evaluate_pair(a, b, [0.5], ("test",), bn="reset", bn_batches=3)[0]["loss"]
    assert kept != pytest.approx(reset, rel=1e-3)
    # reset mode leaves the model's momentum as it was
    assert all(m.momentum == 0.1 for m in ev.model.modules() if isinstance(m, torch.nn.BatchNorm1d))


def test_closed_form_softmax_regression(store):
    """Zero weights, biases b_a → b_b: loss(α) = logsumexp(b(α)) − mean_i b(α)[y_i], exactly."""
    job = make_job(model__hidden=[], model__batchnorm=False)
    data = load_splits(job.data)
    rng = np.random.default_rng(3)
    ba, bb = rng.normal(size=10) * 3, rng.normal(size=10) * 3
    paths = []
    for i, bias in enumerate((ba, bb)):
        state = {"1.weight": torch.zeros(10, 32), "1.bias": torch.tensor(bias, dtype=torch.float32)}
        paths.append((f"lin/{i}.safetensors", save_tensors(store, f"lin/{i}.safetensors", state)))
    ev = Evaluator(job, store, data)
    a, b = ev.endpoint(*paths[0]), ev.endpoint(*paths[1])
    alphas = np.linspace(-1, 2, 13)
    y = data.test_y.numpy()
    for r in ev.evaluate_pair(a, b, list(alphas), ("test",)):
        bias = (1 - r["alpha"]) * ba.astype(np.float32).astype(np.float64) + r["alpha"] * bb.astype(np.float32)
        lse = np.log(np.exp(bias - bias.max()).sum()) + bias.max()
        assert r["loss"] == pytest.approx(lse - bias[y].mean(), rel=1e-5)
        assert r["error"] == pytest.approx(np.mean(y != np.argmax(bias)))


def test_corrupted_and_missing_checkpoints_are_named(tiny_job, store):
    data = load_splits(tiny_job.data)
    (pa, sha_a, _), _ = _endpoints(tiny_job, store, data)
    ev = Evaluator(tiny_job, store, data)
    store.write_bytes(pa, store.read_bytes(pa)[:-10])
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        ev.endpoint(pa, sha_a)
    with pytest.raises(CheckpointError, match="missing"):
        ev.endpoint("ck/none.safetensors", None)
    store.write_bytes("ck/junk.safetensors", b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        ev.endpoint("ck/junk.safetensors", None)


def test_endpoint_cache_is_bounded(tiny_job, store):
    data = load_splits(tiny_job.data)
    eps = _endpoints(tiny_job, store, data, seeds=(1, 2, 3))
    one = sum(t.numel() * t.element_size() for t in eps[0][2].values())
    ev = Evaluator(tiny_job, store, data, cache_bytes=2 * one)
    for path, sha, _ in eps:
        ev.endpoint(path, sha)
    assert len(ev.cache) == 2 and ev.cached_bytes <= 2 * one
    assert f"{eps[0][0]}@{eps[0][1]}" not in ev.cache  # the oldest went first


@pytest.mark.parametrize("bn", ["interpolate", "reset"])
def test_first_layer_mixing_is_exact(tiny_job, store, bn):
    """f(x; θ(α)) with the first layer's outputs mixed equals the plain forward and the reference."""
    from raysweep.spec import parse_job

    data = load_splits(tiny_job.data)
    (pa, sha_a, sa), (pb, sha_b, sb) = _endpoints(tiny_job, store, data)
    fast = Evaluator(tiny_job, store, data)
    plain = Evaluator(parse_job({**tiny_job.to_dict(), "eval": {"first_layer": False}}), store, data)
    assert fast.head is not None and plain.head is None
    alphas = [0.0, 0.1, 0.5, 0.9, 1.0]
    got = fast.evaluate_pair(fast.endpoint(pa, sha_a), fast.endpoint(pb, sha_b), alphas, ("train", "test"), bn, 3,
                             pair_key="p")
    want = plain.evaluate_pair(plain.endpoint(pa, sha_a), plain.endpoint(pb, sha_b), alphas, ("train", "test"), bn, 3)
    for g, w in zip(got, want):
        assert g["loss"] == pytest.approx(w["loss"], rel=1e-5) and g["error"] == pytest.approx(w["error"], abs=1e-3)
        loss, _ = reference(tiny_job, data, sa, sb, g["alpha"], g["split"], bn, 3)
        assert g["loss"] == pytest.approx(loss, rel=1e-5)
    assert fast._pre[0] == ("p", ("train", "test"))  # cached for the next chunk of the same pair


def test_first_layer_reuse_with_changing_splits(tiny_job, store):
    """The same pair asked for one split, then two (growing a run from 2 to 3 replicates does this):
    the cached first-layer outputs belong to the splits they were computed for."""
    data = load_splits(tiny_job.data)
    (pa, sha_a, sa), (pb, sha_b, sb) = _endpoints(tiny_job, store, data)
    ev = Evaluator(tiny_job, store, data)
    a, b = ev.endpoint(pa, sha_a), ev.endpoint(pb, sha_b)
    only_test = ev.evaluate_pair(a, b, [0.25], ("test",), pair_key="same")
    both = ev.evaluate_pair(a, b, [0.25], ("train", "test"), pair_key="same")
    again = ev.evaluate_pair(a, b, [0.25], ("test",), pair_key="same")
    assert [r["split"] for r in both] == ["train", "test"]
    for rows in (only_test, both, again):
        for r in rows:
            loss, err = reference(tiny_job, data, sa, sb, 0.25, r["split"])
            assert r["loss"] == pytest.approx(loss, rel=1e-5) and r["error"] == pytest.approx(err, abs=1e-9)


def test_first_layer_split_only_where_it_is_exact():
    from raysweep.evaluate.sums import first_layer_split
    from raysweep.spec import ModelSpec

    assert first_layer_split(build_model(ModelSpec(name="cifar_resnet_20"), (3, 32, 32), 10))[0] is None
    assert first_layer_split(build_model(ModelSpec(activation="maxout"), (32,), 10))[0] is None
    head, tail = first_layer_split(build_model(ModelSpec(input_dropout=0.2, hidden=(8,)), (32,), 10))
    assert isinstance(head[-1], torch.nn.Linear) and isinstance(tail[0], torch.nn.ReLU)
