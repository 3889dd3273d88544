"""Activation matching (evaluate/matching.py): a permuted copy is matched back exactly (MLPs, a BN MLP, a CIFAR
ResNet, a ViT's heads); on two different MLPs the permutations are those of a plain numpy computation of the
same correlations; and a final_to_final sweep with align = "activations" runs, lowering the barrier."""
import numpy as np
import polars as pl
import pytest
import torch
from conftest import run_in_process
from scipy.optimize import linear_sum_assignment
from torch import nn

from raysweep.errors import SpecError
from raysweep.evaluate.align import permutation_spec, permute, random_permutations
from raysweep.evaluate.matching import activation_matching, match
from raysweep.models import build_model
from raysweep.spec import ModelSpec, parse_job


def _vit():
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    m = VisionTransformer(image_size=16, patch_size=4, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
                          num_classes=10).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5) if p.dim() != 1 else p.uniform_(-0.5, 0.5)
    return m, (3, 16, 16)


@pytest.mark.parametrize("make", [
    lambda: (build_model(ModelSpec(hidden=(32, 16), activation="relu"), (1, 8, 8), 10, seed=0), (1, 8, 8)),
    lambda: (build_model(ModelSpec(hidden=(24, 12), activation="tanh", batchnorm=True), (1, 8, 8), 10, seed=0),
             (1, 8, 8)),
    lambda: (build_model(ModelSpec(name="cifar_resnet_20"), (3, 32, 32), 10, seed=0), (3, 32, 32)),
    _vit,
], ids=["mlp", "bn-mlp", "resnet20", "vit"])
def test_a_permuted_copy_is_matched_back_exactly(make):
    model, shape = make()
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    perms = random_permutations(permutation_spec(model, shape), state, torch.Generator().manual_seed(1))
    shuffled = permute(model, state, perms, shape)
    inputs = [torch.randn(64, *shape, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    back = match(model, state, shuffled, "activations", shape, lambda: inputs)
    assert all(torch.equal(back[k], state[k]) for k in state)  # every unit found its twin


def _mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 7), nn.ReLU(), nn.Linear(7, 3)).eval()


def test_two_different_nets_get_the_assignment_of_a_plain_numpy_correlation():
    a, b = _mlp(0), _mlp(1)
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(5))
    perms = activation_matching(a, a.state_dict(), b.state_dict(), [x[:120], x[120:]], (6,))

    def layers(net):  # pre- and post-ReLU of each hidden layer, by hand
        w1, b1, w2, b2 = (t.detach().double().numpy() for t in list(net.parameters())[:4])
        z1 = x.double().numpy() @ w1.T + b1
        h1 = np.maximum(z1, 0)
        z2 = h1 @ w2.T + b2
        return [(z1, h1), (z2, np.maximum(z2, 0))]

    def corr(u, v):
        n = u.shape[1]
        return np.nan_to_num(np.corrcoef(u.T, v.T)[:n, n:])

    want = []
    for (za, ha), (zb, hb) in zip(layers(a), layers(b)):
        want.append(linear_sum_assignment(corr(za, zb) + corr(ha, hb), maximize=True)[1])
    got = sorted(perms.items(), key=lambda kv: len(kv[1]), reverse=True)  # the groups: 9 units, then 7
    assert [p.tolist() for _, p in got] == [w.tolist() for w in want]


def test_a_final_to_final_sweep_aligned_by_activations_lowers_the_barrier(tmp_path):
    raw = {"name": "actmatch", "replicates": 2, "model": {"name": "mlp", "hidden": [64]},
           "train": {"epochs": 4, "batch_size": 32, "checkpoints": "list", "steps": [0]},
           "sweeps": [{"name": "plain", "kind": "final_to_final", "alpha": {"num": 5}},
                      {"name": "weights", "kind": "final_to_final", "alpha": {"num": 5}, "align": "weights"},
                      {"name": "acts", "kind": "final_to_final", "alpha": {"num": 5}, "align": "activations",
                       "bn_batches": 10}]}
    run = run_in_process(raw, tmp_path / "s")
    mid = {s: run.curves.filter(pl.col("sweep") == s, pl.col("split") == "test", pl.col("alpha") == 0.5).collect()[
        "loss_mean"][0] for s in ("plain", "weights", "acts")}
    ends = run.curves.filter(pl.col("sweep") == "acts", pl.col("split") == "test").sort("alpha").collect()
    plain = run.curves.filter(pl.col("sweep") == "plain", pl.col("split") == "test").sort("alpha").collect()
    assert ends["loss_mean"][-1] == pytest.approx(plain["loss_mean"][-1], rel=1e-4)  # θ_b permuted: its function kept
    assert mid["acts"] < mid["plain"]
    with pytest.raises(SpecError, match="activations"):
        parse_job({**raw, "sweeps": [{**raw["sweeps"][2], "align": "activation"}]})
