"""Altair charts and the self-contained HTML report. No computation: charts read the tables."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Iterable

import altair as alt
import polars as pl

from raysweep import paths

EXPERIMENT = {"init_to_final": "I1 / I4 / I7 — θ₀ → θ_T", "step_to_final": "I2 — θ_t → θ_T",
              "final_to_final": "I5 — θ_T(i) → θ_T(j)", "random_to_final": "I6 — θ_r → θ_T"}
WIDTH, HEIGHT = 320, 220


def band_chart(curves: pl.DataFrame, metric: str, title: str, log_y: bool = False) -> alt.Chart:
    """Mean across replicates with a ±1 std band, one colour per split."""
    df = curves.with_columns(
        lo=pl.col(f"{metric}_mean") - pl.col(f"{metric}_std").fill_null(0),
        hi=pl.col(f"{metric}_mean") + pl.col(f"{metric}_std").fill_null(0),
    ).select("alpha", "split", "n", mean=f"{metric}_mean", lo="lo", hi="hi")
    if log_y:
        df = df.with_columns(pl.col("lo").clip(lower_bound=1e-6))
    y_scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
    base = alt.Chart(df).encode(x=alt.X("alpha:Q", title="α"), color=alt.Color("split:N"))
    band = base.mark_area(opacity=0.25).encode(y=alt.Y("lo:Q", scale=y_scale, title=metric), y2="hi:Q")
    line = base.mark_line().encode(y="mean:Q", tooltip=["alpha", "split", "mean", "lo", "hi", "n"])
    return (band + line).properties(title=title, width=WIDTH, height=HEIGHT)


def per_step_chart(curves: pl.DataFrame, metric: str, title: str) -> alt.Chart:
    """One mean curve per starting step t (F Fig 2)."""
    df = curves.select("alpha", "step", mean=f"{metric}_mean")
    return alt.Chart(df).mark_line().encode(
        x=alt.X("alpha:Q", title="α"), y=alt.Y("mean:Q", title=metric),
        color=alt.Color("step:O", scale=alt.Scale(scheme="viridis"), title="step t"),
        tooltip=["step", "alpha", "mean"],
    ).properties(title=title, width=WIDTH, height=HEIGHT)


def barrier_chart(barriers: pl.DataFrame, metric: str, title: str) -> alt.Chart:
    """max_increase (mean ± std) against the starting step, log-x (F Fig 3)."""
    df = barriers.filter(pl.col("metric") == metric).select(
        "step", mean="max_increase_mean",
        lo=pl.col("max_increase_mean") - pl.col("max_increase_std").fill_null(0),
        hi=pl.col("max_increase_mean") + pl.col("max_increase_std").fill_null(0))
    x = alt.X("step:Q", scale=alt.Scale(type="symlog"), title="step t (symlog)")
    base = alt.Chart(df).encode(x=x)
    return (base.mark_errorbar().encode(y=alt.Y("lo:Q", title=f"max increase of {metric}"), y2="hi:Q")
            + base.mark_line(point=True).encode(y="mean:Q", tooltip=["step", "mean", "lo", "hi"])
            ).properties(title=title, width=WIDTH, height=HEIGHT)


def learning_chart(checkpoints: pl.DataFrame, metric: str) -> alt.Chart:
    cols = [c for c in (f"train_{metric}", f"test_{metric}") if c in checkpoints.columns]
    df = checkpoints.unpivot(index=["replicate", "step"], on=cols, variable_name="split", value_name=metric)
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("step:Q", scale=alt.Scale(type="symlog"), title="step (symlog)"), y=f"{metric}:Q",
        color="split:N", detail="replicate:N", tooltip=["replicate", "step", "split", metric],
    ).properties(title=f"T1 — learning curves ({metric})", width=WIDTH, height=HEIGHT)


def projection_chart(traj: pl.DataFrame) -> alt.Chart:
    return alt.Chart(traj.select("replicate", "step", "alpha", "beta", "residual_fraction")).mark_line(point=True).encode(
        x=alt.X("alpha:Q", title="α(t): along θ_0 → θ_T"), y=alt.Y("beta:Q", title="β(t): residual norm"),
        color="replicate:N", order="step:Q", tooltip=["replicate", "step", "alpha", "beta", "residual_fraction"],
    ).properties(title="T2 — β vs α per replicate", width=WIDTH, height=HEIGHT)


def mds_chart(fmap: pl.DataFrame, which: str) -> alt.Chart:
    """MDS map coloured by epoch (B: red to blue), a grey line per replicate in step order."""
    colour = "epoch" if "epoch" in fmap.columns else "step"
    df = fmap.select(*dict.fromkeys(["replicate", "step", colour]), x=f"{which}_x", y=f"{which}_y")
    base = alt.Chart(df).encode(x=alt.X("x:Q", title="MDS 1"), y=alt.Y("y:Q", title="MDS 2"))
    lines = base.mark_line(opacity=0.3, color="gray").encode(detail="replicate:N", order="step:Q")
    dots = base.mark_circle(size=30).encode(color=alt.Color(f"{colour}:Q", scale=alt.Scale(scheme="redblue")),
                                            tooltip=list(dict.fromkeys(["replicate", "step", colour])))
    name = "τ (softmax outputs)" if which == "tau" else "κ (predictions, Hamming)"
    return (lines + dots).properties(title=f"T6 — MDS of {name}", width=WIDTH, height=HEIGHT)


def surface_chart(part: pl.DataFrame, metric: str) -> alt.Chart:
    """Heat map of the grid (cells centred on each (a, b)) with the projected SGD path on top."""
    split = part.filter(pl.col("kind") == "grid")["split"][0]
    grid = part.filter(pl.col("kind") == "grid", pl.col("split") == split).select("a", "b", metric)

    def half_step(col):
        vals = sorted(set(grid[col].to_list()))
        return (vals[1] - vals[0]) / 2 if len(vals) > 1 else 0.5
    da, db = half_step("a"), half_step("b")
    grid = grid.with_columns(a0=pl.col("a") - da, a1=pl.col("a") + da, b0=pl.col("b") - db, b1=pl.col("b") + db)
    path = part.filter(pl.col("kind") == "path").select("a", "b", "step")
    heat = alt.Chart(grid).mark_rect().encode(
        x=alt.X("a0:Q", title="a"), x2="a1:Q", y=alt.Y("b0:Q", title="b"), y2="b1:Q",
        color=alt.Color(f"{metric}:Q", scale=alt.Scale(scheme="viridis")), tooltip=["a", "b", metric])
    line = alt.Chart(path).mark_line(point=True, color="red").encode(
        x="a:Q", y="b:Q", order="step:Q", tooltip=["step", "a", "b"])
    return (heat + line).properties(title=f"{metric} on the plane ({split}), SGD path in red",
                                    width=WIDTH, height=WIDTH)


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
    if "step" in ck.columns and ck.height:
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
                      f"{'/'.join(s.splits)}, bn {s.bn}, sweep hash {hash_of(s)})")
    return (f"{run.job.description} · run {run.job.name}/{run.job.hash} in {run.store.url(run.dir)} · "
            f"{run.job.replicates} replicates · inputs {made_of['fingerprint']} · sweeps: " + "; ".join(sweeps))


def hash_of(sweep) -> str:
    from raysweep.spec import sweep_hash

    return sweep_hash(sweep)


def write_report(run, out: str | None = None, formats: Iterable[str] = ()) -> list[str]:
    """report.html (offline, self-contained) in the Store or at `out`; PNG/SVG on request. The store's
    report is recorded with the inputs it was drawn from (report.json), so `status` can tell a stale one."""
    from raysweep import aggregate

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
