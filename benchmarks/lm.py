"""Benchmark 9 — a language model's line: the Evaluator against the Hugging Face loops researchers write.

tinylm_lmc's GPT-2 (2 layers x 64, tied embeddings) on pydoc's test split (171 windows of 64 byte tokens), one
pair, `--alphas` points, the same tokens and the same α for every method:
  raysweep        Evaluator.evaluate_pair: θ(α) written in place (each tied parameter once), the split resident,
                  one sync per α; loss, error, perplexity and bits per byte over the valid tokens
  strongest loop  what a competent researcher writes for speed: inference_mode, the model's parameters lerped in
                  place (torch._foreach_lerp_), the whole split in batches of `--batch`, one .item() per α
  plain loop      per α: the interpolated state dict, load_state_dict, batches of 16 through the ModelOutput,
                  F.cross_entropy(ignore_index=-100) summed and divided by the valid tokens

    python benchmarks/lm.py [--alphas 25] [--batch 16]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent))

from common import publish, table, timed  # noqa: E402

from raysweep.data.registry import load_splits  # noqa: E402
from raysweep.evaluate.evaluator import Evaluator  # noqa: E402
from raysweep.io.store import Store  # noqa: E402
from raysweep.jobs import load_job  # noqa: E402
from raysweep.models import build_model, count_parameters  # noqa: E402


def plain_loop(model, sa, sb, alphas, x, y, batch=16):
    out = []
    for a in alphas:
        model.load_state_dict({k: (1 - a) * sa[k] + a * sb[k] for k in sa})
        total, n = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(x), batch):
                logits = model(x[i:i + batch])
                yb = y[i:i + batch]
                total += F.cross_entropy(logits.flatten(0, 1), yb.flatten(), ignore_index=-100,
                                         reduction="sum").item()
                n += int((yb != -100).sum())
        out.append(total / n)
    return out


def strongest_loop(model, sa, sb, alphas, x, y, batch):
    params = dict(model.named_parameters())  # a tied parameter once
    targets = [p.data for p in params.values()]
    a_list, b_list = [sa[n] for n in params], [sb[n] for n in params]
    n = int((y != -100).sum())
    out = []
    with torch.inference_mode():
        for a in alphas:
            torch._foreach_copy_(targets, a_list)
            torch._foreach_lerp_(targets, b_list, float(a))
            total = torch.zeros((), dtype=torch.float64)
            for i in range(0, len(x), batch):
                logits = model(x[i:i + batch])
                total += F.cross_entropy(logits.flatten(0, 1), y[i:i + batch].flatten(), ignore_index=-100,
                                         reduction="sum").double()
            out.append(total.item() / n)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alphas", type=int, default=25)
    p.add_argument("--batch", type=int, default=16, help="the loops' batch (16: the fastest on 2 CPU cores)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(2)
    job = load_job("tinylm_lmc")  # its own eval.batch_size; the Evaluator picks its CPU batch itself
    data = load_splits(job.data)
    x, y = data.test_x, data.test_y
    a_model = build_model(job.model, data.in_shape, data.num_classes, seed=1).eval()
    b_model = build_model(job.model, data.in_shape, data.num_classes, seed=2).eval()
    sa, sb = a_model.state_dict(), b_model.state_dict()
    alphas = [i / (args.alphas - 1) for i in range(args.alphas)]
    with tempfile.TemporaryDirectory() as tmp:
        evaluator = Evaluator(job, Store(tmp), splits=data, device="cpu")
        ta, tb = [sa[n] for n in evaluator.names], [sb[n] for n in evaluator.names]
        evaluator.evaluate_pair(ta, tb, alphas[:1], ("test",))  # warm-up: the split moved once
        t_ours, rows = timed(lambda: evaluator.evaluate_pair(ta, tb, alphas, ("test",)), repeat=3)
    model = build_model(job.model, data.in_shape, data.num_classes).eval()
    t_strong, strong = timed(lambda: strongest_loop(model, sa, sb, alphas, x, y, args.batch), repeat=3)
    hf = a_model.__class__(a_model.config).eval()  # the transformers model, returning its ModelOutput
    hf._forward_hooks.clear()

    def hf_forward(xb):
        return hf(input_ids=xb).logits

    class Plain(torch.nn.Module):
        def load_state_dict(self, state):
            return hf.load_state_dict(state)

        def __call__(self, xb):
            return hf_forward(xb)

    t_plain, plain = timed(lambda: plain_loop(Plain(), sa, sb, alphas, x, y), repeat=3)
    ours = [r["loss"] for r in rows]
    diff = max(abs(o - q) / q for o, q in zip(ours, plain))
    diff_strong = max(abs(o - q) / q for o, q in zip(ours, strong))
    tokens = int((y != -100).sum())
    body = [
        ["raysweep Evaluator", f"{t_ours:.2f}", f"{tokens * args.alphas / t_ours:,.0f}", f"{t_plain / t_ours:.2f}x"],
        [f"strongest loop (inference_mode, in-place lerp, batch {args.batch})", f"{t_strong:.2f}",
         f"{tokens * args.alphas / t_strong:,.0f}", f"{t_plain / t_strong:.2f}x"],
        ["plain Hugging Face loop (state dict, load_state_dict, batch 16, ModelOutput)", f"{t_plain:.2f}",
         f"{tokens * args.alphas / t_plain:,.0f}", "1.00x"],
    ]
    ratio = t_strong / t_ours
    text = (f"### 9. A language model's line — tinylm_lmc's GPT-2 ({count_parameters(a_model):,} parameters), "
            f"pydoc test split ({len(x)} windows, {tokens:,} tokens), one pair, {args.alphas} α\n\n"
            f"`python benchmarks/lm.py`\n\n"
            + table(["method", "seconds", "tokens/s", "speed-up vs plain loop"], body)
            + f"\n\nEach time is the best of 3 runs (on a small shared VM, repeated runs still move by about ±15%). "
              f"Largest relative loss difference from the plain loop: {diff:.1e}; from the strongest loop: "
              f"{diff_strong:.1e}. Target: at least as fast as the plain Hugging Face loop — "
              f"{'met' if t_ours <= t_plain else 'NOT met'}; against the strongest loop: {ratio:.2f}x its speed.")
    publish("lm", text, args.no_write)


if __name__ == "__main__":
    main()
