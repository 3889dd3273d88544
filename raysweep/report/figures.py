"""The figures of a run, each named after the paper figure it reproduces, with a caption; and the
headline numbers the report opens with. The HTML report and `raysweep figures` draw the same list."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import altair as alt
import polars as pl

from raysweep.analysis.scan import inputs
from raysweep.report.charts import (
    SHAPES,
    band_chart,
    barrier_chart,
    image_spec,
    instability_chart,
    learning_chart,
    line_of,
    mds_chart,
    merge_chart,
    paths_chart,
    per_step_chart,
    projection_chart,
    surface3d_chart,
    surface_chart,
    wise_chart,
)
from raysweep.report.contours import grid_array
from raysweep.report.headline import headline  # noqa: F401  (the report's opening numbers, beside its figures)
from raysweep.report.spectrum import spectrum_charts, spectrum_top
from raysweep.spec import Job

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


# Where each plane kind's named points lie on its (a, b) axes (sweep/prep.py's directions): θ_T at the origin of
# a plane through it; the line's planes run from θ_0 (a = 0) to θ_T (a = 1)
PLANE_MARKS = {"random_plane": {"θ_T": (0.0, 0.0)}, "pca_plane": {"θ_T": (0.0, 0.0)},
               "line_and_random": {"θ_0": (0.0, 0.0), "θ_T": (1.0, 0.0)},
               "path_surface": {"θ_0": (0.0, 0.0), "θ_T": (1.0, 0.0)}}


def _grid(alphas) -> str:
    return f"{len(alphas)} α in [{min(alphas):g}, {max(alphas):g}]"


def load_tables(tables, made_of: dict | None = None) -> dict[str, pl.DataFrame]:
    """The tables the figures and headline numbers read, each read (or rebuilt) once from `tables`
    (a run's raysweep.run.tables.Tables), checked against one record of the run's inputs."""
    made_of = made_of or inputs(tables.store, tables.job)
    return {name: tables.get(name, made_of).collect()
            for name in ("curves", "barriers", "checkpoints", "trajectory", "function_map", "surface", "merges",
                         "sharpness")}


def _over(job: Job, sweep, c: pl.DataFrame | None = None) -> str:
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
    """Every figure the run's tables `t` (load_tables) support, in the order of the job's sweeps."""
    curves, barriers = t["curves"], t["barriers"]
    n = job.replicates
    out = []
    for sweep in job.sweeps:
        c = curves.filter(pl.col("sweep") == sweep.name)
        if c.is_empty():
            continue
        alphas = sorted(set(c["alpha"]))
        tag, line, paper = line_of(job, sweep, alphas)
        heading = f"{tag} — {line}: {sweep.name}"
        over = _over(job, sweep, c)
        if sweep.kind == "step_to_final":
            split = sweep.splits[0]
            b = barriers.filter(pl.col("sweep") == sweep.name, pl.col("split") == split)
            out.append(Figure(f"{paper}-{sweep.name}", heading,
                              f"Mean {split} loss and error (over {over}) along the line from each checkpoint θ_t "
                              f"of the schedule to θ_T, one curve per t ({_grid(alphas)}; F Fig 2).",
                              [per_step_chart(c.filter(pl.col("split") == split), m, f"{sweep.name}: {m}")
                               for m in ("loss", "error")]))
            out.append(Figure(f"F-fig3-{sweep.name}-barriers", f"I3 — barrier height vs t: {sweep.name}",
                              f"Largest rise of the {split} loss and error along each line θ_t → θ_T, mean ± std over "
                              f"{over}, against t on a log₂ axis (t = 0 at the left; F Fig 3).",
                              [barrier_chart(b, m, f"max increase of {m}") for m in ("loss", "error")]))
            continue
        if sweep.kind == "instability":
            split = sweep.splits[0]
            b = barriers.filter(pl.col("sweep") == sweep.name, pl.col("split") == split)
            ck = t["checkpoints"]
            top = int(ck["step"].max()) if ck.height else max(sweep.spawn_steps)
            out.append(Figure(f"LMC-instability-{sweep.name}", f"LMC — instability vs spawn step k: {sweep.name}",
                              f"Two children of each replicate spawned from θ_k and trained on to T with different "
                              f"data orders; instability is the {split} loss/error barrier between them (max along the "
                              f"line − mean of its ends), mean ± std over {n} replicates, against k on a log₂ axis "
                              f"(Frankle, Dziugaite, Roy & Carbin 2020).",
                              [instability_chart(b, m, top) for m in ("error", "loss")]))
            out.append(Figure(f"LMC-curves-{sweep.name}", f"LMC — the lines between the children: {sweep.name}",
                              f"Mean {split} loss and error along the line from child 1 to child 2, one curve per "
                              f"spawn step k ({_grid(alphas)}).",
                              [per_step_chart(c.filter(pl.col("split") == split), m, f"{sweep.name}: {m}")
                               for m in ("loss", "error")]))
            continue
        aligned = {"none": "",
                   "weights": " θ_T(j)'s hidden units were matched to θ_T(i)'s first (weight matching).",
                   "activations": " θ_T(j)'s hidden units were matched to θ_T(i)'s first, by the correlation of their "
                                  "activations (activation matching)."}[sweep.align]
        spread = "" if "no spread" in over else ", mean ± 1 std (clipped at 0)"
        x = "t (along the curve)" if sweep.kind == "curve" else "α"
        out.append(Figure(f"{paper}-{sweep.name}", heading,
                          f"Loss and error along {line.split(',')[0]}{spread} over {over}, "
                          f"{_grid(alphas)}, splits {'/'.join(sweep.splits)}; the right panel has a log y axis."
                          + aligned,
                          [band_chart(c, m, m, x_title=x) for m in ("loss", "error")]
                          + [band_chart(c, "loss", "loss (log y)", log_y=True, x_title=x)]))
    out += _connecting(job, curves) + _merges(job, t.get("merges")) + _spectra(job, t.get("sharpness"))
    for sweep in job.sweeps:  # WiSE-FT (Wortsman et al. 2022): accuracy on two distributions along the line
        shown = [s for s in sweep.splits if s != "train"]
        c = curves.filter(pl.col("sweep") == sweep.name)
        if sweep.kind == "init_to_final" and len(shown) >= 2 and not c.is_empty() and job.train.init_from:
            out.append(Figure(f"WiSE-FT-{sweep.name}", f"WiSE-FT — {shown[0]} vs {shown[1]} along α: {sweep.name}",
                              f"Accuracy (1 − error, mean over {_over(job, sweep, c)}) on {shown[0]} against "
                              f"{shown[1]} at every α of the line from the pretrained model (α = 0, train.init_from) "
                              f"to each fine-tune (α = 1), as Wortsman et al. (2022) plot robust fine-tuning.",
                              [wise_chart(c, shown[0], shown[1])]))
    traj = t["trajectory"]
    if traj.height:
        ratio = traj.group_by("replicate").agg(pl.col("max_beta_over_max_norm").first())["max_beta_over_max_norm"]
        out.append(Figure("G-fig13-projection", "T2 — projection and residual (G App. B)",
                          f"β(t), the distance from θ_t to the line through θ_0 and θ_T, against α(t), its position "
                          f"along the line, one path per replicate. max β / max ‖θ_t‖ = {ratio.min():.3f}–"
                          f"{ratio.max():.3f} (G: the line keeps ≥ 2/3 of the norm).", [projection_chart(traj)]))
    fmap = t["function_map"]
    if fmap.height:
        for which, what in (("tau", "softmax outputs τ (Euclidean)"), ("kappa", "predictions κ (Hamming)")):
            out.append(Figure(f"B-fig1-{which}-map", f"T6 — function map of {what}",
                              f"Every replicate at every checkpoint placed by metric MDS of its {what} on the first "
                              f"test examples; colour is the epoch (red to blue), one grey line per replicate "
                              f"(B Fig 1–5).",
                              [mds_chart(fmap, which)]))
    surf = t["surface"]
    for name in surf["sweep"].unique(maintain_order=True).to_list() if surf.height else []:
        part = surf.filter(pl.col("sweep") == name, pl.col("replicate") == surf["replicate"].min())
        kind = job.sweep(name).kind
        tag, paper = {"random_plane": ("T4", "G-fig21"), "line_and_random": ("T5", "G-fig22"),
                      "path_surface": ("T3", "G-fig15"), "pca_plane": ("PCA", "Li-fig9")}[kind]
        text = {"random_plane": "a random 2-D plane through θ_T (G App. D Fig 21)",
                "line_and_random": "the plane of the line θ_0 → θ_T (a) and a random direction orthogonal to it (b; "
                                   "G Fig 22)",
                "path_surface": "a along θ_0 → θ_T in units of ‖θ_T − θ_0‖, b along the direction in which the "
                                "checkpoint nearest a leaves the line (G App. C Fig 15–20)",
                "pca_plane": "the plane through θ_T of the trajectory's top two principal directions, each scaled "
                             "to ‖θ_T − θ_0‖ (Li et al. 2018, Fig 9; the axes say how much of the path's variance "
                             "each explains)"}[kind]
        out.append(Figure(f"{paper}-{name}", f"{tag} — {name} (replicate {part['replicate'][0]})",
                          f"Loss and error on {text}, with labelled iso-lines (contourpy; loss levels evenly in "
                          f"log space) and the SGD path projected in red.",
                          [surface_chart(part, "loss"), surface_chart(part, "error")]))
        out.append(Figure(f"{paper}-{name}-3d", f"{tag} — {name} as a surface (replicate {part['replicate'][0]})",
                          f"Loss and error on {text}, as heights over the plane, seen from a fixed angle"
                          f"{'; heights on a log scale' if log_height else ''} (Li et al. 2018, Fig 1): a and b on "
                          f"the base's front edges, the metric on the vertical axis, the SGD path on the surface in "
                          f"red and {', '.join(PLANE_MARKS[kind])} marked. The HTML report's 3-D view turns with "
                          f"the mouse.",
                          [surface3d_chart(part, m, log=log_height and m == "loss", marks=PLANE_MARKS[kind])
                           for m in ("loss", "error")],
                          views3d=[surface_view(part, m, log_height and m == "loss") for m in ("loss", "error")]))
    ck = t["checkpoints"]
    if "step" in ck.columns and ck.height and any(c in ck.columns for c in ("train_loss", "test_loss")):
        out.append(Figure("T1-learning-curves", "T1 — learning curves",
                          "Train (solid) and test (dashed) loss and error at every checkpoint, one colour per "
                          "replicate, steps on a log₂ axis.", [learning_chart(ck, m) for m in ("loss", "error")]))
    return out


def _connecting(job: Job, curves: pl.DataFrame) -> list[Figure]:
    """Garipov et al. (2018) Fig 2: the paths between the same solutions side by side — the straight line,
    the line after aligning units, and the trained curves — when the job has a curve sweep."""
    kinds = {s.name: s for s in job.sweeps if s.kind in ("final_to_final", "curve")}
    if not any(s.kind == "curve" for s in kinds.values()):
        return []
    first = next(s for s in kinds.values() if s.kind == "curve")
    split = "test" if "test" in first.splits else first.splits[0]  # what the papers quote
    parts = []
    for name, s in kinds.items():
        label = (f"{SHAPES[s.curve.shape]}{' (aligned)' if s.align != 'none' else ''}" if s.kind == "curve"
                 else "aligned line" if s.align != "none" else "line") + f": {name}"
        parts.append(curves.filter(pl.col("sweep") == name, pl.col("split") == split, pl.col("alpha").is_between(0, 1))
                     .with_columns(path=pl.lit(label)))
    df = pl.concat(parts) if parts else curves.clear()
    if df.is_empty() or df.filter(pl.col("sweep").is_in([n for n, s in kinds.items() if s.kind == "curve"])).is_empty():
        return []
    bn = ", BatchNorm statistics recomputed at every t" if has_batchnorm(job) else ""
    return [Figure("MC-paths", f"MC — line, aligned line and trained curves between solutions ({split})",
                   f"Mean {split} loss and error (± 1 std, clipped at 0) over {_over(job, first)}"
                   f" along each path between two final solutions: the straight line θ(α), the line after matching "
                   f"θ_T(j)'s hidden units to θ_T(i)'s, and the curves φ(t) whose bend was trained to minimise the "
                   f"expected loss along them{bn} (Garipov et al. 2018, Fig 2).",
                   [paths_chart(df, m, m) for m in ("loss", "error")])]


MERGE_AXES = {"task_arithmetic": ("λ", "θ_pre + λ·Σ_k (θ_k − θ_pre) (Ilharco et al. 2023)"),
              "ties": ("density", "TIES (Yadav et al. 2023): each task vector trimmed to its largest entries, a sign "
                                  "elected per entry, the agreeing entries averaged; λ = 1"),
              "dare": ("drop rate p", "DARE (Yu et al. 2024): entries of each task vector dropped with probability "
                                      "p, the rest scaled by 1/(1 − p), averaged")}


def _merges(job: Job, merges) -> list[Figure]:
    """A merge sweep over its parameter (λ, density, drop rate), each split, the uniform soup as a rule."""
    out = []
    if merges is None or merges.is_empty():
        return out
    soup = merges.filter(pl.col("merge") == "uniform")
    for s in job.sweeps:
        part = merges.filter(pl.col("sweep") == s.name)
        if s.kind in MERGE_AXES and not part.is_empty():
            x, what = MERGE_AXES[s.kind]
            out.append(Figure(f"MERGE-{s.name}", f"Merges — {s.kind}: {s.name}",
                              f"Loss and error of the merged model of the {job.replicates} replicates' finals against "
                              f"{x}: {what}; the dashed rule is the uniform soup (the plain average) where the job "
                              f"has one.", [merge_chart(part, soup, m, x) for m in ("loss", "error")]))
    return out


def _spectra(job: Job, sharp) -> list[Figure]:
    """The Hessian beyond λ_max at a line sweep's sharpness points: density, top-k, loss along eigenvectors."""
    out = []
    for s in job.sweeps if sharp is not None and "eigenvalues" in sharp.columns else ():
        part = sharp.filter(pl.col("sweep") == s.name, pl.col("eigenvalues").is_not_null())
        if s.sharpness.spectrum and not part.is_empty():
            out.append(Figure(f"H-spectrum-{s.name}", f"Hessian spectrum (PyHessian) — {s.name}",
                              f"The Hessian of the mean loss over {part['examples'][0]:,} examples of "
                              f"{part['split'][0]} at the sweep's sharpness points, averaged over "
                              f"{part.select('replicate_a', 'step_a', 'replicate_b', 'step_b').n_unique()} pair(s). "
                              f"Top-{s.sharpness.top_k} eigenvalues by Lanczos ({spectrum_top(part)}); the density "
                              f"by stochastic Lanczos quadrature over {s.sharpness.density} probes; the loss along "
                              f"the top eigenvector(s) at offsets up to ±{s.sharpness.radius:g}.",
                              spectrum_charts(part)))
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
