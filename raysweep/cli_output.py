"""How results leave `raysweep results` and `raysweep query`: a table a person reads at the terminal's width
(the table's key columns, as many as fit, the rest named), CSV, JSON or Parquet, and the files other tools
read (loss-landscape's HDF5, VTK)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import typer

from raysweep.cli_common import Format
from raysweep.errors import SpecError

# What a person looks at first in each table (the rest: --columns all, or --format csv)
KEY_COLUMNS = {
    "curves": ["sweep", "step_a", "step_b", "split", "alpha", "n", "loss_mean", "loss_std", "error_mean", "error_std"],
    "barriers": ["sweep", "step", "split", "metric", "n", "barrier_linear_mean", "barrier_linear_std",
                 "max_increase_mean", "monotone_fraction"],
    "points": ["sweep", "replicate_a", "replicate_b", "step_a", "step_b", "alpha", "split", "loss", "error"],
    "checkpoints": ["replicate", "step", "epoch", "train_loss", "train_error", "test_loss", "test_error"],
    "trajectory": ["sweep", "replicate", "step", "alpha", "beta", "norm", "residual_fraction"],
}


def pick_columns(df, table: str, columns: Optional[str]) -> list[str]:
    """--columns as given (checked), 'all', or the table's key columns."""
    if columns and columns.strip() != "all":
        wanted = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in df.columns]
        if unknown:
            raise SpecError(f"--columns: {unknown} are not columns of this table; its columns are "
                            f"{', '.join(df.columns)}")
        return wanted
    if columns:
        return list(df.columns)
    return [c for c in KEY_COLUMNS.get(table, df.columns) if c in df.columns] or list(df.columns)


def with_counts(shown, df):
    """`n` as "n of planned" (and "!" where fewer than planned) in a table a person reads."""
    import polars as pl

    if "n" not in shown.columns or "planned" not in df.columns:
        return shown
    label = pl.format("{} of {}", df["n"], df["planned"].fill_null(df["n"]))
    mark = pl.when(df["complete"] == False).then(pl.lit(" !")).otherwise(pl.lit(""))  # noqa: E712
    return shown.with_columns(pl.select(pl.concat_str([label, mark])).to_series().alias("n"))


def render_table(df, width: int | None) -> tuple[str, list[str]]:
    """The table as text no wider than `width` (None: any width): trailing columns are left out until it
    fits; returns the text and the columns left out."""
    import polars as pl

    left_out: list[str] = []
    while True:
        with pl.Config(tbl_rows=40, tbl_cols=-1, tbl_width_chars=60_000, fmt_str_lengths=40, float_precision=4,
                       tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            text = str(df)
        if width is None or df.width <= 1 or max(len(line) for line in text.splitlines()) <= width:
            return text, left_out
        left_out.insert(0, df.columns[-1])
        df = df.drop(df.columns[-1])


def emit(df, fmt: Format, out: Optional[Path], table: str = "", columns: Optional[str] = None) -> None:
    if fmt in (Format.hdf5, Format.vtk):
        raise SpecError(f"--format {fmt.value} is for `raysweep results --table surface`")
    if fmt == Format.parquet and out is None:
        raise SpecError("--format parquet writes a binary file; add --out FILE.parquet")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == Format.table:
        shown = with_counts(df.select(pick_columns(df, table, columns)), df)
        text, left_out = render_table(shown, None if out else shutil.get_terminal_size((120, 24)).columns)
        rows = f"{df.height:,} rows" + (" (the first and last 20 shown; --format csv: all)" if df.height > 40 else "")
        if "complete" in df.columns and (df["complete"] == False).any():  # noqa: E712 (a Polars expression)
            rows += (f"; {int((df['complete'] == False).sum())} row(s) marked ! are means over fewer members "  # noqa
                     f"than planned (n of planned): a replicate retrained or a sweep not finished")
        more = df.width - shown.width + len(left_out)
        note = rows + (f"; {more} more column(s): --columns all, or --columns a,b,c (e.g. "
                       f"{', '.join((left_out + [c for c in df.columns if c not in shown.columns])[:4])})"
                       if more else "")
        out.write_text(text + "\n") if out else (typer.echo(text), typer.echo(note, err=True))
    elif fmt == Format.csv:
        df = df.select(pick_columns(df, table, columns or "all"))
        out.write_text(df.write_csv()) if out else typer.echo(df.write_csv(), nl=False)
    elif fmt == Format.json:
        text = json.dumps(df.to_dicts(), indent=1, default=str)
        out.write_text(text) if out else typer.echo(text)
    else:
        df.write_parquet(out)
    if out is not None:
        typer.echo(f"wrote {df.height} rows to {out}", err=True)


def surface_file(r, table: str, sweep: Optional[str], fmt: Format, out: Optional[Path], partial: bool) -> None:
    """A plane (--table surface) as loss-landscape HDF5 or a VTK StructuredGrid; a line (--table curves or
    points) as loss-landscape's 1-D HDF5."""
    from raysweep.report.surfaces import curve_grids, grids, line_grids, write_hdf5, write_vtk

    line = fmt == Format.hdf5 and table in ("curves", "points")
    if (table != "surface" and not line) or out is None:
        raise SpecError(f"--format {fmt.value} writes a file for other tools: a plane (T3/T4/T5) with --table surface"
                        f"{', or a line with --table curves' if fmt == Format.hdf5 else ''}, and --out "
                        f"FILE.{'h5' if fmt == Format.hdf5 else 'vts'}")
    if fmt == Format.vtk and out.suffix != ".vts":
        raise SpecError(f"--out {out}: --format vtk writes an XML StructuredGrid, which VTK readers and ParaView "
                        f"open by its extension: name it FILE.vts")
    out.parent.mkdir(parents=True, exist_ok=True)
    attrs = {"job": r.job.name, "hash": r.job.hash}
    if line and table == "curves":  # the table asked for: mean ± std curves, and every replicate's line
        name, data, groups = curve_grids(r.table("curves", sweep, partial), r.table("points", sweep, partial), sweep)
        write_hdf5(out, data, {**attrs, "sweep": name})
        lines = len({k.split("lines/")[1].split("/")[0] for k in data if "lines/" in k})
        where = ("at the top level (loss-landscape's plot_1D.py reads it)" if groups == 1
                 else f"in {groups} groups step_<a>_<b>/ (one per step pair)")
        typer.echo(f"wrote the mean ± std curves of sweep {name} {where}, and {lines} replicate line(s) under "
                   f"lines/, to {out}", err=True)
        return
    if line:
        name, ends, data = line_grids(r.table("points", sweep, partial), sweep)
        write_hdf5(out, data, {**attrs, "sweep": name, **ends})
        typer.echo(f"wrote the line of sweep {name} from replicate {ends['replicate_a']} step {ends['step_a']} to "
                   f"replicate {ends['replicate_b']} step {ends['step_b']}: {len(data['xcoordinates'])} α "
                   f"({', '.join(n for n in data if n.endswith(('_loss', '_acc')))}) to {out}", err=True)
        return
    name, k, data = grids(r.table("surface", sweep, partial), sweep)
    if fmt == Format.hdf5:
        write_hdf5(out, data, {**attrs, "sweep": name, "replicate": k})
    else:
        write_vtk(out, data, f"raysweep {r.job.name}/{r.job.hash} sweep {name} replicate {k}")
    typer.echo(f"wrote sweep {name}, replicate {k}: a {len(data['xcoordinates'])} x {len(data['ycoordinates'])} grid "
               f"({', '.join(n for n in data if n.endswith(('_loss', '_acc')))}) to {out}", err=True)
