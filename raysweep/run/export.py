"""`raysweep export`: a point of a sweep's line, θ(α) = (1−α)·θ_a + α·θ_b, or of a mode-connecting
curve, φ(t), as a safetensors state dict that the model's builder loads with `load_state_dict` — the
merged model of a WiSE-FT-style sweep, or any α a curve shows — or a merge of a merge sweep
(`export_merge`); a language model's as a Hugging Face folder that `from_pretrained` loads."""
from __future__ import annotations

import os
from pathlib import Path

from raysweep.errors import SpecError
from raysweep.evaluate.line import hold_outside
from raysweep.io.paths import SAFETENSORS
from raysweep.io.runs import locator
from raysweep.spec import MERGE_KINDS, POINT_KINDS

SOUPS = ("uniform", "greedy")


def pick(items: list, sweep, replicate: int | None, pair: tuple[int, int] | None, step: int | None):
    """The planned item whose endpoints the user named (the first item of a sweep with one pair)."""
    def ok(it):
        return ((replicate is None or it.a.replicate == replicate)
                and (pair is None or (it.a.replicate, it.b.replicate) == pair)
                and (step is None or it.a.step == step))
    found = [it for it in items if it.sweep == sweep.name and ok(it)]
    if not found:
        pairs = sorted(
            {(it.a.replicate, it.a.step, it.b.replicate, it.b.step) for it in items if it.sweep == sweep.name}
        )
        raise SpecError(f"sweep {sweep.name!r} has no pair with these endpoints; its pairs (replicate_a, step_a, "
                        f"replicate_b, step_b) are {pairs[:12]}{' ...' if len(pairs) > 12 else ''}: name one with "
                        f"--replicate K (and --step T for step_to_final) or --pair I,J (final_to_final)")
    return found[0]


def export(run, sweep_name: str, alpha: float, out: str, replicate: int | None = None,
           pair: tuple[int, int] | None = None, step: int | None = None, dtype: str | None = None,
           shard: str = "2GB") -> dict:
    """Write θ(α) of one pair of a line sweep, or φ(t = α) of a curve sweep's pair, to `out`
    (.safetensors); returns what was written."""
    import torch

    from raysweep.evaluate.align import align
    from raysweep.io.checkpoints import load_tensors
    from raysweep.models import build_model

    sweep = run.job.sweep(sweep_name)
    if sweep.kind not in POINT_KINDS:
        raise SpecError(
            f"sweep {sweep_name!r} is a {sweep.kind} sweep; export takes a line or curve sweep "
            f"({list(POINT_KINDS)}) with --alpha, or a merge sweep ({list(MERGE_KINDS)}) with --merge or --lam"
        )
    if alpha is None:
        raise SpecError(f"sweep {sweep_name!r} is a line: name its point with --alpha A (θ(α) = (1−α)·θ_a + α·θ_b)")
    if not (-1e6 < alpha < 1e6):
        raise SpecError(f"--alpha {alpha} is not a finite number of reasonable size")
    if sweep.kind == "curve" and not 0 <= alpha <= 1:
        raise SpecError(
            f"sweep {sweep_name!r} is a curve: --alpha is its t, in [0, 1] (θ_a at 0, θ_b at 1), got {alpha}"
        )
    it = pick(run.plan([sweep_name]), sweep, replicate, pair, step)
    a, b = (load_tensors(run.store, e.path, e.sha256 or None) for e in (it.a, it.b))
    if sweep.align == "weights":  # the line the sweep evaluated: θ_b's units matched to θ_a's
        info = run.data_info()
        with torch.device("meta"):
            model = build_model(run.job.model, tuple(info.in_shape), info.num_classes)
        b = align(model, a, b, tuple(info.in_shape))
    elif sweep.align == "activations":  # ... on the training batches the sweep's evaluator matched on
        from raysweep.evaluate.evaluator import Evaluator

        ev = Evaluator(run.job, run.store, device="cpu")
        tb = ev.aligned([a[n] for n in ev.names], [b[n] for n in ev.names], "export", "activations", sweep.bn_batches)
        b = {n: t.detach().cpu() for n, t in zip(ev.names, tb)}
    if sweep.kind == "curve":  # φ(t) through the trained bend, BN statistics recomputed there as the sweep did
        from raysweep.evaluate.bend import curve_point

        bend = load_tensors(run.store, it.bend.path, it.bend.sha256 or None)
        state = reestimated_bn(run, curve_point(sweep.curve.shape, alpha, a, bend, b), sweep.bn_batches)
    else:
        if it.params:  # a subset moved: the other tensors stay at `hold`'s values, as the sweep evaluated them
            names = list(a)
            ta, tb = hold_outside(names, [a[n] for n in names], [b[n] for n in names], it.params, it.hold)
            a, b = dict(zip(names, ta)), dict(zip(names, tb))
        state = {n: ((1 - alpha) * a[n].double() + alpha * b[n].double()).to(a[n].dtype) if a[n].is_floating_point()
                 else b[n] for n in a}
        if sweep.bn == "reset":  # the sweep re-estimated BN statistics at each α: so does the exported point
            state = reestimated_bn(run, state, sweep.bn_batches)
        elif sweep.bn == "repair":  # the sweep corrected every hidden unit (REPAIR): so does the exported point
            state = repaired(run, a, b, alpha, sweep.bn_batches)
    meta = {"job": run.job.name, "hash": run.job.hash, "sweep": sweep_name, "alpha": repr(alpha),
            "bn": "reset" if sweep.kind == "curve" else sweep.bn,
            **({"curve": sweep.curve.shape, "bend": f"{it.bend.path} sha256 {it.bend.sha256}"}
               if sweep.kind == "curve" else {}),
            "a": f"replicate {it.a.replicate} step {it.a.step} sha256 {it.a.sha256}",
            "b": f"replicate {it.b.replicate} step {it.b.step} sha256 {it.b.sha256}"}
    return _write(run, state, out, meta, dtype, shard)


