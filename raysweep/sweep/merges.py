"""Merge sweeps' items: one per sweep, over every replicate's final checkpoint. Task arithmetic, TIES and
DARE need one θ_pre: the replicates' shared step 0 (replicates fine-tuned from one `train.init_from`)."""
from __future__ import annotations

from raysweep.errors import SpecError
from raysweep.io import paths
from raysweep.spec import SweepSpec, sweep_hash
from raysweep.work.items import MergeItem
from raysweep.work.kinds import sweep_folder


def merge_items(ctx, sweep: SweepSpec, before: list) -> list[MergeItem]:
    ks = sorted(ctx.finals)
    members = tuple(ctx.finals[k] for k in ks)
    base, lambdas = (), ()
    if sweep.kind != "soup":  # task arithmetic, TIES, DARE: task vectors from one θ_pre
        starts = {ctx.endpoint(k, 0).sha256 for k in ks}
        if len(starts) != 1:
            raise SpecError(
                f"sweeps.{sweep.name}: {sweep.kind} merges the replicates' task vectors θ_k − θ_pre onto one "
                f"θ_pre, but their step-0 checkpoints differ; fine-tune every replicate from one checkpoint "
                f"(train.init_from) so that step 0 is θ_pre"
            )
        base, lambdas = (ctx.endpoint(ks[0], 0),), tuple(sweep.alpha.points())
    key = "__".join(f"r{k}-final" for k in ks) + f"__{sweep.kind}"  # names its replicates (items.key_replicates)
    folder = sweep_folder(ctx.run, sweep)
    return [MergeItem(sweep.name, sweep.kind, sweep_hash(sweep), key, paths.point_file(folder, key), members, base,
                      lambdas, tuple(sweep.splits), sweep.trim)]
