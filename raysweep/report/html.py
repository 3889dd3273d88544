"""The self-contained offline HTML report (Vega bundle inlined) and its PNG/SVG copies."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Iterable

import altair as alt

from raysweep.analysis.scan import inputs
from raysweep.io import paths
from raysweep.io.store import Store
from raysweep.report.charts import image_spec
from raysweep.report.figures import figures, headline, load_tables
from raysweep.spec import Job, sweep_hash

SURFACE_JS = Path(__file__).with_name("surface3d.js")


def sections(job: Job, tables: dict, log_height: bool = False) -> list[tuple[str, str, list[alt.Chart], list]]:
    """(heading, caption, charts, 3-D views) of every figure the run's tables support (report.figures)."""
    return [(f.heading, f.caption, f.charts, f.views3d) for f in figures(job, tables, log_height)]


def script_json(obj) -> str:
    """JSON safe to embed in a <script>: stored data (a points file anyone with write access to the
    bucket could have written) can never close the script or open a tag."""
    return (json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def render_html(title: str, subtitle: str, secs, numbers: list[tuple[str, str]] = ()) -> str:
    import vl_convert as vlc

    # vl-convert names Vega-Lite versions "v6_1" for Altair's SCHEMA_VERSION "v6.1.0"
    bundle = vlc.javascript_bundle(vl_version="_".join(alt.SCHEMA_VERSION.split(".")[:2]))
    body, calls, n = [], [], 0
    if numbers:
        body.append("<h2>Headline numbers</h2><table>" + "".join(
            f"<tr><td>{html.escape(k)}</td><td><b>{html.escape(v)}</b></td></tr>" for k, v in numbers) + "</table>")
    views = 0
    for heading, text, charts, *rest in secs:
        body.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p><div class='row'>")
        for chart in charts:
            body.append(f"<div class='chart' id='chart{n}'></div>")
            calls.append(f"vegaEmbed('#chart{n}', {script_json(chart.to_dict())}, "
                         f"{{renderer: 'svg', actions: false}}).catch(e => document.body.append(String(e)));")
            n += 1
        body.append("</div>")
        if rest and rest[0]:  # turnable 3-D surfaces of a plane
            body.append("<div class='row'>" + "".join(
                f"<canvas class='surface3d' id='s3d{views + i}' width='380' height='330'></canvas>"
                for i in range(len(rest[0]))) + "</div>")
            calls += [f"raysweepSurface(document.getElementById('s3d{views + i}'), {script_json(v)});"
                      for i, v in enumerate(rest[0])]
            views += len(rest[0])
    return (f"<!DOCTYPE html><html><head><meta charset='UTF-8'><title>{html.escape(title)}</title>"
            f"<style>body{{font-family:sans-serif;margin:2em}} .row{{display:flex;flex-wrap:wrap;gap:1em}} "
            f"td{{padding:2px 12px 2px 0}}</style>"
            f"<script type='text/javascript'>{bundle}</script>"
            + (f"<script type='text/javascript'>{SURFACE_JS.read_text()}</script>" if views else "")
            + "</head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>{''.join(body)}"
            f"<script type='text/javascript'>{''.join(calls)}</script></body></html>")


def settings_line(job: Job, where: str, made_of: dict) -> str:
    """What the report shows: the run, its replicates and every sweep's settings (hash and grid)."""
    sweeps = []
    for s in job.sweeps:
        grid = s.alpha.points()
        sweeps.append(f"{s.name} ({s.kind}, {len(grid)} α in [{grid[0]:g}, {grid[-1]:g}], "
                      f"{'/'.join(s.splits)}, bn {s.bn}, sweep hash {sweep_hash(s)})")
    return (f"{job.description} · run {job.name}/{job.hash} in {where} · "
            f"{job.replicates} replicate{'s' if job.replicates != 1 else ''} · inputs {made_of['fingerprint']} · "
            f"sweeps: " + "; ".join(sweeps))


def write_report(job: Job, store: Store, tables, out: str | None = None, formats: Iterable[str] = (),
                 log_height: bool = False) -> list[str]:
    """report.html (offline, self-contained) in the Store or at `out`; PNG/SVG on request. The store's
    report is recorded with the inputs it was drawn from (report.json), so `status` can tell a stale one.
    `tables` is the run's raysweep.run.tables.Tables."""
    run_dir = paths.run_dir(job.name, job.hash)
    made_of = inputs(store, job)
    with alt.data_transformers.disable_max_rows():
        t = load_tables(tables, made_of)
        secs = sections(job, t, log_height)
        page = render_html(f"raysweep — {job.name}", settings_line(job, store.url(run_dir), made_of), secs,
                           headline(job, t))
        extra = {}
        for fmt in formats:
            if fmt not in ("png", "svg"):
                raise ValueError(f"unknown image format {fmt!r}; use png or svg")
            rows = [
                alt.hconcat(*charts)
                .resolve_scale(color="independent", strokeDash="independent")
                .properties(title=heading)
                for heading, _, charts, _ in secs
            ]
            import vl_convert as vlc

            spec = image_spec(alt.vconcat(*rows).resolve_scale(color="independent", strokeDash="independent"))
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
        store.delete(paths.report_inputs(run_dir))
        store.write_bytes(paths.report(run_dir), page.encode())
        store.write_json(paths.report_inputs(run_dir), made_of)
        written.append(store.url(paths.report(run_dir)))
        for fmt, data in extra.items():
            store.write_bytes(paths.report(run_dir, fmt), data)
            written.append(store.url(paths.report(run_dir, fmt)))
    return written
