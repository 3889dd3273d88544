"""The headline numbers a report opens with: the final test error, each sweep's barrier (or largest rise,
named for what it is: a curve that never rises has no barrier), the I2 worst t, the T2 norm ratio."""
from __future__ import annotations

import polars as pl

from raysweep.report.charts import line_of
from raysweep.spec import Job


def _mean_std(row: dict, col: str) -> str:
    """A table's mean ± std; the mean alone where there is no spread (one replicate or pair)."""
    mean, std = row.get(f"{col}_mean"), row.get(f"{col}_std")
    if mean is None:  # a grid without both ends (an I4 window): no barrier to the endpoints' line
        return "—"
    return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None and row.get("n", 2) > 1 else "") + _short(row)


def _short(row: dict) -> str:
    """ " (n = 1 of 3: INCOMPLETE)" for a mean over fewer members than planned."""
    return f" (n = {row['n']} of {row['planned']}: INCOMPLETE)" if row.get("complete") is False else ""


def _pm(values: pl.Series, fmt: str = ".3f") -> str:
    values = values.drop_nulls()
    if values.is_empty():
        return "—"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(values.mean(), fmt)} ± {format(values.std(), fmt)}"


def headline(job: Job, t: dict) -> list[tuple[str, str]]:
    """(what, number) rows the report opens with: final errors, barriers, the T2 norm ratio."""
    rows = []
    ck = t["checkpoints"]
    if ck.height and "test_error" in ck.columns:
        last = ck.filter(pl.col("step") == pl.col("step").max().over("replicate"))
        rows.append(("final test error (mean ± std over replicates)", _pm(last["test_error"], ".4f")))
    b = t["barriers"]
    for sweep in job.sweeps:
        part = b.filter(pl.col("sweep") == sweep.name)
        if part.is_empty():
            continue
        alphas = sweep.alpha.points()
        tag = line_of(job, sweep, alphas)[0] + (" aligned" if sweep.align != "none" else "")
        for metric in ("loss", "error"):
            m = part.filter(pl.col("metric") == metric, pl.col("split") == sweep.splits[0])
            if m.is_empty():
                continue
            if sweep.kind == "step_to_final":
                m = m.filter(pl.col("step_a") < pl.col("step_b"))
                worst = m.sort("max_increase_mean", descending=True).row(0, named=True)
                rows.append((f"{tag} {sweep.name}: largest rise of {metric} over all t (at t)",
                             f"{worst['max_increase_mean']:.4f} (t = {worst['step']}){_short(worst)}"))
            elif sweep.kind == "instability":
                m = m.sort("step")
                first, last = m.row(0, named=True), m.row(m.height - 1, named=True)
                rows.append((f"{tag} {sweep.name}: instability of {metric} (max − mean of ends) at k = "
                             f"{first['step']} → k = {last['step']}",
                             f"{first['peak_over_ends_mean']:.4f}{_short(first)} → "
                             f"{last['peak_over_ends_mean']:.4f}{_short(last)}"))
            elif sweep.kind in ("final_to_final", "curve"):
                r = m.row(0, named=True)
                rows.append((f"{tag} {sweep.name}: barrier of {metric} (max above the endpoints' line)",
                             _mean_std(r, "barrier_linear")))
            else:
                r = m.row(0, named=True)
                rises = (r.get("max_increase_mean") or 0) > 1e-9  # a curve that only falls has no barrier
                what = "barrier of" if rises else "never rises; its largest height above the chord of"
                rows.append((f"{tag} {sweep.name}: {what} {metric} (max above the endpoints' line)",
                             _mean_std(r, "barrier_linear")))
                rows.append((f"{tag} {sweep.name}: largest rise of {metric} along the line",
                             _mean_std(r, "max_increase")))
    traj = t["trajectory"]
    if traj.height:
        ratio = traj.group_by("replicate").agg(pl.col("max_beta_over_max_norm").first())["max_beta_over_max_norm"]
        rows.append(("T2: max β / max ‖θ_t‖ (per replicate)", _pm(ratio)))
    return rows
