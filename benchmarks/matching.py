"""Benchmark 13 — weight matching vs activation matching (Ainsworth et al. 2023 §3.1), side by side on the
same pairs of independently trained nets on scikit-learn's digits: the test loss at the midpoint of the line
θ(0.5) between two solutions with θ_b as trained, matched by weights, and matched by activations (on 20
fixed training batches). The digits MLPs of `digits_mlp` (64-128-64-10, SGD) and small torchvision
ViTs (2 layers, 4 heads, width 32, patches 2×2 of the 8×8 digits, Adam) — the transformer where weight
matching barely lowered the midpoint.

    python benchmarks/matching.py [--seeds 3] [--vit-epochs 15,40]
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import publish, table  # noqa: E402

from raysweep.data.batches import train_batches  # noqa: E402
from raysweep.data.registry import load_splits  # noqa: E402
from raysweep.evaluate.matching import match, matching_inputs  # noqa: E402
from raysweep.models import build_model  # noqa: E402
from raysweep.spec import DataSpec, ModelSpec  # noqa: E402


def vit(seed: int) -> nn.Module:
    from torchvision.models import VisionTransformer

    torch.manual_seed(seed)
    m = VisionTransformer(image_size=8, patch_size=2, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
                          num_classes=10)
    m.conv_proj = nn.Conv2d(1, 32, kernel_size=2, stride=2)  # the digits are grayscale
    return m


def train(model: nn.Module, data, epochs: int, batch: int, opt, seed: int) -> nn.Module:
    model.train()
    for epoch in range(epochs):
        for x, y in train_batches(data, batch, seed, epoch):
            opt.zero_grad()
            nn.functional.cross_entropy(model(data.prepare(x)), y).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def test_loss(model: nn.Module, state: dict, data) -> float:
    model.load_state_dict(state)
    return nn.functional.cross_entropy(model(data.prepare(data.test_x)), data.test_y).item()


def midpoint(a: dict, b: dict) -> dict:
    return {k: (a[k] + b[k]) / 2 if a[k].is_floating_point() else a[k] for k in a}


def pairs(make, fit, data, seeds: int, in_shape) -> list[dict]:
    nets = [fit(make(s), s) for s in range(seeds)]
    probe = make(0).eval()
    out = []
    for i, j in itertools.combinations(range(seeds), 2):
        a, b = nets[i].state_dict(), nets[j].state_dict()
        row = {"ends": (test_loss(probe, a, data) + test_loss(probe, b, data)) / 2}
        for how in ("none", "weights", "activations"):
            t = time.perf_counter()
            bb = b if how == "none" else match(probe, a, b, how, in_shape,
                                               lambda: matching_inputs(data, 64, 20, "cpu"))
            row[f"{how}_s"] = time.perf_counter() - t
            row[how] = test_loss(probe, midpoint(a, bb), data)
            row[f"{how}_dist"] = float(sum((a[k].double() - bb[k].double()).square().sum() for k in a
                                           if a[k].is_floating_point()) ** 0.5)
        out.append(row)
    return out


def summary(name: str, rows: list[dict]) -> list:
    ms = lambda k: f"{np.mean([r[k] for r in rows]):.3f} ± {np.std([r[k] for r in rows]):.3f}"  # noqa: E731
    return [name, len(rows), ms("ends"), ms("none"), ms("weights"), ms("activations"),
            f"{np.mean([r['none_dist'] for r in rows]):.1f} / {np.mean([r['weights_dist'] for r in rows]):.1f} / "
            f"{np.mean([r['activations_dist'] for r in rows]):.1f}",
            f"{np.mean([r['weights_s'] for r in rows]):.2f} / {np.mean([r['activations_s'] for r in rows]):.2f}"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--vit-epochs", default="15,40")
    ap.add_argument("--print-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = load_splits(DataSpec(name="digits"))
    mlp_spec = ModelSpec(hidden=(128, 64), activation="relu")
    mlp = pairs(lambda s: build_model(mlp_spec, (1, 8, 8), 10, seed=s),
                lambda m, s: train(m, data, 30, 32, torch.optim.SGD(m.parameters(), lr=0.1), s), data, args.seeds,
                (1, 8, 8))
    vits = {e: pairs(vit, lambda m, s: train(m, data, e, 64, torch.optim.Adam(m.parameters(), lr=1e-3), s), data,
                     args.seeds, (1, 8, 8)) for e in map(int, args.vit_epochs.split(","))}
    header = ["nets", "pairs", "test loss at the ends", "midpoint: as trained", "matched by weights",
              "matched by activations", "‖θ_a − θ_b‖ none / weights / activations", "matching s: weights / acts"]
    rows = [summary("digits MLP 64-128-64-10 (SGD, 30 epochs)", mlp)] + [
        summary(f"ViT 2 layers, 4 heads, width 32 (Adam, {e} epochs)", v) for e, v in vits.items()]
    text = ("Test loss at the midpoint θ(0.5) of the line between two independently trained solutions (mean ± std "
            "over the pairs of " f"{args.seeds} seeds), θ_b as trained, matched to θ_a by weights (Git Re-Basin Alg. "
            "1) and by activations (§3.1: correlations on 20 fixed training batches of 64, pre- and post-"
            "activation and every residual-stream node; attention's q, k, v from its input).\n\n"
            + table(header, rows))
    publish("matching", text, args.print_only)


if __name__ == "__main__":
    main()
