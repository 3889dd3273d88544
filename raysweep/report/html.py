"""The self-contained offline HTML report (Vega bundle inlined) and its PNG/SVG copies."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Iterable

import altair as alt
import polars as pl

from raysweep.io import paths
from raysweep.spec import sweep_hash
from raysweep.report.charts import (EXPERIMENT, band_chart, barrier_chart, learning_chart, mds_chart,
                                    per_step_chart, projection_chart, surface_chart)


def sections(run) -> list[tuple[str, str, list[alt.Chart]]]:
    """(heading, explanation, charts) for every sweep of the job, then the learning curves."""
    curves, barriers = run.curves.collect(), run.barriers.collect()
    out = []
    for sweep in run.job.sweeps:
        c = curves.filter(pl.col("sweep") == sweep.name)
        if c.is_empty():
            continue
        label = f"{sweep.name} ({EXPERIMENT[sweep.kind]}, α ∈ [{min(c['alpha']):g}, {max(c['alpha']):g}])"
        if sweep.kind == "step_to_final":
            b = barriers.filter(pl.col("sweep") == sweep.name, pl.col("split") == sweep.splits[0])
            charts = [per_step_chart(c.filter(pl.col("split") == sweep.splits[0]), m, f"{sweep.name}: {m}")
                      for m in ("loss", "error")]
            charts += [barrier_chart(b, m, f"I3 — max increase of {m} vs t") for m in ("loss", "error")]
            text = ("Mean curve from each checkpoint θ_t of the schedule to θ_T (F Fig 2), and the height "
                    "of the largest rise along each curve against t (F Fig 3).")
        else:
            charts = [band_chart(c, m, f"{sweep.name}: {m}") for m in ("loss", "error")]
            charts.append(band_chart(c, "loss", f"{sweep.name}: loss (log y)", log_y=True))
            text = "Mean across replicates with a ±1 std band."
        out.append((label, text, charts))
    traj = run.trajectory.collect()
    if traj.height:
        out.append(("T2 — projection and residual (G App. B)",
                    "β(t), the distance from θ_t to the line through θ_0 and θ_T, against α(t), the position along "
                    "it; one path per replicate. In high dimensions the shape says little (G Fig 11): read the "
                    "height — max β / max ‖θ_t‖ — G found the line captures ≥ 2/3 of the norm.",
                    [projection_chart(traj)]))
    fmap = run.function_map.collect()
    if fmap.height:
        out.append(("T6 — function maps (B Fig 1–5)",
                    "Every replicate at every checkpoint, placed by metric MDS of its softmax outputs τ (left) and "
                    "predictions κ (right, Hamming distance) on the first test examples; colour is the epoch, one "
                    "line per replicate. B: paths start apart, move to a common centre and keep a memory of "
                    "their initialisation.", [mds_chart(fmap, "tau"), mds_chart(fmap, "kappa")]))
    surf = run.surface.collect()
    for name in surf["sweep"].unique(maintain_order=True).to_list() if surf.height else []:
        part = surf.filter(pl.col("sweep") == name, pl.col("replicate") == surf["replicate"].min())
        kind = run.job.sweep(name).kind
        text = {"random_plane": "Loss on a random 2-D plane through θ_T (G App. D Fig 21), with the SGD path "
                                "projected onto it: most random directions show little variation, and the path "
                                "leaves the plane.",
                "line_and_random": "One axis is the line θ_0 → θ_T (a = 0 init, a = 1 final), the other a random "
                                   "direction orthogonal to it (G Fig 22), with the SGD path projected onto the plane.",
                "path_surface": "a runs along θ_0 → θ_T (in units of ‖θ_T − θ_0‖), b along the direction in which "
                                "the checkpoint nearest that a leaves the line (G App. C Fig 15-20); the SGD path "
                                "is drawn at (α(t), β(t))."}[kind]
        tag = {"random_plane": "T4", "line_and_random": "T5", "path_surface": "T3"}[kind]
        out.append((f"{name} — {tag} (replicate {part['replicate'][0]})", text,
                     [surface_chart(part, "loss"), surface_chart(part, "error")]))
    ck = run.checkpoints.collect()
    if "step" in ck.columns and ck.height and any(c in ck.columns for c in ("train_loss", "test_loss")):
        out.append(("T1 — learning curves", "Train/test loss and error at every checkpoint, one line per replicate.",
                    [learning_chart(ck, m) for m in ("loss", "error")]))
    return out


def script_json(obj) -> str:
    """JSON safe to embed in a <script>: stored data (a points file anyone with write access to the
    bucket could have written) can never close the script or open a tag."""
    return (json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def render_html(title: str, subtitle: str, secs) -> str:
    import vl_convert as vlc

    # vl-convert names Vega-Lite versions "v6_1" for Altair's SCHEMA_VERSION "v6.1.0"
    bundle = vlc.javascript_bundle(vl_version="_".join(alt.SCHEMA_VERSION.split(".")[:2]))
    body, calls, n = [], [], 0
    for heading, text, charts in secs:
        body.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p><div class='row'>")
        for chart in charts:
            body.append(f"<div class='chart' id='chart{n}'></div>")
            calls.append(f"vegaEmbed('#chart{n}', {script_json(chart.to_dict())}, "
                         f"{{renderer: 'svg', actions: false}}).catch(e => document.body.append(String(e)));")
            n += 1
        body.append("</div>")
    return (f"<!DOCTYPE html><html><head><meta charset='UTF-8'><title>{html.escape(title)}</title>"
            f"<style>body{{font-family:sans-serif;margin:2em}} .row{{display:flex;flex-wrap:wrap;gap:1em}}</style>"
            f"<script type='text/javascript'>{bundle}</script></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>{''.join(body)}"
            f"<script type='text/javascript'>{''.join(calls)}</script></body></html>")


def settings_line(run, made_of: dict) -> str:
    """What the report shows: the run, its replicates and every sweep's settings (hash and grid)."""
    sweeps = []
    for s in run.job.sweeps:
        grid = s.alpha.points()
        sweeps.append(f"{s.name} ({s.kind}, {len(grid)} α in [{grid[0]:g}, {grid[-1]:g}], "
                      f"{'/'.join(s.splits)}, bn {s.bn}, sweep hash {sweep_hash(s)})")
    return (f"{run.job.description} · run {run.job.name}/{run.job.hash} in {run.store.url(run.dir)} · "
            f"{run.job.replicates} replicates · inputs {made_of['fingerprint']} · sweeps: " + "; ".join(sweeps))