def export_merge(run, sweep_name: str, out: str, merge: str | None = None, lam: float | None = None,
                 pair: tuple[int, int] | None = None, dtype: str | None = None,
                 shard: str = "2GB") -> dict:
    """Write a merged model of a merge sweep: the uniform or greedy soup (the greedy soup's members as
    the sweep chose them, read from the merges table), a task-vector merge at one value of its grid (task
    arithmetic's λ, TIES's density, DARE's drop rate), or SLERP's point t of one pair, exactly as the sweep
    evaluated it."""
    import polars as pl

    from raysweep.evaluate.merges import mean_state, merge_seed, merged_state, slerp
    from raysweep.io.checkpoints import load_tensors, ties

    sweep = run.job.sweep(sweep_name)
    if sweep.kind not in MERGE_KINDS:
        raise SpecError(f"sweep {sweep_name!r} is a {sweep.kind} sweep: --merge and --lam name a merge of a merge "
                        f"sweep ({', '.join(MERGE_KINDS)}); a line's point is named with --alpha")
    items = [it for it in run.plan([sweep_name]) if it.sweep == sweep_name]
    item = items[0]
    if sweep.kind == "slerp":
        pairs = [tuple(e.replicate for e in it.members) for it in items]
        item = next((it for it, p in zip(items, pairs) if pair is None or p == pair), None)
        if item is None or merge is not None or lam is None or not 0 <= lam <= 1:
            raise SpecError(f"sweep {sweep_name!r} is slerp: name its point with --lam T (t in [0, 1]) and its pair "
                            f"with --pair I,J, one of {pairs}; the sweep evaluated t = {list(items[0].lambdas)}")
        a, b = (load_tensors(run.store, e.path, e.sha256 or None) for e in item.members)
        tied = ties(a)
        state = {n: slerp(a[n], b[n], lam) for n in a if n not in tied}
        what = {"merge": "slerp", "lam": repr(lam), "members": ",".join(str(e.replicate) for e in item.members)}
    elif sweep.kind == "soup":
        if merge not in SOUPS or lam is not None:
            raise SpecError(f"sweep {sweep_name!r} is a soup: name the merge with --merge uniform|greedy (not --lam)")
        finals = {e.replicate: e for e in item.members}
        members = sorted(finals)
        if merge == "greedy":  # the members the sweep's greedy pass kept
            rows = run.table("merges").filter(pl.col("sweep") == sweep_name, pl.col("merge") == "greedy")
            if rows.is_empty():
                raise SpecError(f"sweep {sweep_name!r} has not chosen its greedy soup yet: run `raysweep sweep "
                                f"{locator(run.job, run.store)} --sweep {sweep_name}` first (the uniform soup needs "
                                f"no sweep)")
            members = [int(k) for k in rows["members"][0].split(",")]
        states = [load_tensors(run.store, finals[k].path, finals[k].sha256 or None) for k in members]
        tied = ties(states[0])  # a tied parameter is merged once, under its first name, and given to each name
        names = [n for n in states[0] if n not in tied]
        state = dict(zip(names, mean_state([[s[n] for n in names] for s in states])))
        what = {"merge": merge, "members": ",".join(map(str, members))}
    else:
        meaning = {"task_arithmetic": "L, a finite number (θ_pre + L·Σ_k (θ_k − θ_pre))",
                   "ties": "D, the density in (0, 1]", "dare": "P, the drop rate in [0, 1)",
                   "dare_ties": "P, the drop rate in [0, 1)"}[sweep.kind]
        ok = lam is not None and (-1e6 < lam < 1e6 if sweep.kind == "task_arithmetic" else
                                  0 < lam <= 1 if sweep.kind == "ties" else 0 <= lam < 1)
        if merge is not None or not ok:
            raise SpecError(f"sweep {sweep_name!r} is {sweep.kind}: name the merge with --lam {meaning}; the sweep "
                            f"evaluated {list(item.lambdas)}")
        base = load_tensors(run.store, item.base[0].path, item.base[0].sha256 or None)
        states = [load_tensors(run.store, e.path, e.sha256 or None) for e in item.members]
        tied = ties(base)  # one DARE mask, one TIES election per parameter, tied or not (as the sweep's evaluator)
        names = [n for n in base if n not in tied]
        theta_pre, thetas = [base[n] for n in names], [[s[n] for n in names] for s in states]
        merged = merged_state(sweep.kind, theta_pre, thetas, lam, names, merge_seed(item), item.trim)
        state = dict(zip(names, merged))
        what = {
            "merge": sweep.kind + (f" (trim {item.trim})" if sweep.kind == "ties" else ""),
            "lam": repr(lam),
            "members": ",".join(str(e.replicate) for e in item.members),
            "base": f"{item.base[0].path} sha256 {item.base[0].sha256}",
        }
    state.update({alias: state[source] for alias, source in tied.items()})
    meta = {"job": run.job.name, "hash": run.job.hash, "sweep": sweep_name, **what}
    return _write(run, state, out, meta, dtype, shard)


