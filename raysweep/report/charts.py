"""Altair charts and the self-contained HTML report. No computation: charts read the tables."""
from __future__ import annotations

from pathlib import Path

import altair as alt
import polars as pl

from raysweep.report.contours import iso_lines, surface_frame, surface_polygons

WIDTH, HEIGHT = 320, 220
# Images (PNG/SVG/PDF) are drawn with DejaVu Sans, shipped with raysweep (report/fonts, its LICENSE there):
# it has θ, the subscripts ₀ ₜ and ‖, which the renderer's default fonts lack (they fell back to a serif)
FONT = "DejaVu Sans"
FONT_DIR = Path(__file__).parent / "fonts"
_registered = False


def image_spec(chart) -> dict:
    """The Vega-Lite spec of `chart` for vl-convert, drawn in FONT (registered once per process)."""
    global _registered
    import vl_convert as vlc

    if not _registered:
        vlc.register_font_directory(str(FONT_DIR))
        _registered = True
    return chart.configure(font=FONT).to_dict()


def experiment(kind: str, alphas: list[float], align: str = "none", shape: str = "bezier") -> tuple[str, str, str]:
    """(tag, what the line is, the paper figure it reproduces) of a line (or curve) sweep, from its kind and grid."""
    lo, hi = min(alphas), max(alphas)
    if kind == "curve":  # Garipov et al. 2018, Fig 2 and Table 1
        units = ", units aligned" if align != "none" else ""
        return "MC", f"θ_T(i) → θ_T(j) along a trained {SHAPES[shape]}{units}", "MC"
    if kind == "init_to_final":
        if lo < -1e-9 or hi > 1 + 1e-9:
            return "I7", "θ₀ → θ_T, extrapolated", "G-fig7"
        if hi - lo < 0.5:
            return "I4", "θ₀ → θ_T, high-resolution window", "G-fig4"
        return "I1", "θ₀ → θ_T", "F-fig1"
    if kind == "step_to_final":
        return "I2", "θ_t → θ_T", "F-fig2"
    if kind == "instability":
        return "LMC", "child 1 → child 2 spawned at step k", "LMC-fig"
    if kind == "final_to_final":
        return ("I5", "θ_T(i) → θ_T(j), units aligned", "G-fig5") if align != "none" else (
            "I5", "θ_T(i) → θ_T(j)", "G-fig5")
    return "I6", "θ_r → θ_T", "G-fig5"


def line_of(job, sweep, alphas) -> tuple[str, str, str]:
    """(tag, what the line is, figure name prefix): the papers' experiment, or for checkpoints trained
    elsewhere (`raysweep interpolate`) the line from the first file to the last."""
    if job.external and sweep.kind == "init_to_final":
        return "line", f"θ_a → θ_b, α in [{min(alphas):g}, {max(alphas):g}]", "line"
    return experiment(sweep.kind, alphas, sweep.align, sweep.curve.shape)


SHAPES = {"bezier": "Bézier curve", "polychain": "polygonal chain"}


