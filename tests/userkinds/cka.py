"""CKA along α — a sweep kind of your own, in one file: how similar the network at θ(α) represents the test
examples to the network at θ_b (linear CKA of the last hidden layer's activations; Kornblith et al. 2019), at every
α of the line θ_0 → θ_T of each replicate. Name this module in a job and sweep it:

    plugins = ["userkinds.cka"]
    [[sweeps]]
    name = "cka"
    kind = "cka"
    alpha = { start = 0.0, stop = 1.0, num = 11 }
    options = { examples = 500 }

raysweep fans its items out over the actors, stores each once, resumes, builds its table (`cka`) and draws its
figure in the report.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa

from raysweep.io import paths
from raysweep.spec import sweep_hash
from raysweep.work.items import Endpoint, chunks
from raysweep.work.kinds import Kind, register, sweep_folder

SCHEMA = pa.schema([("sweep", pa.string()), ("replicate", pa.int32()), ("alpha", pa.float64()),
                    ("cka", pa.float64()), ("examples", pa.int32())])


@dataclass(frozen=True)
class CkaItem:
    """α-chunk of one replicate's line θ_0 → θ_T (the first five fields every item has)."""
    sweep: str
    sweep_kind: str
    sweep_hash: str
    key: str
    path: str
    a: Endpoint
    b: Endpoint
    alphas: tuple[float, ...]
    examples: int


def check(sweep, where: str) -> list[str]:
    opts = json.loads(sweep.options)
    unknown = sorted(set(opts) - {"examples"})
    bad = not isinstance(opts.get("examples", 500), int) or opts.get("examples", 500) < 2
    return ([f"{where}.options: unknown {unknown}; cka takes examples"] if unknown else []) + (
        [f"{where}.options.examples must be an integer >= 2"] if bad else [])


def plan(ctx, sweep, before: list) -> list[CkaItem]:
    examples = json.loads(sweep.options).get("examples", 500)
    folder, h = sweep_folder(ctx.run, sweep), sweep_hash(sweep)
    out = []
    for k in sorted(ctx.finals):
        a, b = ctx.endpoint(k, 0), ctx.finals[k]
        for c, alphas in enumerate(chunks(sweep.alpha.points(), 4)):
            key = f"{a.tag}__{b.tag}__cka{c:03d}"
            out.append(CkaItem(sweep.name, sweep.kind, h, key, paths.point_file(folder, key), a, b, tuple(alphas),
                               examples))
    return out


def linear_cka(x, y) -> float:
    """Linear CKA of two (examples × units) representations: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), columns centred."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float((y.T @ x).square().sum() / ((x.T @ x).norm() * (y.T @ y).norm()))


def evaluate(evaluator, job, item: CkaItem) -> pa.Table:
    import torch

    x, _ = evaluator.split("test")
    x = evaluator.prepare(x[:item.examples])
    last = [m for m in evaluator.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    seen = {}
    hook = last.register_forward_hook(lambda m, inputs, out: seen.__setitem__("h", inputs[0].double()))
    try:
        ta, tb = evaluator.endpoint(item.a.path, item.a.sha256), evaluator.endpoint(item.b.path, item.b.sha256)
        with torch.no_grad():
            evaluator.set_weights(tb)
            evaluator.model(x)
            ref = seen["h"]
            rows = []
            for alpha in item.alphas:
                evaluator.set_alpha(ta, tb, alpha)
                evaluator.model(x)
                rows.append({"sweep": item.sweep, "replicate": item.a.replicate, "alpha": alpha,
                             "cka": linear_cka(seen["h"], ref), "examples": len(x)})
    finally:
        hook.remove()
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def figures(job, sweep, tables: dict) -> list:
    import altair as alt
    import polars as pl

    from raysweep.report.figures import Figure

    rows = tables["cka"].filter(pl.col("sweep") == sweep.name)
    if rows.is_empty():
        return []
    chart = alt.Chart(rows).mark_line(point=True).encode(
        x=alt.X("alpha:Q", title="α (θ_0 → θ_T)"), y=alt.Y("cka:Q", title="linear CKA with θ_T"),
        color="replicate:N").properties(title="CKA along the line", width=320, height=220)
    return [Figure(f"CKA-{sweep.name}", f"CKA along θ_0 → θ_T: {sweep.name}",
                   f"Linear CKA (Kornblith et al. 2019) of the last hidden layer's activations on "
                   f"{rows['examples'][0]} test examples between θ(α) and θ_T, one line per replicate.", [chart])]


register(Kind("cka", family="cka", folder="cka", table="cka", item=CkaItem, plan=plan, evaluate=evaluate,
              schema=SCHEMA, check=check, figures=figures, module=__name__))
