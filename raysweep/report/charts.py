"""Altair charts and the self-contained HTML report. No computation: charts read the tables."""
from __future__ import annotations


import altair as alt
import polars as pl


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
