"""The digits_finetune demo: pretrain an MLP on clean digits, then fine-tune 3 replicates from it on shifted
digits and sweep WiSE-FT, the line between fine-tunes (+ sharpness), soups and task arithmetic.

    cd examples && python finetune_demo.py [STORAGE]      # about 2 minutes on 2 CPU cores
"""
import sys
from pathlib import Path

import polars as pl
from safetensors.torch import save_file

import raysweep
from raysweep.io.checkpoints import load_tensors
from raysweep.io.store import Store
from raysweep.jobs import job_from_dict

HERE = Path(__file__).parent
storage = sys.argv[1] if len(sys.argv) > 1 else "./raysweep-results"
PRETRAIN = {"name": "digits_pretrain", "replicates": 1, "data": {"name": "digits"},  # clean digits, one model
            "model": {"name": "mlp", "hidden": [128, 64]},
            "train": {"epochs": 20, "batch_size": 32, "lr": 0.05, "momentum": 0.9}}
pre = raysweep.Run(job_from_dict(PRETRAIN), Store(storage))
pre.train(progress=False)
last = pre.checkpoints.sort("step").collect().row(-1, named=True)
save_file(load_tensors(pre.store, last["path"], last["sha256"]), str(HERE / "pretrained.safetensors"))

run = raysweep.open(str(HERE / "digits_finetune.toml"), storage=storage)
run.run(progress=False)
curves, barriers = run.curves.collect(), run.barriers.collect()
wise = curves.filter(pl.col("sweep") == "wise").pivot(on="split", index="alpha", values="error_mean").sort("alpha")
print("WiSE-FT (error on shifted test / clean test along α):")
print(wise.select("alpha", "test", "test_clean").filter(pl.col("alpha").is_in([0.0, 0.3, 0.5, 0.7, 1.0])))
print("between fine-tunes:", barriers.filter(pl.col("sweep") == "between_finetunes", pl.col("split") == "test")
      .select("metric", "barrier_linear_mean", "barrier_linear_std", "monotone_fraction", "n", "planned"))
print(run.table("sharpness").select("replicate_a", "replicate_b", "alpha", "at_peak", "lambda_max", "trace"))
merges = run.table("merges")
print(
    merges.filter(pl.col("merge") != "task_arithmetic", pl.col("split") != "train").select(
        "merge", "members", "split", "error"
    )
)
print(merges.filter(pl.col("merge") == "task_arithmetic").pivot(on="split", index="lam", values="error"))
