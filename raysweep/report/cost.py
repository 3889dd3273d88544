"""What a job will do, counted before anything runs: `raysweep show`."""
from __future__ import annotations

import json
import os

from raysweep.data.registry import dataset_info
from raysweep.io import paths
from raysweep.io.store import Store
from raysweep.models import build_model, forward_flops, takes_tokens
from raysweep.spec import Job, sweep_hash
from raysweep.spec.sweeps import LINE_KINDS
from raysweep.train.schedule import checkpoint_steps, iterations_per_epoch
from raysweep.work.kinds import kind

# Published throughputs the cost estimates use (no GPU number of raysweep's own is measured yet):
# evaluation, examples/s of a full-split forward pass on one GPU
MEASURED = {
    "resnet50": ("A100, standard PyTorch eval loop (NVIDIA's PyTorch ResNet-50 example, AMP)", 5_700.0),
}
# training, images/s per GPU: NVIDIA DeepLearningExamples ResNet-50 v1.5 (PyTorch), 16,621 img/s on 8 x A100 80GB, AMP
TRAINING = {"resnet50": ("A100, NVIDIA's ResNet-50 v1.5 training, AMP, 8 GPUs: 16,621 img/s", 16_621 / 8)}


def counts(job, store=None, info=None) -> dict:
    """What the job's plan holds: trainings, iterations, checkpoints, and per sweep its pairs, α, work items
    and evaluations (`info`: the dataset as found where the work runs; else read here, or its standard)."""
    info = info or dataset_info(job.data, standard_if_missing=True, store=store)
    n_train = info.sizes["train"]
    steps = checkpoint_steps(job.train, n_train)
    per_epoch = iterations_per_epoch(n_train, job.train.batch_size)
    sweeps = []
    for s in job.sweeps:  # each kind counts its own (a kind without a count: its items, unknown until planned)
        fn = kind(s.kind).count
        numbers = fn(job, s, info, steps) if fn else {"work_items": 0, "evaluations": 0, "examples_forwarded": 0}
        sweeps.append({"name": s.name, "kind": s.kind, "hash": sweep_hash(s), **numbers})
    flops = forward_flops(job.model, info.in_shape, info.num_classes)
    try:
        memory = actor_memory(job, info)
    except Exception as exc:  # a user's model that cannot be built on the meta device: counted nowhere else
        memory = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    spawn = {v for s in job.sweeps if s.kind == "instability" for v in s.spawn_steps}
    bends = {s.name: (kind(s.kind).pairs(job.replicates, 0, 0), per_epoch * (s.curve.epochs or job.train.epochs))
             for s in job.sweeps if s.kind == "curve"}
    return {"trainings": job.replicates, "children": job.replicates * len(spawn) * 2, "bends": bends,
            "iterations_per_epoch": per_epoch, "forward_flops": flops, "memory": memory,
            "iterations": per_epoch * job.train.epochs, "checkpoints_per_replicate": len(steps),
            "checkpoint_steps": steps, "sweeps": sweeps,
            "evaluations": sum(s["evaluations"] for s in sweeps),
            "examples_forwarded": sum(s["examples_forwarded"] for s in sweeps)}


def actor_memory(job: Job, info) -> dict:
    """Bytes a sweep actor holds, counted on the meta device: the model's tensors (a tied parameter once), the two
    ends of the pair it evaluates (the evaluator writes θ(α) into the model in place, tensor by tensor), and for a
    language model the fp32 logits of one evaluation batch."""
    import torch

    with torch.device("meta"):
        model = build_model(job.model, tuple(info.in_shape), info.num_classes)
    tensors = [*model.parameters(), *model.buffers()]  # unique: a tied parameter is one object
    weights = sum(t.numel() * t.element_size() for t in tensors)
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors if t.is_floating_point()})
    logits = 0
    if takes_tokens(model):
        vocab = getattr(getattr(model, "config", None), "vocab_size", None) or info.num_classes
        logits = job.eval.batch_size * int(info.in_shape[0]) * vocab * 4
    floats = sum(t.numel() for t in tensors if t.is_floating_point())
    largest = max((t.numel() for t in tensors if t.is_floating_point()), default=0)
    out = {"weights": weights, "dtypes": dtypes, "logits": logits,
           "parameters": sum(p.numel() for p in model.parameters())}
    for ends in ("device", "mapped"):  # what the job's setting holds, and what the other would
        copies, what, extra = max((held(s.kind, job.replicates, floats, ends, largest, s.trim) for s in job.sweeps),
                                  key=lambda c: c[0] * weights + c[2],
                                  default=(3, "the model and the pair's two ends", 0))
        total = copies * weights + extra + logits
        if ends == job.eval.ends:
            out.update(total=total, copies=copies, held=what, extra=extra)
        else:
            out["other_total"] = total
    return out