# Paths told apart at a glance: saturated colours, the line grey and dashed (Garipov et al. 2018, Fig 2)
PATH_COLOURS = ["#5f5f5f", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def paths_chart(df: pl.DataFrame, metric: str, title: str) -> alt.Chart:
    """Several paths between the same pairs of solutions (column `path`: lines, aligned lines, curves),
    each its mean over the pairs with a ±1 std band clipped at 0, against α (t on a curve). The legend
    shows the lines' own colours (not the pale bands')."""
    df = df.select("path", "alpha", "n", mean=f"{metric}_mean",
                   lo=(pl.col(f"{metric}_mean") - pl.col(f"{metric}_std").fill_null(0)).clip(lower_bound=0),
                   hi=pl.col(f"{metric}_mean") + pl.col(f"{metric}_std").fill_null(0))
    paths = df["path"].unique(maintain_order=True).to_list()
    colour = alt.Scale(domain=paths, range=PATH_COLOURS[:len(paths)])
    base = alt.Chart(df).encode(x=alt.X("alpha:Q", title="α along a line, t along a curve"))
    line = base.mark_line(strokeWidth=2.5).encode(
        y=alt.Y("mean:Q", scale=alt.Scale(zero=False), title=metric),
        color=alt.Color("path:N", scale=colour, title="path", legend=alt.Legend(
            symbolType="stroke", symbolStrokeWidth=4, symbolOpacity=1, symbolSize=300)),
        strokeDash=alt.condition(alt.FieldOneOfPredicate("path", [p for p in paths if p.startswith("line")]),
                                 alt.value([5, 3]), alt.value([1, 0])),
        tooltip=["path", "alpha", "mean", "lo", "hi", "n"])
    band = base.mark_area(opacity=0.12).encode(y="lo:Q", y2="hi:Q",
                                               color=alt.Color("path:N", scale=colour, legend=None))
    return (line + band).properties(title=title, width=WIDTH, height=HEIGHT)  # the legend from the lines


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks from the one at or below `lo` to the one at or above `hi`: a log axis labelled over its
    whole range (the data's top included), never a lone decade."""
    import math

    lo, hi = max(lo, 1e-12), max(hi, lo * 1.0001, 1e-12)
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
             for m in (1, 2, 5)]
    below = max([t for t in ticks if t <= lo], default=ticks[0])
    above = min([t for t in ticks if t >= hi], default=ticks[-1])
    return [t for t in ticks if below <= t <= above]


def _split_colour(df: pl.DataFrame):
    """Colour by split only when there is more than one (a one-split panel needs no legend)."""
    return {"color": alt.Color("split:N")} if df["split"].n_unique() > 1 else {}


def step_axis(top: int, title: str = "step t") -> alt.X:
    """A log₂ axis of training steps (F's figures): t = 0 sits at ½ and is labelled 0."""
    import math

    ticks = [0.5] + [2 ** k for k in range(0, max(1, math.ceil(math.log2(max(top, 1)))) + 1)]
    if len(ticks) > 12:  # every other power of two on long runs
        ticks = [0.5] + ticks[1::2]
    return alt.X("t:Q", title=f"{title} (log₂)", scale=alt.Scale(type="log", base=2, domain=[0.5, max(top, 1)]),
                 axis=alt.Axis(values=ticks, labelExpr="datum.value < 1 ? '0' : format(datum.value, ',d')"))


def _t(df: pl.DataFrame, step: str = "step") -> pl.DataFrame:
    return df.with_columns(t=pl.col(step).cast(pl.Float64).clip(lower_bound=0.5))


def band_chart(curves: pl.DataFrame, metric: str, title: str, log_y: bool = False, x_title: str = "α") -> alt.Chart:
    """Mean across replicates (or pairs) with a ±1 std band clipped at 0, one colour per split (x: α along a
    line, t along a curve)."""
    df = curves.with_columns(
        lo=(pl.col(f"{metric}_mean") - pl.col(f"{metric}_std").fill_null(0)).clip(lower_bound=0),
        hi=pl.col(f"{metric}_mean") + pl.col(f"{metric}_std").fill_null(0),
    ).select("alpha", "split", "n", mean=f"{metric}_mean", lo="lo", hi="hi")
    axis = alt.Axis()
    if log_y:
        df = df.with_columns(pl.col("lo").clip(lower_bound=1e-6))
        low, high = df["lo"].min(), df["hi"].max()
        ticks = log_ticks(low, high) if low is not None and high is not None else []
        axis = alt.Axis(values=ticks, format="~g") if ticks else axis
    y_scale = (alt.Scale(type="log", nice=False, **({"domain": [ticks[0], ticks[-1]]} if ticks else {})) if log_y
               else alt.Scale(zero=False))
    base = alt.Chart(df).encode(x=alt.X("alpha:Q", title=x_title), **_split_colour(df))
    band = base.mark_area(opacity=0.25).encode(y=alt.Y("lo:Q", scale=y_scale, title=metric, axis=axis), y2="hi:Q")
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
    """max_increase (mean ± std, clipped at 0) against the starting step on a log₂ axis (F Fig 3);
    t = T, a line of one point, is left out."""
    df = _t(barriers.filter(pl.col("metric") == metric, pl.col("step_a") < pl.col("step_b")).select(
        "step", mean="max_increase_mean",
        lo=(pl.col("max_increase_mean") - pl.col("max_increase_std").fill_null(0)).clip(lower_bound=0),
        hi=pl.col("max_increase_mean") + pl.col("max_increase_std").fill_null(0)))
    top = int(barriers["step_b"].max()) if barriers.height else 1
    base = alt.Chart(df).encode(x=step_axis(top))
    return (base.mark_errorbar().encode(y=alt.Y("lo:Q", title=f"max increase of {metric}"), y2="hi:Q")
            + base.mark_line(point=True).encode(y="mean:Q", tooltip=["step", "mean", "lo", "hi"])
            ).properties(title=title, width=WIDTH, height=HEIGHT)


def instability_chart(barriers: pl.DataFrame, metric: str, top: int) -> alt.Chart:
    """Instability (peak_over_ends between the two children, mean ± std over replicates, clipped at 0)
    against the spawn step k on a log₂ axis (Frankle et al. 2020, LMC)."""
    df = _t(barriers.filter(pl.col("metric") == metric).select(
        "step", mean="peak_over_ends_mean",
        lo=(pl.col("peak_over_ends_mean") - pl.col("peak_over_ends_std").fill_null(0)).clip(lower_bound=0),
        hi=pl.col("peak_over_ends_mean") + pl.col("peak_over_ends_std").fill_null(0)))
    base = alt.Chart(df).encode(x=step_axis(top, "spawn step k"))
    return (base.mark_errorbar().encode(y=alt.Y("lo:Q", title=f"instability ({metric})"), y2="hi:Q")
            + base.mark_line(point=True).encode(y="mean:Q", tooltip=["step", "mean", "lo", "hi"])
            ).properties(title=f"instability of {metric} vs k", width=WIDTH, height=HEIGHT)


def learning_chart(checkpoints: pl.DataFrame, metric: str) -> alt.Chart:
    """Every replicate's train (solid) and test (dashed) curve, one colour per replicate, log₂ steps."""
    cols = [c for c in (f"train_{metric}", f"test_{metric}") if c in checkpoints.columns]
    df = _t(checkpoints.unpivot(index=["replicate", "step"], on=cols, variable_name="split", value_name=metric)
            .with_columns(pl.col("split").str.replace(f"_{metric}", "")))
    return alt.Chart(df).mark_line(point=True).encode(
        x=step_axis(int(checkpoints["step"].max())), y=f"{metric}:Q",
        color=alt.Color("replicate:N", legend=alt.Legend(symbolType="stroke", symbolStrokeWidth=3)),
        # the legend draws each split's dash (a line with points would show two identical dots)
        # (with point=True the legend's symbols would be transparent: their opacity and colour are set)
        strokeDash=alt.StrokeDash("split:N", sort=["train", "test"], legend=alt.Legend(
            symbolType="stroke", symbolStrokeWidth=2, symbolStrokeColor="black", symbolFillColor="black",
            symbolOpacity=1)),
        tooltip=["replicate", "step", "split", metric],
    ).properties(title=f"T1 — learning curves ({metric})", width=WIDTH, height=HEIGHT)


def projection_chart(traj: pl.DataFrame) -> alt.Chart:
    return (
        alt.Chart(traj.select("replicate", "step", "alpha", "beta", "residual_fraction"))
        .mark_line(point=True)
        .encode(
            x=alt.X("alpha:Q", title="α(t): along θ_0 → θ_T"),
            y=alt.Y("beta:Q", title="β(t): residual norm"),
            color="replicate:N",
            order="step:Q",
            tooltip=["replicate", "step", "alpha", "beta", "residual_fraction"],
        )
        .properties(title="T2 — β vs α per replicate", width=WIDTH, height=HEIGHT)
    )


def merge_chart(part: pl.DataFrame, soup: pl.DataFrame, metric: str, x_title: str,
                best: pl.DataFrame | None = None) -> alt.Chart:
    """A merge sweep's metric against its parameter (the merges table's `lam`), one colour per split; the uniform
    soup of the same splits as dashed rules, the best single fine-tune (`best`: split, metric) as dotted ones. A
    sweep of several merges (SLERP's pairs) draws a line per members."""
    df = part.select(pl.col("lam").alias("x"), "split", "members", metric).sort("x")
    chart = alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("x:Q", title=x_title), y=alt.Y(f"{metric}:Q", title=metric, scale=alt.Scale(zero=False)),
        color=alt.Color("split:N"), tooltip=["x", "split", "members", metric])
    if df["members"].n_unique() > 1:
        chart = chart.encode(detail="members:N", shape="members:N")
    rules = soup.filter(pl.col("split").is_in(df["split"].unique().to_list())).select("split", metric)
    if rules.height:
        chart += alt.Chart(rules).mark_rule(strokeDash=[4, 3]).encode(y=f"{metric}:Q", color="split:N")
    if best is not None and best.height:
        best = best.filter(pl.col("split").is_in(df["split"].unique().to_list())).select("split", metric)
        chart += alt.Chart(best).mark_rule(strokeDash=[1, 2]).encode(y=f"{metric}:Q", color="split:N")
    return chart.properties(title=metric, width=WIDTH, height=HEIGHT)


