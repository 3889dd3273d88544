"""The baseline of benchmark 3: what a competent researcher writes instead of raysweep for `digits_mlp` — one
process, no Ray, no store: train the 3 replicates (the job's recipe: a 64-128-64-10 ReLU MLP, OpenLTH's init,
SGD lr 0.1 without momentum, batch 32, 30 epochs, weights kept in memory at F's checkpoints), evaluate the same
7,803 full-split points (I1 on train and test, I2 from each of the 13 checkpoints, I4's three 200-point windows,
I5 and I5 after weight matching, I6 from a random point of 4× an init's norm, I7 on [−0.5, 1.5]) and the T2
projection, and write the points as CSV. Run alone it prints its wall time.

    python benchmarks/plain_digits.py OUT_FOLDER
"""
from __future__ import annotations

import sys
import time

T0 = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from raysweep.data.offline import digits  # noqa: E402  (the same data: loading it is not the work timed)
from raysweep.jobs import load_job  # noqa: E402
from raysweep.models import build_model  # noqa: E402
from raysweep.train.schedule import checkpoint_steps  # noqa: E402


def train(job, data, k: int) -> dict[int, dict]:
    """Replicate k: its weights at every checkpoint step (copies kept in memory)."""
    torch.manual_seed(job.seed + k)
    model = build_model(job.model, (1, 8, 8), 10, seed=job.seed + k)
    opt = torch.optim.SGD(model.parameters(), lr=job.train.lr, momentum=job.train.momentum)
    steps = set(checkpoint_steps(job.train, len(data.train_y)))
    x, y = data.train_x.float(), data.train_y
    g = torch.Generator().manual_seed(job.seed + k)
    kept, step = {0: {n: t.clone() for n, t in model.state_dict().items()}}, 0
    model.train()
    for _ in range(job.train.epochs):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), job.train.batch_size):
            idx = order[i:i + job.train.batch_size]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step in steps:
                kept[step] = {n: t.clone() for n, t in model.state_dict().items()}
    return kept


def evaluate(model, a: dict, b: dict, alphas, x, y) -> list[tuple[float, float, float]]:
    """(α, loss, error) on the whole split at each α of the line a → b."""
    out = []
    with torch.inference_mode():
        for alpha in alphas:
            model.load_state_dict({n: (1 - alpha) * a[n] + alpha * b[n] for n in a})
            logits = model(x)
            out.append((alpha, torch.nn.functional.cross_entropy(logits, y).item(),
                        (logits.argmax(1) != y).float().mean().item()))
    return out


def match(a: dict, b: dict) -> dict:
    """Weight matching of an MLP (Ainsworth et al. 2023): permute b's hidden units to a's, layer by layer,
    iterated until no permutation changes."""
    names = [n for n in a if n.endswith(".weight")]
    perms = [torch.arange(a[n].shape[0]) for n in names[:-1]]
    for _ in range(20):
        changed = False
        for i in range(len(perms)):
            w_in, w_out = names[i], names[i + 1]
            prev = perms[i - 1] if i else torch.arange(a[w_in].shape[1])
            cost = a[w_in] @ b[w_in][:, prev].T + a[w_in.replace("weight", "bias")][:, None] * b[
                w_in.replace("weight", "bias")][None, :]
            nxt = perms[i + 1] if i + 1 < len(perms) else torch.arange(a[w_out].shape[0])
            cost = cost + a[w_out].T @ b[w_out][nxt]
            _, col = linear_sum_assignment(cost.numpy(), maximize=True)
            col = torch.as_tensor(col)
            if not torch.equal(col, perms[i]):
                perms[i], changed = col, True
        if not changed:
            break
    out = dict(b)
    for i, p in enumerate(perms):
        w, bias, nxt = names[i], names[i].replace("weight", "bias"), names[i + 1]
        out[w], out[bias] = out[w][p], out[bias][p]
        out[nxt] = out[nxt][:, p]
    return out


def main(out: str) -> None:
    torch.set_num_threads(2)
    job = load_job("digits_mlp")
    from raysweep.spec import DataSpec

    data = digits(DataSpec())
    splits = {"train": (data.train_x.float(), data.train_y), "test": (data.test_x.float(), data.test_y)}
    t_train = time.perf_counter()
    runs = [train(job, data, k) for k in range(job.replicates)]
    t_train = time.perf_counter() - t_train
    model = build_model(job.model, (1, 8, 8), 10).eval()
    rows = []

    def line(name, a, b, grid, split="test", tag=""):
        rows.extend((name, tag, split, *r) for r in evaluate(model, a, b, grid, *splits[split]))
    t_eval = time.perf_counter()
    grid = list(np.linspace(0, 1, 100))
    for k, ck in enumerate(runs):
        final = ck[max(ck)]
        for split in ("train", "test"):
            line("init_to_final", ck[0], final, grid, split, f"r{k}")
        for step, theta in sorted(ck.items()):
            line("step_to_final", theta, final, grid, tag=f"r{k}-s{step}")
        for name, lo, hi in (("hires", 0, 1), ("hires_start", 0, 0.01), ("hires_end", 0.99, 1)):
            line(name, ck[0], final, list(np.linspace(lo, hi, 200)), tag=f"r{k}")
        torch.manual_seed(10_000 + k)
        random = {n: 4 * t for n, t in build_model(job.model, (1, 8, 8), 10, seed=10_000 + k).state_dict().items()}
        line("random_to_final", random, final, grid, tag=f"r{k}")
        line("extrapolate", ck[0], final, [round(-0.5 + i * 0.01, 12) for i in range(201)], tag=f"r{k}")
        flat = {s: torch.cat([t.reshape(-1) for t in theta.values()]) for s, theta in ck.items()}
        u = flat[max(flat)] - flat[0]
        u = u / u.norm()
        for s, v in flat.items():  # T2: α(t), β(t)
            d = v - flat[0]
            rows.append(("projection", f"r{k}-s{s}", "", float(d @ u), float((d - (d @ u) * u).norm()), 0.0))
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            a, b = runs[i][max(runs[i])], runs[j][max(runs[j])]
            line("final_to_final", a, b, grid, tag=f"r{i}-r{j}")
            line("final_to_final_aligned", a, match(a, b), grid, tag=f"r{i}-r{j}")
    t_eval = time.perf_counter() - t_eval
    evaluations = sum(1 for r in rows if r[0] != "projection")
    import csv
    from pathlib import Path

    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / "points.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    print(f"plain: {evaluations} evaluations, train {t_train:.1f}s, evaluate {t_eval:.1f}s, "
          f"total {time.perf_counter() - T0:.1f}s (imports included)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "plain-digits-out")
