"""Weight matching (Git Re-Basin) aligns a permuted copy of a network back to it exactly; the permutation
groups read from the model's graph are the hand-written ones where those exist, and torchvision's ResNets
(basic and bottleneck blocks) and a ViT (heads permuted as units) are aligned as well, keeping their function."""
import pytest
import torch
from reference_groups import handwritten_spec
from torch import nn

from raysweep.evaluate.align import (
    AlignmentError,
    align,
    permutation_spec,
    permute,
    random_permutations,
    unit_groups,
)
from raysweep.evaluate.graph_axes import Segments
from raysweep.models import build_model
from raysweep.spec import ModelSpec


def _random_perms(model, seed):
    """Random permutations of every group that keep the function (heads as units, dims inside heads)."""
    return random_permutations(permutation_spec(model), model.state_dict(), torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("spec, shape", [
    (ModelSpec(hidden=(32, 16), activation="relu"), (1, 8, 8)),
    (ModelSpec(hidden=(24, 12), activation="relu", batchnorm=True), (1, 8, 8)),
    (ModelSpec(name="cifar_vgg_16"), (3, 32, 32)),
    (ModelSpec(name="cifar_resnet_20"), (3, 32, 32)),
    (ModelSpec(name="resnet18"), (3, 64, 64)),  # torchvision: basic blocks
    (ModelSpec(name="resnet50"), (3, 64, 64)),  # torchvision: bottleneck blocks, the headline model
])
def test_a_permuted_copy_aligns_back_exactly(spec, shape):
    model = build_model(spec, shape, 10, seed=0).eval()
    for m in model.modules():  # BN statistics and affine maps that are not all alike: they travel with their units
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    perms = _random_perms(model, 1)
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    shuffled = permute(model, state, perms)
    x = torch.randn(5, *shape)
    with torch.no_grad():
        before = model(x)
        model.load_state_dict(shuffled)
        after = model(x)  # a permutation keeps the function (to float32 rounding of reordered sums)
        assert (after - before).abs().max() <= 1e-5 * max(1.0, before.abs().max().item()), (after - before).abs().max()
        assert any(not torch.equal(shuffled[k], state[k]) for k in state)
        back = align(model, state, shuffled)
    assert all(torch.equal(back[k], state[k]) for k in state)  # barrier 0: the line is a single point


def test_alignment_lowers_the_barrier_between_two_trained_mlps():
    """Two independently trained MLPs: after matching, the midpoint's loss is lower than before."""
    from raysweep.data import load_splits
    from raysweep.spec import DataSpec

    d = load_splits(DataSpec(name="digits"))
    spec = ModelSpec(hidden=(64,), activation="relu")
    nets = []
    for seed in (0, 1):
        m = build_model(spec, (1, 8, 8), 10, seed=seed)
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        g = torch.Generator().manual_seed(seed)
        for _ in range(300):
            i = torch.randint(0, d.n_train, (64,), generator=g)
            loss = nn.functional.cross_entropy(m(d.train_x[i]), d.train_y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        nets.append({k: v.detach().clone() for k, v in m.state_dict().items()})
    model = build_model(spec, (1, 8, 8), 10).eval()

    def mid_loss(a, b):
        model.load_state_dict({k: (a[k] + b[k]) / 2 for k in a})
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model(d.test_x), d.test_y))
    aligned = align(model, nets[0], nets[1])
    assert mid_loss(nets[0], aligned) < mid_loss(nets[0], nets[1])


def test_resnet20_shares_one_permutation_per_residual_stream():
    spec = handwritten_spec(build_model(ModelSpec(name="cifar_resnet_20"), (3, 32, 32), 10))
    # stage 0 (blocks 0-2): the stem and every conv2 write stream0; block 3 downsamples into stream4
    assert spec["conv.weight"][0] == spec["blocks.0.conv2.weight"][0] == spec["blocks.2.conv2.weight"][0] == "stream0"
    assert spec["blocks.3.shortcut.0.weight"][:2] == ("stream4", "stream0")
    assert spec["blocks.3.conv1.weight"][:2] == ("block3", "stream0") and spec["blocks.3.conv2.weight"][:2] == (
        "stream4", "block3")
    assert spec["blocks.5.bn2.running_mean"] == ("stream4",) and spec["fc.weight"] == (None, "stream7")


def _partition(spec: dict) -> list:
    """The groups as sets of (tensor, axis): the same partition under any naming of the groups."""
    out: dict = {}
    for name, axes in spec.items():
        for ax, g in enumerate(axes):
            if g is not None:
                out.setdefault(g[0] if isinstance(g, tuple) else g, set()).add((name, ax))
    return sorted(sorted(v) for v in out.values())