def _write(run, state: dict, out: str, meta: dict, dtype: str | None = None, shard: str = "2GB") -> dict:
    """`out` ending in .safetensors: one file of the state dict (float tensors cast to `dtype` when given);
    else a Hugging Face folder of a language model (lm.save_folder)."""
    from safetensors.torch import save_file

    from raysweep.io.checkpoints import ties

    if not out.endswith(SAFETENSORS):
        from raysweep.lm import save_folder

        meta["files"] = save_folder(run.job, run.data_info(), state, out, meta, dtype, shard)
        return meta
    if dtype is not None:
        from raysweep.lm import DTYPES

        state = {n: t.to(DTYPES[dtype]) if t.is_floating_point() else t for n, t in state.items()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    partial = f"{out}.partial"  # never a half-written file under the name asked for
    tied = ties(state)  # a tied parameter under each of its names, as the model's load_state_dict takes it
    save_file({n: t.clone() if n in tied else t.contiguous() for n, t in state.items()}, partial, metadata=meta)
    os.replace(partial, out)
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


def repaired(run, a: dict, b: dict, alpha: float, bn_batches: int) -> dict:
    """θ(α) of (a, b) with REPAIR's per-unit correction, as the sweep's evaluator computes it."""
    import torch

    from raysweep.evaluate.evaluator import Evaluator
    from raysweep.evaluate.repair import repair_point

    evaluator = Evaluator(run.job, run.store)
    ta, tb = ([t[n].to(evaluator.device) for n in evaluator.names] for t in (a, b))
    evaluator.set_alpha(ta, tb, alpha)
    repair_point(evaluator, ta, tb, alpha, bn_batches, None)
    with torch.no_grad():
        return {n: t.detach().to("cpu", memory_format=torch.contiguous_format)
                for n, t in evaluator.model.state_dict().items()}