def held(kind: str, replicates: int, floats: int, ends: str = "device", largest: int = 0,
         trim: str = "tensor") -> tuple[int, str, int]:
    """(copies of the model's weights, what they are, other bytes) an actor of a sweep of `kind` holds at once:
    a line's model and two ends (with eval.ends = "mapped" the model only: the ends are in the page cache); a
    merge's model and its inputs (mapped: the model only), and the float64 work of merging its largest tensor (a
    task-vector merge writes each merged tensor into the model as it makes it; TIES' global trim holds every task
    vector; task arithmetic on the device keeps Σ_k τ_k in float64, 8 bytes per float)."""
    k = replicates
    if ends == "mapped" and kind in LINE_KINDS:
        return 1, "the model; the pair's two ends memory-mapped on the host", 0
    if kind in ("task_arithmetic", "ties", "dare", "dare_ties"):
        # per-tensor float64 work: the stacked task vectors and what is made of them (TIES also sorts them)
        work = 8 * largest * ({"ties": 3 * k + 2, "task_arithmetic": k + 2}.get(kind, 2 * k + 2))
        if kind == "ties" and trim == "global":
            work = 8 * floats * (2 * k + 1)  # every task vector whole, trimmed, and the merged weights
        if ends == "mapped":
            return 1, f"the model; θ_pre and the {k} fine-tunes memory-mapped on the host", work
        extra = 8 * floats if kind == "task_arithmetic" else 0
        return k + 2, f"the model, θ_pre and the {k} fine-tunes", work + extra
    if kind == "soup":
        return k + 2, f"the model, the {k} finals and their average", 0
    if kind == "slerp":
        return 4, "the model, the two finals and the merged weights", 0
    return 3, "the model and the pair's two ends", 0