@pytest.mark.parametrize("spec, shape", [
    (ModelSpec(hidden=(32, 16), activation="relu"), (1, 8, 8)),
    (ModelSpec(hidden=(24, 12), activation="tanh", batchnorm=True, dropout=0.1), (1, 8, 8)),
    (ModelSpec(name="lenet_300_100"), (1, 28, 28)),
    (ModelSpec(name="cifar_vgg_16"), (3, 32, 32)),
    (ModelSpec(name="cifar_resnet_20"), (3, 32, 32)),
])
def test_the_graph_gives_the_hand_written_groups(spec, shape):
    with torch.device("meta"):
        model = build_model(spec, shape, 10)
    assert _partition(permutation_spec(model)) == _partition(handwritten_spec(model))


def test_torchvision_resnets_get_one_group_per_stream_and_per_block_layer():
    with torch.device("meta"):
        r18 = build_model(ModelSpec(name="resnet18"), (3, 224, 224), 1000)
        r50 = build_model(ModelSpec(name="resnet50"), (3, 224, 224), 1000)
    s18, s50 = permutation_spec(r18), permutation_spec(r50)
    # ResNet-18: the stem and layer1 share a stream (no downsampling there), layers 2-4 start one each: 4
    # streams + 8 blocks' inner channels; ResNet-50: every stage's first block projects, so 5 streams + 16 × 2
    assert len(_partition(s18)) == 4 + 8 and len(_partition(s50)) == 5 + 32
    assert s18["conv1.weight"][0] == s18["layer1.1.conv2.weight"][0] == s18["layer1.0.bn2.running_mean"][0]
    assert s50["layer2.0.downsample.0.weight"][:2] == (s50["layer2.3.conv3.weight"][0], s50["layer1.2.conv3.weight"][0])
    assert s50["fc.weight"] == (None, s50["layer4.2.conv3.weight"][0]) and s50["conv1.weight"][1] is None


def test_other_networks_are_refused_naming_what_stops_them():
    with pytest.raises(AlignmentError, match=r"Maxout"):  # a reshape of a layer's units into pieces
        permutation_spec(build_model(ModelSpec(hidden=(8,), activation="maxout"), (1, 8, 8), 10))

    class Concat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.fc = nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(6, 2)

        def forward(self, x):
            return self.fc(torch.cat([torch.relu(self.a(x)), self.b(x)], dim=1))
    with pytest.raises(AlignmentError, match=r"cat .*concatenation"):
        permutation_spec(Concat())


def test_a_sweep_that_cannot_be_aligned_is_refused_before_any_work(tmp_path):
    from conftest import make_job

    from raysweep.data import dataset_info
    from raysweep.errors import SpecError
    from raysweep.kinds.lines import check_alignable

    with pytest.raises(SpecError, match="final_to_final"):
        make_job(sweeps=[{"name": "x", "kind": "init_to_final", "align": "weights"}])
    job = make_job(model={"name": "mlp", "hidden": [8], "activation": "maxout"},
                   sweeps=[{"name": "i5", "kind": "final_to_final", "align": "weights"}])
    with pytest.raises(SpecError, match="sweeps.i5: .*Maxout"):
        check_alignable(job, job.sweeps[0], dataset_info(job.data, standard_if_missing=True))


def test_an_aligned_sweep_of_a_batchnorm_net_runs_with_statistics_reset(tmp_path):
    import copy

    import polars as pl
    from conftest import TINY, run_in_process

    raw = {**copy.deepcopy(TINY), "name": "aligned_bn",  # TINY's MLP has BatchNorm
           "sweeps": [{"name": "i5", "kind": "final_to_final", "alpha": {"num": 5}},
                      {"name": "i5a", "kind": "final_to_final", "alpha": {"num": 5}, "align": "weights",
                       "bn": "reset", "bn_batches": 3}]}
    run = run_in_process(raw, tmp_path / "s")
    c = run.curves.collect()
    plain, aligned = (c.filter(pl.col("sweep") == s, pl.col("split") == "test").sort("alpha") for s in ("i5", "i5a"))
    assert plain.height == aligned.height == 5
    # θ_a's end is the same network; θ_b's end is a permutation of the same function (BN statistics re-estimated)
    assert aligned["loss_mean"][0] == pytest.approx(plain["loss_mean"][0], rel=0.05)
    assert aligned["loss_mean"][-1] == pytest.approx(plain["loss_mean"][-1], rel=0.05)


def _tiny_vit(seed: int):
    """torchvision's VisionTransformer, small; every parameter drawn (its head starts at zero, which would
    hide any change of function)."""
    from torchvision.models import VisionTransformer

    torch.manual_seed(seed)
    m = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
                          num_classes=10).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5) if p.dim() != 1 else p.uniform_(-0.5, 0.5)
        for mod in m.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.weight.uniform_(0.5, 1.5)
    return m


