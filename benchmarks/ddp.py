"""Benchmark 10 — data-parallel step time: raysweep's ranks on Ray Train against plain torch.distributed.

Two gloo ranks on this machine train torchvision's ResNet-18 on in-memory 64 × 64 images (a realistic
step: ≥ 300 ms here), global batch 64:
(a) the plain baseline: torch.multiprocessing + init_process_group + DistributedDataParallel + the
mean cross-entropy, the loop every DDP tutorial writes; (b) raysweep: a Ray Train TorchTrainer whose
workers run raysweep's own update (`train/loop.sgd_step` with its rank: DDP-wrapped model, each rank's
slice of the global batch, loss sums scaled to the global batch's mean). Median step time after a
warm-up, side by side in one run.

    python benchmarks/ddp.py
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent))

BATCH, STEPS, WARMUP, N, SIDE = 64, 60, 10, 1_024, 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _data():
    import torch

    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (N, 3, SIDE, SIDE), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (N,), generator=g))


def _model(seed: int = 0):
    from raysweep.models import build_model
    from raysweep.spec import ModelSpec

    return build_model(ModelSpec(name="resnet18"), (3, SIDE, SIDE), 10, seed=seed)


def _plain_rank(rank: int, world: int, port: int, out) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x, y = _data()
    model = torch.nn.parallel.DistributedDataParallel(_model())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    times, local = [], BATCH // world
    for step in range(STEPS):
        t = time.perf_counter()
        i = (step * BATCH) % (N - BATCH) + rank * local
        xb = (x[i:i + local].float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
        loss = torch.nn.functional.cross_entropy(model(xb), y[i:i + local])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    if rank == 0:
        out.put(statistics.median(times[WARMUP:]))
    dist.destroy_process_group()


def plain(world: int) -> float:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_plain_rank, args=(r, world, port, out)) for r in range(world)]
    for p in procs:
        p.start()
    result = out.get(timeout=600)
    for p in procs:
        p.join()
    return result


def _ray_rank(config: dict) -> None:
    import ray.train
    import torch

    from raysweep.data.types import Splits
    from raysweep.evaluate.sums import pick_device
    from raysweep.spec import parse_job
    from raysweep.train.loop import setup, sgd_step
    from raysweep.train.parallel import Rank

    torch.set_num_threads(1)
    ctx = ray.train.get_context()
    rank = Rank(ctx.get_world_rank(), ctx.get_world_size())
    job = parse_job({"name": "ddpbench", "model": {"name": "resnet18"},
                     "train": {"batch_size": BATCH, "lr": 0.1, "momentum": 0.9}})
    x, y = _data()
    data = Splits(x, y, x[:1], y[:1], 10, mean=MEAN, std=STD)
    device = pick_device("cpu")
    model, opt = setup(job, data, device, seed=0)
    model = rank.wrap(model, device)
    times, per_epoch = [], N // BATCH
    for step in range(STEPS):
        t = time.perf_counter()
        i = (step * BATCH) % (N - BATCH)
        idx = torch.tensor_split(torch.arange(i, i + BATCH), rank.world)[rank.rank]
        sgd_step(job, data, model, opt, x[idx], y[idx], step, per_epoch, device, None, rank)
        times.append(time.perf_counter() - t)
    if rank.lead:  # Train V2 attaches metrics to checkpoints only: the number goes through a file
        Path(config["out"]).write_text(str(statistics.median(times[WARMUP:])))


def with_ray_train(world: int) -> float:
    import tempfile

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from raysweep.connect import init_ray, shutdown_ray

    init_ray(num_cpus=os.cpu_count())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = TorchTrainer(_ray_rank, train_loop_config={"out": f"{tmp}/median"},
                                  torch_config=TorchConfig(backend="gloo"),
                                  scaling_config=ScalingConfig(num_workers=world, resources_per_worker={"CPU": 1}),
                                  run_config=RunConfig(storage_path=tmp, name="ddpbench")).fit()
            if result.error:
                raise SystemExit(f"the Ray Train run failed: {result.error}")
            return float(Path(f"{tmp}/median").read_text())
    finally:
        shutdown_ray()


def main() -> None:
    from common import publish, table

    ap = argparse.ArgumentParser()
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    world = 2
    plains, rays = [plain(world)], []
    for _ in range(2):  # interleaved: the machine's drift falls on both alike
        rays.append(with_ray_train(world))
        plains.append(plain(world))
    base, b = statistics.median(plains), statistics.median(rays)
    over = b / base - 1
    rows = [["torch.distributed + DDP, mean loss (the baseline)", " / ".join(f"{t * 1e3:.2f}" for t in plains), "—"],
            ["raysweep on Ray Train: sgd_step with its rank (DDP, sums scaled to the global batch)",
             " / ".join(f"{t * 1e3:.2f}" for t in rays), f"{over:+.1%}"]]
    text = (f"### 10. Data-parallel step time — raysweep on Ray Train vs plain DDP\n\n`python benchmarks/ddp.py` — "
            f"{world} gloo ranks on this machine (1 thread each), torchvision ResNet-18 on {SIDE} × {SIDE} images, "
            f"global batch {BATCH} ({BATCH // world} per rank), "
            f"median of {STEPS - WARMUP} steps after {WARMUP} warm-up steps, measured interleaved (baseline, raysweep, "
            f"baseline, raysweep, baseline).\n\n"
            + table(["loop", "median step (ms), each measurement", "median vs median"], rows)
            + f"\n\nTarget: ≤ 5% over plain DDP — {'met' if over <= 0.05 else 'NOT met'} ({over:+.1%}).")
    publish("ddp", text, print_only=args.no_write)


if __name__ == "__main__":
    main()
