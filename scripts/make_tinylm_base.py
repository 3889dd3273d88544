"""Makes raysweep/jobs/tinylm_base/: the pretrained model that the built-in job `tinylm_finetunes` fine-tunes.

tinylm_lmc's GPT-2 (2 layers x 64, 4 heads, tied embeddings, byte-level) trained from seed 0 on the first half
of pydoc's training documents (data.part = [0, 2]) — AdamW 0.003, weight decay 0.01, batch 64, 8 epochs, windows
of 64 bytes — then saved with transformers' save_pretrained (config.json + model.safetensors, the tied head
omitted as Hugging Face writes it). Deterministic on one machine; rerun it to remake the folder:

    python scripts/make_tinylm_base.py
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from raysweep.data.registry import load_splits
from raysweep.evaluate.sums import count, split_sums, training_loss
from raysweep.jobs import load_job
from raysweep.models import build_model

OUT = Path(__file__).resolve().parent.parent / "raysweep" / "jobs" / "tinylm_base"


def main() -> None:
    torch.set_num_threads(2)
    job = load_job("tinylm_lmc", ["data.part=[0,2]", "train.epochs=8"])
    data = load_splits(job.data)
    model = build_model(job.model, data.in_shape, data.num_classes, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=job.train.lr, weight_decay=job.train.weight_decay)
    g = torch.Generator().manual_seed(0)
    model.train()
    for epoch in range(job.train.epochs):
        order = torch.randperm(len(data.train_y), generator=g)
        for i in range(0, len(order), job.train.batch_size):
            idx = order[i:i + job.train.batch_size]
            loss = training_loss(model(data.train_x[idx]), data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            test = split_sums(model, data.test_x, data.test_y, 256)[0].item() / count(data.test_y)
        model.train()
        print(f"epoch {epoch + 1}: test loss {test:.4f} nats per byte")
    model.eval()
    model._forward_hooks.clear()  # the folder is the plain transformers model
    model.save_pretrained(OUT)
    (OUT / "README.md").write_text(
        "The pretrained model of the built-in job `tinylm_finetunes`, made by `python scripts/make_tinylm_base.py` "
        f"(tinylm_lmc's GPT-2 trained on the first half of pydoc's training documents). Test loss {test:.4f} nats "
        "per byte.\n")
    print(json.dumps({"out": str(OUT), "test_loss": test}))


if __name__ == "__main__":
    main()