def test_a_vit_permuted_by_heads_and_within_heads_keeps_its_function_and_aligns_back_exactly():
    model = _tiny_vit(0)
    spec = permutation_spec(model)  # the input's shape comes from the ViT's image_size
    attn = "encoder.layers.encoder_layer_0.self_attention"
    qk, _, v = spec[f"{attn}.in_proj_weight"][0].groups
    stream = spec["conv_proj.weight"][0]
    # q and k rows share a group (q·k sums over their dimensions), v rows theirs, read by the out-projection
    assert spec[f"{attn}.in_proj_weight"] == (Segments((qk, qk, v), heads=4), stream) and qk != v
    assert spec[f"{attn}.in_proj_weight"][0].heads == 4 and spec[f"{attn}.out_proj.weight"] == (stream, v)
    # one residual stream: the patch embedding, class token, position embedding, every LayerNorm and the
    # attention and MLP outputs; the classifier's outputs are not permuted
    assert spec["class_token"] == spec["encoder.pos_embedding"] == (None, None, stream)
    assert spec["encoder.ln.weight"] == (stream,) and spec["heads.head.weight"] == (None, stream)
    groups = unit_groups(spec, model.state_dict())
    assert {n for n, _ in groups.values()} == {32, 64} and len(groups) == 1 + 2 * 3
    state = {k: v.clone() for k, v in model.state_dict().items()}
    perms = _random_perms(model, 3)
    shuffled = permute(model, state, perms)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        model.load_state_dict(shuffled)
        after = model(x)
        assert (after - before).abs().max() <= 1e-5 * before.abs().max()
        wrong = dict(shuffled, **{f"{attn}.in_proj_weight": state[f"{attn}.in_proj_weight"]})
        model.load_state_dict(wrong)  # the heads' q/k/v rows left behind: another function
        assert (model(x) - before).abs().max() > 1e-2 * before.abs().max()
        across = permute(model, state, {**_random_perms(model, 3), qk: torch.randperm(32)})
        model.load_state_dict(across)  # q/k rows moved across heads: another function
        assert (model(x) - before).abs().max() > 1e-2 * before.abs().max()
    back = align(model, state, shuffled)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_attention_and_shapes_alignment_cannot_follow_are_named():
    class Cross(nn.Module):  # attention whose keys have their own width: separate projections
        def __init__(self):
            super().__init__()
            self.q, self.kv = nn.Linear(4, 8), nn.Linear(4, 6)
            self.attn = nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True)
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(self.attn(self.q(x), self.kv(x), self.kv(x))[0].mean(1))
    with pytest.raises(AlignmentError, match=r"attn .*separate q/k/v projections"):
        permutation_spec(Cross(), (5, 4))

    class Tokens(nn.Module):  # tokens from a reshape: followed only with the input's shape
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x.reshape(x.shape[0], -1, 4))).mean(1))
    with pytest.raises(AlignmentError, match="input's shape"):
        permutation_spec(Tokens())
    assert permutation_spec(Tokens(), (3, 4))["fc1.weight"][0] is not None

    class Split(nn.Module):  # a reshape that splits a layer's units into pieces (maxout-like)
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(self.fc1(x).reshape(x.shape[0], 4, 2).amax(-1))
    with pytest.raises(AlignmentError, match="splitting or mixing the unit axis"):
        permutation_spec(Split(), (4,))


def test_the_heads_assignment_is_the_exact_optimum_of_heads_and_dimensions_within_them():
    """Brute force over every permutation that moves 3 heads as units and 2 dimensions inside each (q/k and
    v alike in their heads, independently inside): the nested assignment reaches the best total."""
    import itertools

    import numpy as np

    from raysweep.evaluate.align import head_assignment

    rng = np.random.default_rng(0)
    heads, d = 3, 2
    cq, cv = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    best = -np.inf
    inner = list(itertools.permutations(range(d)))
    for order in itertools.permutations(range(heads)):
        for sq in itertools.product(inner, repeat=heads):
            q = [order[h] * d + sq[h][i] for h in range(heads) for i in range(d)]
            vq = max(sum(cv[h * d + i, order[h] * d + sv[h][i]] for h in range(heads) for i in range(d))
                     for sv in itertools.product(inner, repeat=heads))
            best = max(best, sum(cq[i, q[i]] for i in range(6)) + vq)
    pq, pv = head_assignment(cq, cv, heads)
    got = sum(cq[i, int(pq[i])] + cv[i, int(pv[i])] for i in range(6))
    assert got == pytest.approx(best, abs=1e-12)
    assert [int(p) // d for p in pq[::d]] == [int(p) // d for p in pv[::d]]  # q/k and v move their heads alike
