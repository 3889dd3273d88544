"""Benchmark 4 — ResNet-50 evaluation throughput on a resident uint8 split.

img/s of a full-split forward pass for fp32, TF32, bf16, bf16 + channels_last (+ torch.compile, conv-BN
folding, CUDA graphs), and the sweep stage's sustained rate (the Evaluator over a pair and several α,
as a work item runs).
On CUDA the split is 50,000 images; on a CPU the same code runs at a small size to show it works
(`--images`), and its numbers are not GPU numbers.

    python benchmarks/gpu.py                  # on a GPU machine
    python benchmarks/gpu.py --images 64      # a CPU smoke run
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent))

from common import publish, table  # noqa: E402
from raysweep.io.checkpoints import save_tensors  # noqa: E402
from raysweep.data import IMAGENET_MEAN, IMAGENET_STD, Splits  # noqa: E402
from raysweep.evaluate import Evaluator, pick_device, split_sums  # noqa: E402
from raysweep.models import build_model  # noqa: E402
from raysweep.spec import parse_job  # noqa: E402
from raysweep.io.store import Store  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=None, help="split size [50,000 on CUDA, 64 on CPU]")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--alphas", type=int, default=3, help="α per sweep work item")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    device = pick_device("auto")
    cuda = device.type == "cuda"
    n = args.images or (50_000 if cuda else 64)
    batch = args.batch or (500 if cuda else 32)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 224, 224), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 1000, (n,), generator=g).to(device)
    data = Splits(x, y, x, y, 1000, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    modes = [("fp32", dict(tf32=False)), ("TF32", dict(tf32=True)), ("bf16", dict(tf32=True, bf16=True)),
             ("bf16 + channels_last", dict(tf32=True, bf16=True, cl=True)),
             ("bf16 + channels_last + compile", dict(tf32=True, bf16=True, cl=True, compile=True)),
             ("bf16 + channels_last + conv-BN folding", dict(tf32=True, bf16=True, cl=True, fold=True)),
             ("bf16 + channels_last + folding + compile", dict(tf32=True, bf16=True, cl=True, fold=True, compile=True)),
             ("bf16 + channels_last + folding + CUDA graphs (compile reduce-overhead)",
              dict(tf32=True, bf16=True, cl=True, fold=True, compile="reduce-overhead"))]
    if not cuda:
        modes = modes[:1] + [("bf16 (CPU autocast)", dict(bf16=True)), ("fp32 + conv-BN folding", dict(fold=True))]
    rows, best = [], 0.0
    for name, m in modes:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = m.get("tf32", False)
        model = build_model(parse_job({"name": "b", "model": {"name": "resnet50"}}).model, (3, 224, 224), 1000, seed=0)
        model = model.to(device).eval()
        prep = data.prepare
        if m.get("cl"):
            model = model.to(memory_format=torch.channels_last)
            prep = lambda b: data.prepare(b, channels_last=True)  # noqa: E731
        net = model
        if m.get("fold"):
            from raysweep.evaluate.fold import fold

            folded = fold(model)
            folded.refold()
            net = folded.module
        compile_mode = m.get("compile")
        fwd = torch.compile(net, mode=compile_mode if isinstance(compile_mode, str) else "default") if compile_mode else net
        with torch.no_grad():
            split_sums(fwd, x[:batch * 2], y[:batch * 2], batch, prep, m.get("bf16", False))  # warm-up
            sync(device)
            t = time.perf_counter()
            split_sums(fwd, x, y, batch, prep, m.get("bf16", False)).tolist()
            sync(device)
        rate = n / (time.perf_counter() - t)
        best = max(best, rate) if "bf16" in name else best
        rows.append([name, f"{rate:,.0f}"])
    # the sweep stage: the Evaluator over one pair, `alphas` α, bf16 + channels_last when on CUDA
    job = parse_job({"name": "b", "model": {"name": "resnet50"}, "data": {"name": "imagenet"},
                     "eval": {"batch_size": batch, "precision": "bf16" if cuda else "fp32",
                              "channels_last": cuda}})
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        ends = [save_tensors(store, f"{i}.safetensors", build_model(job.model, (3, 224, 224), 1000, seed=i).state_dict())
                for i in (1, 2)]
        ev = Evaluator(job, store, data)
        a, b = ev.endpoint("1.safetensors", ends[0]), ev.endpoint("2.safetensors", ends[1])
        ev.evaluate_pair(a, b, [0.5], ("test",))  # warm-up
        sync(device)
        t = time.perf_counter()
        ev.evaluate_pair(a, b, [i / max(1, args.alphas - 1) for i in range(args.alphas)], ("test",))
        sync(device)
        sweep_rate = n * args.alphas / (time.perf_counter() - t)
    rows.append([f"sweep stage: Evaluator, {args.alphas} α per item", f"{sweep_rate:,.0f}"])
    where = torch.cuda.get_device_name(0) if cuda else "CPU"
    text = (f"### 4. GPU — ResNet-50 on a resident {n:,}-image uint8 split ({where}, batch {batch})\n\n"
            f"`python benchmarks/gpu.py`\n\n" + table(["mode", "images/s"], rows))
    if cuda:
        text += (f"\n\nTargets on one H100: ≥ 12,000 img/s in bf16 — {'met' if best >= 12_000 else 'NOT met'} "
                 f"({best:,.0f}); sweep ≥ 80% of the bare evaluator — {sweep_rate / best:.0%}.")
    else:
        text += ("\n\nGPU numbers pending: no GPU machine was lent to the session that wrote this. This is the "
                 "CPU smoke run of the same code; run `python benchmarks/gpu.py` on a GPU machine to fill in "
                 "the H100 numbers (targets: ≥ 12,000 img/s in bf16, the sweep ≥ 80% of the bare evaluator).")
    publish("gpu", text, args.no_write)


if __name__ == "__main__":
    main()
