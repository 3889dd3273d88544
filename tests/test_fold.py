"""eval.fold_bn: conv → BatchNorm pairs folded into one convolution give the unfolded curve."""
import pytest
import torch
from torch import nn

from raysweep.data import Splits
from raysweep.evaluate.evaluator import Evaluator
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
    with caplog.at_level("INFO", logger="raysweep"):
        assert fold(mlp) is None
    assert "no convolution followed by a BatchNorm" in caplog.text


def _pair(tmp_path, name="cifar_resnet_20", n=64):
    g = torch.Generator().manual_seed(0)
    xs, ys = torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    store = Store(str(tmp_path))
    a = _trained_like(build_model(ModelSpec(name=name), (3, 32, 32), 10, seed=1), 2).state_dict()
    b = _trained_like(build_model(ModelSpec(name=name), (3, 32, 32), 10, seed=3), 4).state_dict()
    return (
        Splits(xs, ys, xs, ys, 10),
        store,
        save_tensors(store, "a.safetensors", a),
        save_tensors(store, "b.safetensors", b),
    )


def _evaluator(store, splits, **eval_fields):
    job = parse_job({"name": "fold", "data": {"name": "blobs"}, "model": {"name": "cifar_resnet_20"},
                     "eval": eval_fields})
    return Evaluator(job, store, splits)


def test_a_folded_graph_that_computes_something_else_is_dropped_with_a_warning(tmp_path, caplog, monkeypatch):
    from raysweep.evaluate import fold as fold_module

    splits, store, sha_a, sha_b = _pair(tmp_path)
    plain = _evaluator(store, splits, fold_bn=False)
    ta, tb = plain.endpoint("a.safetensors", sha_a), plain.endpoint("b.safetensors", sha_b)
    expected = plain.evaluate_pair(ta, tb, [0.0, 0.5, 1.0], ("test",))

    refold = fold_module.Folded.refold

    def wrong(self):  # stands in for a forward torch.fx captured unfaithfully
        refold(self)
        self.pairs[0][2].bias.add_(1.0)
    monkeypatch.setattr(fold_module.Folded, "refold", wrong)
    ev = _evaluator(store, splits)  # fold_bn is on by default
    assert ev.folded is not None
    with caplog.at_level("WARNING", logger="raysweep"):
        rows = ev.evaluate_pair(ta, tb, [0.0, 0.5, 1.0], ("test",))
    assert ev.folded is None and "does not reproduce the model's outputs" in caplog.text
    for got, want in zip(rows, expected):  # the unfolded model's numbers, not the wrong graph's
        assert got["loss"] == want["loss"] and got["error"] == want["error"]


def test_cpu_evaluates_conv_nets_in_nhwc_and_cache_sized_batches(tmp_path):
    splits, store, sha_a, sha_b = _pair(tmp_path, n=100)
    ev = _evaluator(store, splits, batch_size=1000, cpu_batch_size=16)
    assert ev.channels_last and ev.model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert ev.prepare(splits.test_x[:4]).is_contiguous(memory_format=torch.channels_last)
    calls = []
    ev.model.fc.register_forward_hook(lambda m, i, o: calls.append(len(o)))
    ta, tb = ev.endpoint("a.safetensors", sha_a), ev.endpoint("b.safetensors", sha_b)
    rows = ev.evaluate_pair(ta, tb, [0.25, 0.75], ("test",))
    # the first point's fold check (8 examples, model and folded graph), then 2 points x ceil(100 / 16) batches
    assert calls == [8, 8] + ([16] * 6 + [4]) * 2
    whole = _evaluator(store, splits, batch_size=1000, cpu_batch_size=0, channels_last=False, fold_bn=False)
    assert not whole.channels_last and whole.folded is None
    ref = whole.evaluate_pair(whole.endpoint("a.safetensors", sha_a), whole.endpoint("b.safetensors", sha_b),
                              [0.25, 0.75], ("test",))
    for got, want in zip(rows, ref):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5) and got["error"] == want["error"]
    mlp = parse_job({"name": "m", "data": {"name": "blobs"}, "model": {"name": "lenet_300_100"}})
    assert not Evaluator(
        mlp,
        store,
        Splits(
            torch.rand(8, 1, 28, 28),
            torch.zeros(8, dtype=torch.long),
            torch.rand(8, 1, 28, 28),
            torch.zeros(8, dtype=torch.long),
            10,
        ),
    ).channels_last