def write_report(run, out: str | None = None, formats: Iterable[str] = ()) -> list[str]:
    """report.html (offline, self-contained) in the Store or at `out`; PNG/SVG on request. The store's
    report is recorded with the inputs it was drawn from (report.json), so `status` can tell a stale one."""
    from raysweep.analysis import aggregate

    made_of = aggregate.inputs(run.store, run.job)
    with alt.data_transformers.disable_max_rows():
        secs = sections(run)
        page = render_html(f"raysweep — {run.job.name}", settings_line(run, made_of), secs)
        extra = {}
        for fmt in formats:
            if fmt not in ("png", "svg"):
                raise ValueError(f"unknown image format {fmt!r}; use png or svg")
            rows = [alt.hconcat(*charts).resolve_scale(color="independent").properties(title=heading)
                    for heading, _, charts in secs]
            import vl_convert as vlc

            spec = alt.vconcat(*rows).resolve_scale(color="independent").to_dict()
            extra[fmt] = vlc.vegalite_to_png(spec, scale=1.5) if fmt == "png" else vlc.vegalite_to_svg(spec).encode()
    written = []
    if out:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page)
        written.append(str(target))
        for fmt, data in extra.items():
            target.with_suffix(f".{fmt}").write_bytes(data)
            written.append(str(target.with_suffix(f".{fmt}")))
    else:
        run.store.delete(paths.report_inputs(run.dir))
        run.store.write_bytes(paths.report(run.dir), page.encode())
        run.store.write_json(paths.report_inputs(run.dir), made_of)
        written.append(run.store.url(paths.report(run.dir)))
        for fmt, data in extra.items():
            run.store.write_bytes(paths.report(run.dir, fmt), data)
            written.append(run.store.url(paths.report(run.dir, fmt)))
    return written