def best_points_chart(best: pl.DataFrame, metric: str) -> alt.Chart:
    """Each merge method's best point (`best`: method, point, and the metric): a bar each, labelled with its
    parameters."""
    base = alt.Chart(best).encode(y=alt.Y("method:N", sort=None, title=None),
                                  x=alt.X(f"{metric}:Q", title=metric, scale=alt.Scale(zero=False)))
    return (base.mark_bar(opacity=0.6) + base.mark_text(align="left", dx=4).encode(text="point:N")).properties(
        title=f"best {metric} per method", width=WIDTH, height=max(HEIGHT // 2, 22 * best.height))


def wise_chart(curves: pl.DataFrame, x_split: str, y_split: str) -> alt.Chart:
    """Accuracy on one split against another, one point per α (coloured), joined in α order."""
    acc = lambda s: curves.filter(pl.col("split") == s).select("alpha", (1 - pl.col("error_mean")).alias(s))  # noqa: E731
    df = acc(x_split).join(acc(y_split), on="alpha").sort("alpha")
    base = alt.Chart(df).encode(x=alt.X(f"{x_split}:Q", title=f"{x_split} accuracy", scale=alt.Scale(zero=False)),
                                y=alt.Y(f"{y_split}:Q", title=f"{y_split} accuracy", scale=alt.Scale(zero=False)))
    return (base.mark_line(color="gray").encode(order="alpha:Q")
            + base.mark_circle(size=50).encode(color=alt.Color("alpha:Q", scale=alt.Scale(scheme="viridis")),
                                               tooltip=["alpha", x_split, y_split])
            ).properties(title=f"{y_split} vs {x_split} accuracy along α", width=WIDTH, height=HEIGHT)


def mds_chart(fmap: pl.DataFrame, which: str, title: str | None = None) -> alt.Chart:
    """MDS map coloured by epoch (B: red to blue), a grey line per replicate in step order."""
    colour = "epoch" if "epoch" in fmap.columns else "step"
    df = fmap.select(*dict.fromkeys(["replicate", "step", colour]), x=f"{which}_x", y=f"{which}_y")
    base = alt.Chart(df).encode(x=alt.X("x:Q", title="MDS 1"), y=alt.Y("y:Q", title="MDS 2"))
    lines = base.mark_line(opacity=0.3, color="gray").encode(detail="replicate:N", order="step:Q")
    dots = base.mark_circle(size=30).encode(color=alt.Color(f"{colour}:Q", scale=alt.Scale(scheme="redblue")),
                                            tooltip=list(dict.fromkeys(["replicate", "step", colour])))
    name = "τ (softmax outputs)" if which == "tau" else "κ (predictions, Hamming)"
    return (lines + dots).properties(title=title or f"T6 — MDS of {name}", width=WIDTH, height=HEIGHT)


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
    axes = part.filter(pl.col("kind") == "axes")  # a PCA plane: the variance each direction explains
    a_title, b_title = (("a", "b") if axes.is_empty() else
                        (f"a: PC1, {axes['a'][0]:.1%} of the path's variance",
                         f"b: PC2, {axes['b'][0]:.1%}"))
    heat = alt.Chart(grid).mark_rect().encode(
        x=alt.X("a0:Q", title=a_title), x2="a1:Q", y=alt.Y("b0:Q", title=b_title), y2="b1:Q",
        color=alt.Color(f"{metric}:Q", scale=alt.Scale(scheme="viridis")), tooltip=["a", "b", metric])
    line = alt.Chart(path).mark_line(point=True, color="red").encode(
        x="a:Q", y="b:Q", order="step:Q", tooltip=["step", "a", "b"])
    lines, labels = iso_lines(grid, metric, log=metric == "loss")
    layers = [heat]
    if lines.height:  # labelled iso-lines (loss-landscape's plot_2D.py contours), levels in log space for loss
        layers += [alt.Chart(lines).mark_line(color="white", strokeWidth=0.9, opacity=0.85).encode(
                       x="a:Q", y="b:Q", detail="line:N", order="order:Q"),
                   alt.Chart(labels).mark_text(color="white", fontSize=9, dy=-4).encode(
                       x="a:Q", y="b:Q", text="text:N")]
    return alt.layer(*layers, line).properties(title=f"{metric} on the plane ({split}), iso-lines, SGD path in red",
                                              width=WIDTH, height=WIDTH)


def surface3d_chart(part: pl.DataFrame, metric: str, log: bool = False,
                    marks: dict[str, tuple[float, float]] | None = None) -> alt.LayerChart:
    """The plane as a 3-D surface z = metric(a, b) from a fixed angle (Li et al. 2018, Fig 1): the grid's cells
    projected into polygons (report/contours.py), drawn back to front, coloured by value; with its frame (the a
    and b edges of the base and a vertical axis of the metric, ticked and titled — PC1/PC2 and their share of
    the path's variance on a PCA plane), the SGD path on the surface in red and the named points (`marks`:
    θ_T, θ_0 at their (a, b))."""
    split = part.filter(pl.col("kind") == "grid")["split"][0]
    grid = part.filter(pl.col("kind") == "grid", pl.col("split") == split)
    polys = surface_polygons(grid, metric, log=log)
    path = part.filter(pl.col("kind") == "path").select("a", "b", "step")
    lines, labels, track = surface_frame(grid, metric, path, marks or {}, _plane_titles(part), log=log)
    features = [{"type": "Feature", "properties": {"value": r["value"], "draw": r["draw"]},
                 "geometry": {"type": "Polygon", "coordinates": [[*zip(r["x"], r["y"]), (r["x"][0], r["y"][0])]]}}
                for r in polys.iter_rows(named=True)]
    scale = alt.Scale(scheme="viridis", type="log" if log and polys.height and polys["value"].min() > 0 else "linear")
    surface = alt.Chart(alt.Data(values=features)).mark_geoshape(stroke="#222", strokeWidth=0.25).encode(
        color=alt.Color("properties.value:Q", scale=scale, title=metric), order="properties.draw:Q")

    def strokes(coords: list, **style) -> alt.Chart:
        shapes = [{"type": "Feature", "geometry": {"type": "LineString", "coordinates": c}} for c in coords if c]
        return alt.Chart(alt.Data(values=shapes)).mark_geoshape(filled=False, **style)
    layers = [surface, strokes(lines, stroke="#333", strokeWidth=1)]
    if len(track) > 1:
        layers.append(strokes([track], stroke="red", strokeWidth=1.5))
    text = pl.DataFrame(labels) if labels else pl.DataFrame({"x": [], "y": [], "text": [], "kind": []})
    for kind, style in (("tick", {"fontSize": 9, "color": "#333"}), ("title", {"fontSize": 11, "color": "#000"}),
                        ("mark", {"fontSize": 11, "color": "red", "dy": -8, "fontWeight": "bold"})):
        rows = text.filter(pl.col("kind") == kind)
        if rows.height:
            layers.append(alt.Chart(rows).mark_text(**style).encode(longitude="x:Q", latitude="y:Q", text="text:N"))
            if kind == "mark":
                layers.append(alt.Chart(rows).mark_point(color="red", filled=True, size=40).encode(
                    longitude="x:Q", latitude="y:Q"))
    return alt.layer(*layers).project(type="identity", reflectY=True).properties(
        title=f"{metric} as a surface ({split}{', log height' if log else ''}), SGD path in red",
        width=WIDTH, height=WIDTH)


def _plane_titles(part: pl.DataFrame) -> tuple[str, str]:
    """The plane's axis titles: a and b, or PC1/PC2 with the fraction of the path's variance each explains."""
    axes = part.filter(pl.col("kind") == "axes")
    if axes.is_empty():
        return "a", "b"
    return f"a: PC1 ({axes['a'][0]:.1%})", f"b: PC2 ({axes['b'][0]:.1%})"
