"""Checkpoints trained elsewhere: two replicates of smallconv trained by a plain PyTorch loop (no
raysweep), saved with torch.save, then swept with `raysweep interpolate`.

    cd examples && python external_checkpoints.py /tmp/ckpts
    raysweep interpolate --model smallconv.nets:build --data smallconv.data:load \
        /tmp/ckpts/seed0.pt /tmp/ckpts/seed1.pt --alpha -0.25:1.25:31
"""
import sys
from pathlib import Path

import torch
from smallconv.data import load
from smallconv.nets import build


def train(seed: int, epochs: int = 3) -> dict:
    torch.manual_seed(seed)
    data = load("")
    model = build((1, 8, 8), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = (data.train_x.float() / 255 - 0.30) / 0.37
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(32):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.state_dict()


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "checkpoints")
    out.mkdir(parents=True, exist_ok=True)
    for seed in (0, 1):
        torch.save(train(seed), out / f"seed{seed}.pt")
        print(out / f"seed{seed}.pt")
