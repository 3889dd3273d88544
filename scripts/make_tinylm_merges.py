"""Makes raysweep/jobs/tinylm_merges/: the three fine-tunes of tinylm_base that the built-in job `tinylm_merges`
merges — two full fine-tunes and one LoRA adapter, each on its own part of the pydoc documents the base did not see:

    finetune_a   every parameter, on the training documents i % 4 == 1 (data.part = [1, 4]), AdamW 0.001, seed 0
    finetune_b   every parameter, on the documents i % 4 == 3 (data.part = [3, 4]), AdamW 0.001, seed 1
    lora_c       a LoRA adapter (peft; r 8, lora_alpha 16, on c_attn, c_proj and c_fc) on the documents i % 2 == 1
                 (data.part = [1, 2]), AdamW 0.003, seed 2; base_model_name_or_path = "../../tinylm_base"

Weight decay 0.01, batch 64, 2 epochs, windows of 64 bytes; Hugging Face folders (save_pretrained). Needs the
[lm] extra and peft. Deterministic on one machine; rerun it to remake the folders:

    python scripts/make_tinylm_merges.py
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from raysweep.data.registry import load_splits
from raysweep.evaluate.sums import count, split_sums, training_loss
from raysweep.jobs import load_job

JOBS = Path(__file__).resolve().parent.parent / "raysweep" / "jobs"
BASE, OUT = JOBS / "tinylm_base", JOBS / "tinylm_merges"


def fine_tune(model, part: list[int], lr: float, seed: int) -> float:
    """Two epochs of AdamW on the given part of the documents; returns the test loss (nats per byte)."""
    job = load_job("tinylm_finetunes", [f"data.part={json.dumps(part)}"])
    data = load_splits(job.data)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(2):
        order = torch.randperm(len(data.train_y), generator=g)
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            loss = training_loss(model(input_ids=data.train_x[idx]).logits, data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return split_sums(lambda x: model(input_ids=x).logits, data.test_x, data.test_y, 256)[0].item() / \
            count(data.test_y)


def main() -> None:
    import peft
    import transformers

    torch.set_num_threads(2)
    OUT.mkdir(exist_ok=True)
    losses = {}
    for name, part, seed in (("finetune_a", [1, 4], 0), ("finetune_b", [3, 4], 1)):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(BASE))
        losses[name] = fine_tune(model, part, 0.001, seed)
        model.save_pretrained(OUT / name)
    torch.manual_seed(2)
    base = transformers.AutoModelForCausalLM.from_pretrained(str(BASE))
    model = peft.get_peft_model(base, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn", "c_proj", "c_fc"],
                                                      fan_in_fan_out=True, lora_dropout=0.0))
    losses["lora_c"] = fine_tune(model, [1, 2], 0.003, 2)
    model.save_pretrained(OUT / "lora_c")
    (OUT / "lora_c" / "README.md").unlink(missing_ok=True)  # peft's model card template
    config = json.loads((OUT / "lora_c" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "../../tinylm_base"  # the shipped base, beside this folder
    (OUT / "lora_c" / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (OUT / "README.md").write_text(
        "The fine-tunes of tinylm_base that the built-in job `tinylm_merges` merges, made by "
        "`python scripts/make_tinylm_merges.py`. Test loss (nats per byte): "
        + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()) + ".\n")
    print(json.dumps({"out": str(OUT), **losses}))


if __name__ == "__main__":
    main()
