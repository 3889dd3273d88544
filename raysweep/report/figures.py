"""The figures of a run, each named after the paper figure it reproduces, with a caption; and the
headline numbers the report opens with. The HTML report and `raysweep figures` draw the same list."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import altair as alt
import polars as pl

from raysweep.analysis.scan import inputs, tables_of
from raysweep.report.charts import image_spec, learning_chart
from raysweep.report.contours import grid_array
from raysweep.report.headline import headline  # noqa: F401  (the report's opening numbers, beside its figures)
from raysweep.spec import Job
from raysweep.work.kinds import kind

FORMATS = ("png", "svg", "pdf")


@dataclass
class Figure:
    name: str  # file name without extension: <paper>-fig<N>-<what>, e.g. F-fig2-step_to_final
    heading: str
    caption: str
    charts: list
    views3d: list = field(default_factory=list)  # the HTML report's turnable 3-D surfaces (report/surface3d.js)

    def chart(self) -> alt.HConcatChart:
        return alt.hconcat(*self.charts).resolve_scale(color="independent", strokeDash="independent").properties(
            title=self.heading)


def grid_text(alphas) -> str:
    return f"{len(alphas)} α in [{min(alphas):g}, {max(alphas):g}]"


def load_tables(tables, made_of: dict | None = None) -> dict[str, pl.DataFrame]:
    """The tables the figures and headline numbers read, each read (or rebuilt) once from `tables`
    (a run's raysweep.run.tables.Tables), checked against one record of the run's inputs."""
    made_of = made_of or inputs(tables.store, tables.job)
    return {name: tables.get(name, made_of).collect() for name in tables_of(tables.job) if name != "points"}


def over(job: Job, sweep, c: pl.DataFrame | None = None) -> str:
    """Whose mean a curve is: replicates, pairs of replicates, or one line (then there is no spread) — and, where
    the stored curves `c` hold fewer than planned, how many of them ("1 of 3 pairs"): never an incomplete mean
    drawn as if it were whole."""
    n = job.replicates
    short = _short(c)
    if short is not None:
        have, planned = short
        unit = "pairs" if sweep.kind in ("final_to_final", "curve") else "replicates"
        return (f"only {have} of the {planned} {unit} planned (INCOMPLETE: a replicate retrained or the sweep not "
                f"finished{'; no spread' if have < 2 else ''})")
    if sweep.kind in ("final_to_final", "curve"):
        pairs = n * (n - 1) // 2
        return f"the {pairs} pairs of {n} replicates" if pairs > 1 else f"the one pair of {n} replicates (no spread)"
    if n == 1:
        return "one line (no spread)" if job.external else "one replicate (no spread)"
    return f"{n} replicates"


def _short(c: pl.DataFrame | None) -> tuple[int, int] | None:
    """(fewest curves stored, planned) where some grid row of curves `c` holds fewer than planned, else None."""
    if c is None or "complete" not in c.columns:
        return None
    bad = c.filter(pl.col("complete") == False)  # noqa: E712 (a Polars expression)
    if bad.is_empty():
        return None
    return int(bad["n"].min()), int(bad["planned"].max())


def surface_view(part: pl.DataFrame, metric: str, log: bool) -> dict:
    """A plane's grid for the report's turnable 3-D view: a, b, z[b][a] (None where not evaluated)."""
    split = part.filter(pl.col("kind") == "grid")["split"][0]
    a, b, z = grid_array(part.filter(pl.col("kind") == "grid", pl.col("split") == split), metric)
    return {"metric": metric, "split": split, "log": bool(log), "a": a.tolist(), "b": b.tolist(),
            "z": [[None if v != v else float(v) for v in row] for row in z]}


def figures(job: Job, t: dict, log_height: bool = False) -> list[Figure]:
    """Every figure the run's tables `t` (load_tables) support: each sweep's own, drawn by its kind (the kinds'
    `figures`, in the order of the job's sweeps), then the learning curves (T1)."""
    t = {**t, "log_height": log_height}
    out = []
    for sweep in job.sweeps:
        draw = kind(sweep.kind).figures
        out += draw(job, sweep, t) if draw else []
    ck = t["checkpoints"]
    if "step" in ck.columns and ck.height and any(c in ck.columns for c in ("train_loss", "test_loss")):
        out.append(Figure("T1-learning-curves", "T1 — learning curves",
                          "Train (solid) and test (dashed) loss and error at every checkpoint, one colour per "
                          "replicate, steps on a log₂ axis.", [learning_chart(ck, m) for m in ("loss", "error")]))
    return out


def has_batchnorm(job: Job) -> bool:
    """Whether the job's model normalises with BatchNorm (the built-in conv nets; an MLP with batchnorm)."""
    return job.model.batchnorm or any(k in job.model.name for k in ("resnet", "vgg"))


def write_figures(job: Job, tables, out: str, formats=("png", "svg"), log_height: bool = False) -> list[str]:
    """One file per figure and format in `out`, each with a caption file (<name>.txt)."""
    import vl_convert as vlc

    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"unknown figure format(s) {bad or formats}; choose from {list(FORMATS)}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with alt.data_transformers.disable_max_rows():
        for fig in figures(job, load_tables(tables), log_height):
            spec = image_spec(fig.chart())
            for fmt in formats:
                data = {"png": lambda: vlc.vegalite_to_png(spec, scale=2),
                        "svg": lambda: vlc.vegalite_to_svg(spec).encode(),
                        "pdf": lambda: vlc.vegalite_to_pdf(spec)}[fmt]()
                path = folder / f"{fig.name}.{fmt}"
                path.write_bytes(data)
                written.append(str(path))
            (folder / f"{fig.name}.txt").write_text(f"{fig.heading}\n\n{fig.caption}\n")
            written.append(str(folder / f"{fig.name}.txt"))
    return written
