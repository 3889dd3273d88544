"""`raysweep toy ...`: the papers' toy controls (numpy, no training), as HTML reports."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from raysweep.cli_common import _err

toy = typer.Typer(help="The papers' toy controls (numpy, no training): B's stochastic models, G's random walk.",
                  no_args_is_help=True)


@toy.command("breuel")
def toy_breuel(law: List[str] = typer.Option(["zipf", "uniform"], "--law", help="zipf and/or uniform"),
               vectors: int = 5, dim: int = 1000, steps: int = 20_000,
               out: Path = typer.Option(Path("breuel_toy.html"), "--out")) -> None:
    """B Fig 7-8: random vectors whose coordinates shrink by 0.9, chosen by Zipf's law or uniformly, as
    an MDS map.  Example: raysweep toy breuel --law zipf --law uniform --out toy.html"""
    from raysweep.analysis.toys import memory_of_start, stochastic_map, stochastic_paths
    from raysweep.report.charts import mds_chart
    from raysweep.report.html import render_html

    secs = []
    for name in law:
        if name not in ("zipf", "uniform"):
            _err(f"--law {name!r} is not a law; use zipf or uniform", 2)
        kw = {"vectors": vectors, "dim": dim, "steps": steps}
        kept = memory_of_start(stochastic_paths(name, **kw))
        text = (f"{vectors} random {dim}-d vectors, {steps:,} steps; the spread between vectors at the end is "
                f"{kept:.0%} of the spread at the start (B: Zipf keeps a memory of the start, uniform does not).")
        chart = mds_chart(stochastic_map(name, **kw), "tau", f"MDS of the {vectors} vectors ({name}), colour: step")
        secs.append((f"{name} stochastic model", text, [chart]))
        typer.echo(f"{name}: spread kept {kept:.2f}")
    out.write_text(render_html("raysweep — Breuel's stochastic models", "B Fig 7-8", secs))
    typer.echo(str(out))


@toy.command("random-walk")
def toy_random_walk(dims: List[int] = typer.Option([10, 100, 1000, 10000], "--dims"),
                    out: Path = typer.Option(Path("random_walk.html"), "--out")) -> None:
    """G Fig 11: projection (α) and residual (β) of Gaussian random walks; step 900 is the "solution".
    Example: raysweep toy random-walk --dims 10 --dims 1000 --out walk.html"""
    import altair as alt
    import polars as pl

    from raysweep.analysis.toys import random_walk
    from raysweep.report.html import render_html

    df = pl.concat([random_walk(d) for d in dims])
    chart = alt.Chart(df).mark_line().encode(x=alt.X("alpha:Q", title="α(t)"), y=alt.Y("beta:Q", title="β(t)"),
                                             order="step:Q").properties(width=220, height=180).facet(
        facet="dim:N", columns=4).resolve_scale(x="independent", y="independent")
    text = ("Each walk adds a unit Gaussian step to every coordinate; the line runs from step 0 to step 900. "
            "As the dimension grows the plot converges to the same arch as a network's T2 plot (G Fig 11).")
    out.write_text(render_html("raysweep — random-walk control", "G Fig 11", [("random walks", text, [chart])]))
    typer.echo(str(out))
