"""`raysweep export`: a point of a sweep's line, θ(α) = (1−α)·θ_a + α·θ_b, as a safetensors state dict
that the model's builder loads with `load_state_dict` — the merged model of a WiSE-FT-style sweep, or
any α a curve shows."""
from __future__ import annotations

from pathlib import Path

from raysweep.errors import SpecError
from raysweep.spec import LINE_KINDS


def pick(items: list, sweep, replicate: int | None, pair: tuple[int, int] | None, step: int | None):
    """The planned item whose endpoints the user named (the first item of a sweep with one pair)."""
    def ok(it):
        return ((replicate is None or it.a.replicate == replicate)
                and (pair is None or (it.a.replicate, it.b.replicate) == pair)
                and (step is None or it.a.step == step))
    found = [it for it in items if it.sweep == sweep.name and ok(it)]
    if not found:
        pairs = sorted({(it.a.replicate, it.a.step, it.b.replicate, it.b.step) for it in items if it.sweep == sweep.name})
        raise SpecError(f"sweep {sweep.name!r} has no pair with these endpoints; its pairs (replicate_a, step_a, "
                        f"replicate_b, step_b) are {pairs[:12]}{' ...' if len(pairs) > 12 else ''}: name one with "
                        f"--replicate K (and --step T for step_to_final) or --pair I,J (final_to_final)")
    return found[0]


def export(run, sweep_name: str, alpha: float, out: str, replicate: int | None = None,
           pair: tuple[int, int] | None = None, step: int | None = None) -> dict:
    """Write θ(α) of one pair of a line sweep to `out` (.safetensors); returns what was written."""
    import torch
    from safetensors.torch import save_file

    from raysweep.evaluate.align import align
    from raysweep.io.checkpoints import load_tensors
    from raysweep.models import build_model

    sweep = run.job.sweep(sweep_name)
    if sweep.kind not in LINE_KINDS:
        raise SpecError(f"sweep {sweep_name!r} is a {sweep.kind} sweep; export takes a line sweep ({list(LINE_KINDS)})")
    if not (-1e6 < alpha < 1e6):
        raise SpecError(f"--alpha {alpha} is not a finite number of reasonable size")
    it = pick(run.plan([sweep_name]), sweep, replicate, pair, step)
    a, b = (load_tensors(run.store, e.path, e.sha256 or None) for e in (it.a, it.b))
    if sweep.align == "weights":  # the line the sweep evaluated: θ_b's units matched to θ_a's
        info = run.data_info()
        with torch.device("meta"):
            model = build_model(run.job.model, tuple(info.in_shape), info.num_classes)
        b = align(model, a, b)
    if it.params:  # a subset moved: the other tensors stay at `hold`'s values, as the sweep evaluated them
        keep = set(it.params)
        if it.hold == "b":
            a = {n: t if n in keep else b[n] for n, t in a.items()}
        else:
            b = {n: t if n in keep else a[n] for n, t in b.items()}
    state = {n: ((1 - alpha) * a[n].double() + alpha * b[n].double()).to(a[n].dtype) if a[n].is_floating_point()
             else b[n] for n in a}
    if sweep.bn == "reset":  # the sweep re-estimated BN statistics at each α: so does the exported point
        state = reestimated_bn(run, state, sweep.bn_batches)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    meta = {"job": run.job.name, "hash": run.job.hash, "sweep": sweep_name, "alpha": repr(alpha), "bn": sweep.bn,
            "a": f"replicate {it.a.replicate} step {it.a.step} sha256 {it.a.sha256}",
            "b": f"replicate {it.b.replicate} step {it.b.step} sha256 {it.b.sha256}"}
    save_file({n: t.contiguous() for n, t in state.items()}, out, metadata=meta)
    return meta


def reestimated_bn(run, state: dict, bn_batches: int) -> dict:
    """`state` with its BatchNorm running statistics re-estimated on the training batches the sweep's
    evaluator uses (the same fixed order); a model without BatchNorm comes back as it was."""
    import torch

    from raysweep.evaluate.evaluator import Evaluator

    evaluator = Evaluator(run.job, run.store)
    if not evaluator.has_bn:
        return state
    evaluator.set_weights([state[n].to(evaluator.device) for n in evaluator.names])
    evaluator.reestimate_bn(bn_batches)
    with torch.no_grad():
        return {n: t.detach().to("cpu", memory_format=torch.contiguous_format)
                for n, t in evaluator.model.state_dict().items()}