def test_bf16_casts_each_weight_once_per_point_not_per_batch(tmp_path):
    """CPU autocast stands in for CUDA's: the cast cache is the same mechanism on both."""
    from torch.utils._python_dispatch import TorchDispatchMode

    splits, store, sha_a, sha_b = _pair(tmp_path, n=96)
    ev = _evaluator(store, splits, batch_size=1000, cpu_batch_size=32)  # 3 batches per point
    ev.bf16 = True  # a CPU evaluates in fp32; force the GPU path's autocast to count its casts
    ta, tb = ev.endpoint("a.safetensors", sha_a), ev.endpoint("b.safetensors", sha_b)
    ev.evaluate_pair(ta, tb, [0.5], ("test",))  # the first point also runs the fold check
    weights = {fused.weight.data_ptr() for _, _, fused in ev.folded.pairs} | {ev.model.fc.weight.data_ptr()}

    class Casts(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.count = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.ops.aten._to_copy.default and args[0].data_ptr() in weights \
                    and kwargs.get("dtype") == torch.bfloat16:
                self.count[args[0].data_ptr()] = self.count.get(args[0].data_ptr(), 0) + 1
            return func(*args, **kwargs)

    casts = Casts()
    with casts:
        ev.evaluate_pair(ta, tb, [0.25, 0.75], ("test", "train"))
    assert set(casts.count) == weights  # every conv and linear weight ran in bf16 ...
    assert set(casts.count.values()) == {2}  # ... cast once per point (2 points x 2 splits x 3 batches each)


def test_a_compiled_evaluation_reads_each_points_weights_without_recompiling(tmp_path, monkeypatch):
    """eval.compile: θ(α) is written in place into the tensors the compiled graph reads, so every point
    gets its own numbers from one compilation. torch.compile's inductor backend is swapped for
    aot_eager (no C++ toolchain needed); the mode reaches torch.compile as asked."""
    import torch._dynamo

    splits, store, sha_a, sha_b = _pair(tmp_path)
    plain = _evaluator(store, splits)
    ta, tb = plain.endpoint("a.safetensors", sha_a), plain.endpoint("b.safetensors", sha_b)
    grid = [0.0, 0.3, 0.6, 1.0]
    expected = plain.evaluate_pair(ta, tb, grid, ("test",))

    compile_, modes = torch.compile, []

    def aot_eager(net, mode="default", **kwargs):
        modes.append(mode)
        return compile_(net, backend="aot_eager")
    monkeypatch.setattr(torch, "compile", aot_eager)
    torch._dynamo.reset()
    frames = torch._dynamo.utils.counters["stats"]
    ev = _evaluator(store, splits, compile=True, compile_mode="reduce-overhead")
    rows = ev.evaluate_pair(ta, tb, grid, ("test",))
    assert modes == ["reduce-overhead"]
    assert frames["unique_graphs"] == 1  # one graph for all four points (one batch shape)
    for got, want in zip(rows, expected):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5) and got["error"] == want["error"]
    assert len({r["loss"] for r in rows}) == len(grid)  # each point its own weights, not the first point's
    torch._dynamo.reset()


def test_the_bf16_path_stays_within_its_stated_tolerance_of_fp32(tmp_path):
    """eval.precision = "bf16" (CUDA's autocast, here the CPU's: the same casts) with NHWC and folding
    against the exact fp32 curve: losses within 2e-3 relative (README), error rates within a few
    examples (argmax ties flip)."""
    splits, store, sha_a, sha_b = _pair(tmp_path, n=256)
    grid = [i / 10 for i in range(11)]
    curves = {}
    for bf16 in (False, True):
        ev = _evaluator(store, splits, batch_size=1000)
        ev.bf16 = bf16
        ta, tb = ev.endpoint("a.safetensors", sha_a), ev.endpoint("b.safetensors", sha_b)
        curves[bf16] = ev.evaluate_pair(ta, tb, grid, ("test",))
    worst = max(abs(h["loss"] - f["loss"]) / f["loss"] for f, h in zip(curves[False], curves[True]))
    assert 0 < worst <= 2e-3  # bf16 really ran (not bitwise fp32), and stayed close
    assert max(abs(h["error"] - f["error"]) for f, h in zip(curves[False], curves[True])) <= 4 / 256