def _bytes(x: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if x >= scale:
            return f"{x / scale:,.2f} {unit}"
    return f"{x:,.0f} B"


def memory_line(job: Job, m: dict) -> str:
    """What one sweep actor holds, and whether it fits the GPU this machine has (a warning naming the settings)."""
    if "error" in m:
        return f"memory per sweep actor: not counted (the model cannot be built on the meta device: {m['error']})"
    line = (f"memory per sweep actor: {m['parameters']:,} parameters = {_bytes(m['weights'])} "
            f"({'/'.join(m['dtypes']) or 'no floats'}) x {m['copies']} ({m['held']})")
    if m["extra"]:
        line += f" + {_bytes(m['extra'])} of float64 merge work"
    if m["logits"]:
        line += f" + {_bytes(m['logits'])} of fp32 logits per batch (eval.batch_size = {job.eval.batch_size})"
    line += f" = {_bytes(m['total'])}"
    budget = actor_budget(job)
    if budget is not None:
        line += f"; an actor may use {_bytes(budget[0])} ({budget[1]})"
    return line


def actor_budget(job: Job) -> tuple[int, str] | None:
    """(bytes one sweep actor may use, where the figure comes from): resources.actor_memory_gb, else this
    machine's GPU (times resources.gpus_per_actor below 1) when the job evaluates on CUDA, else this machine's RAM
    shared by the actors it runs (resources.eval_actors, else one per CPU)."""
    res = job.resources
    if res.actor_memory_gb:
        return int(res.actor_memory_gb * 2**30), "resources.actor_memory_gb"
    import torch

    if torch.cuda.is_available() and job.eval.device != "cpu" and res.accelerator != "cpu":
        props = torch.cuda.get_device_properties(0)
        share = res.gpus_per_actor if 0 < res.gpus_per_actor < 1 else 1.0
        return int(props.total_memory * share), f"this machine's {props.name} x {share:g}"
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # a system that does not say
        return None
    cpus = os.cpu_count() or 1
    actors = max(1, min(res.eval_actors or cpus, cpus))
    return ram // actors, f"this machine's RAM, {_bytes(ram)}, shared by {actors} actor(s)"


def plan_misfit(job: Job, store: Store | None = None) -> str:
    """`misfit` of the job's plan as counted here ("" also when its model cannot be built on the meta device)."""
    try:
        m = actor_memory(job, dataset_info(job.data, standard_if_missing=True, store=store))
    except Exception:  # a user's model that cannot be built on the meta device: not counted (show says so)
        return ""
    return misfit(job, m)


def misfit(job: Job, m: dict) -> str:
    """Why a sweep actor of this plan cannot hold what it must (and the settings that would make it fit), or ""."""
    budget = actor_budget(job)
    if "error" in m or budget is None or m["total"] <= budget[0]:
        return ""
    have, where = budget
    fixes = []
    if job.eval.ends == "device" and m.get("other_total", m["total"]) < m["total"]:
        fixes.append(f"set eval.ends = \"mapped\" (a line's two ends memory-mapped on the host: "
                     f"{_bytes(m['other_total'])} per actor)")
    if m["logits"]:
        fixes.append(f"lower eval.batch_size (its logits take {_bytes(m['logits'])})")
    if "float32" in m["dtypes"] and "float16" not in m["dtypes"] and "bfloat16" not in m["dtypes"]:
        fixes.append("build the model in bf16 (model.config dtype = \"bfloat16\")")
    if "RAM" in where:
        fixes.append("run fewer actors per machine (resources.eval_actors)")
    fixes.append("run the actors on machines with more memory and say how much each may use "
                 "(resources.actor_memory_gb)")
    return (f"this plan does not fit: a sweep actor of job {job.name!r} holds {_bytes(m['total'])} ({m['held']}), "
            f"but may use {_bytes(have)} ({where}). To make it fit: {'; or '.join(fixes)}. Nothing was run.")


def _flop(x: float) -> str:
    for unit, scale in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if x >= scale:
            return f"{x / scale:,.2f} {unit}"
    return f"{x:,.0f} FLOP"


def describe(job: Job, store: Store) -> str:
    c = counts(job, store)
    spec = json.dumps(job.to_dict(), indent=2)
    steps = c["checkpoint_steps"]
    shown = steps if len(steps) <= 16 else steps[:12] + ["..."] + steps[-3:]
    lines = [
        f"job {job.name}  hash {job.hash}  storage {store.url(paths.run_dir(job.name, job.hash))}",
        "",
        "resolved spec:",
        spec,
        "",
        "plan:",
        f"  trainings:   {c['trainings']} replicates x {c['iterations']} iterations "
        f"({job.train.epochs} epochs x {c['iterations_per_epoch']} iterations/epoch)"
        + (
            f", plus {c['children']} instability children trained from their spawn steps to the end"
            if c["children"]
            else ""
        )
        + "".join(
            f", plus {n} bend(s) of curve sweep {name} x {its} iterations" for name, (n, its) in c["bends"].items()
        ),
        f"  checkpoints: {c['checkpoints_per_replicate']} per replicate "
        f"({c['trainings'] * c['checkpoints_per_replicate']} in all): {shown}",
    ]
    for s in c["sweeps"]:
        if s.get("trajectory"):
            what = (
                "α(t), β(t), ‖θ_t‖ of every checkpoint"
                if s["kind"] == "projection"
                else f"a {s['grid']}-point (a, b) grid per replicate = {s['evaluations']} evaluations"
                if "grid" in s
                else f"τ/κ on {s['examples_forwarded'] // max(s['evaluations'], 1)} test examples at every checkpoint"
            )
            lines.append(f"  sweep {s['name']:16s} {s['kind']:15s} {what}")
            continue
        if "alpha_range" not in s:  # a merge, or a plugin kind: what it counted
            lines.append(f"  sweep {s['name']:16s} {s['kind']:15s} {s['evaluations']} evaluations in "
                         f"{s['work_items']} work item(s)")
            continue
        lines.append(f"  sweep {s['name']:16s} {s['kind']:15s} {s['pairs']:4d} pairs x {s['alphas']:3d} α "
                     f"in [{s['alpha_range'][0]:g}, {s['alpha_range'][1]:g}] x {s['splits']} = "
                     f"{s['evaluations']} evaluations in {s['work_items']} work items")
    lines.append(f"  total: {c['evaluations']} full-split evaluations, "
                 f"{c['examples_forwarded']:,} example forward passes")
    total = c["forward_flops"] * c["examples_forwarded"]
    lines.append(f"  compute: {_flop(c['forward_flops'])} per example forward -> {_flop(total)} for the sweeps")
    lines.append("  " + memory_line(job, c["memory"]))
    if job.model.name in MEASURED:
        where, rate = MEASURED[job.model.name]
        lines.append(f"  at {rate:,.0f} examples/s ({where}): {c['examples_forwarded'] / rate / 3600:,.1f} GPU-hours")
    if job.model.name in TRAINING:
        where, rate = TRAINING[job.model.name]
        images = c["iterations"] * job.train.batch_size
        gpu_hours = images / rate / 3600
        world = job.resources.workers
        lines.append(f"  training: {images:,} images per replicate; at {rate:,.0f} images/s per GPU ({where}): "
                     f"{gpu_hours:,.1f} GPU-hours per replicate, {gpu_hours * job.replicates:,.1f} for all; "
                     f"{gpu_hours / world:,.1f} h wall per replicate on {world} GPU(s) (resources.gpus_per_trial; "
                     f"linear scaling assumed, input fed fast enough)")
    return "\n".join(lines)
