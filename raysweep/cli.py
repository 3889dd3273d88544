"""The ``raysweep`` command: each command parses, resolves the job, and calls one API function.

    raysweep run digits_mlp                      # train -> sweep -> aggregate -> report
    raysweep results digits_mlp --table barriers --sweep step_to_final
    raysweep query digits_mlp "select step, max_increase_mean from barriers where metric = 'loss'"
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from raysweep import signals
from raysweep.cli_common import (
    AddressOpt,
    Format,
    PartialOpt,
    ReplicatesOpt,
    SetOpt,
    SharedOpt,
    StorageOpt,
    _err,
    _fits,
    _guard,
    _open,
    app,
)
from raysweep.cli_output import emit, surface_file
from raysweep.errors import SpecError, SweepFailed
from raysweep.io.paths import TABLES
from raysweep.jobs import builtin_jobs, read_toml

LogHeightOpt = typer.Option(False, "--log-height", help="Planes' 3-D surfaces: loss heights on a log scale")

# Commands import what they compute with inside themselves: `raysweep --help` and `raysweep jobs` start in a
# fraction of a second (no Polars, pyarrow, torch or Ray), tested in tests/test_layout.py.


@app.command()
@_guard
def jobs() -> None:
    """List the built-in jobs.  Example: raysweep jobs"""
    for name, path in builtin_jobs().items():
        typer.echo(f"{name:24s} {read_toml(path).get('description', '')}")


@app.command()
@_guard
def runs(job: Optional[str] = typer.Argument(None, help="Only runs of this job name"),
         storage: Optional[str] = StorageOpt) -> None:
    """List the runs stored in a storage root.  Example: raysweep runs --storage s3://bucket/sweeps"""
    from raysweep.api import list_runs
    from raysweep.io.store import Store

    store = Store(storage)
    found = [r for r in list_runs(store) if job is None or r["job"] == job]
    if not found:
        typer.echo(f"no runs{' of ' + job if job else ''} in {store.url('')}")
        return
    typer.echo(f"{'job':24s} {'hash':10s}  {'replicates':10s} {'modified':16s}  sweeps")
    for r in found:
        typer.echo(f"{r['job']:24s} {r['hash']:10s}  {r['replicates']:10s} {r['modified']:16s}  "
                   f"{', '.join(r['sweeps']) or '-'}")
    typer.echo(f"(`raysweep results JOB/HASH --storage {store.url('')}` reads one, e.g. "
               f"`raysweep results {found[0]['job']}/{found[0]['hash']}`)")


@app.command()
@_guard
def show(job: str, set_: Optional[List[str]] = SetOpt, replicates: Optional[int] = ReplicatesOpt,
         storage: Optional[str] = StorageOpt) -> None:
    """Print the resolved spec and the plan.  Example: raysweep show digits_mlp --set train.epochs=5"""
    from raysweep.report.cost import describe, plan_misfit

    run = _open(job, storage, set_, replicates)
    typer.echo(describe(run.job, run.store))
    problem = plan_misfit(run.job, run.store)
    if problem:
        raise SpecError(problem)


@app.command()
@_guard
def run(job: str, replicates: Optional[int] = ReplicatesOpt, set_: Optional[List[str]] = SetOpt,
        storage: Optional[str] = StorageOpt, address: Optional[str] = AddressOpt,
        report: bool = typer.Option(True, help="Write report.html at the end"),
        progress: bool = typer.Option(True, help="Show progress (bars on a terminal, plain lines in logs)"),
        shared_storage: bool = SharedOpt,
        rehearse: bool = typer.Option(False, "--rehearse", help="Run the job's real plan with a stand-in model and "
                                      "data in minutes: check the cluster, store, data and GPUs, and project the "
                                      "real run's time"),
        standard_size: bool = typer.Option(False, "--standard-size", help="With --rehearse: plan at the dataset's "
                                           "standard size (ImageNet: 1,281,167 / 50,000), also before the data is "
                                           "staged, instead of the files found at data.root"),
        stage_timeout: float = typer.Option(1800, "--stage-timeout", help="With --rehearse: seconds each stage may "
                                            "take (the sweep 0.2 s more per work item); 0: none")) -> None:
    """Train, sweep, aggregate and plot.  Example: raysweep run digits_mlp --replicates 3"""
    if not rehearse and (standard_size or stage_timeout != 1800):
        raise SpecError("--standard-size and --stage-timeout are options of the rehearsal: add --rehearse")
    r = _open(job, storage, set_, replicates, shared_storage, compute=True)
    if not rehearse:
        _fits(r, address)
    if rehearse:
        from raysweep.run.rehearse import rehearse as rehearsal
        from raysweep.run.rehearse import summary_lines

        for line in summary_lines(rehearsal(r, address, progress, standard_size=standard_size,
                                            stage_timeout=stage_timeout)):
            typer.echo(line)
        return
    summary = r.run(progress=progress, address=address, report=report)
    secs = ", ".join(f"{k} {v:.1f}s" for k, v in summary.seconds.items())
    typer.echo(f"done: trained {len(summary.trained)} replicate(s), evaluated {summary.items_run} of "
               f"{summary.items_total} work items ({summary.rows_written} rows) — {secs}")
    for name, where in summary.outputs.items():
        typer.echo(f"  {name:8s} {where}")


@app.command()
@_guard
def train(job: str, replicate: Optional[List[int]] = typer.Option(None, "--replicate", help="Only these replicates"),
          force: bool = typer.Option(False, help="Delete and retrain (repairs corrupted checkpoints)"),
          replicates: Optional[int] = ReplicatesOpt, set_: Optional[List[str]] = SetOpt,
          storage: Optional[str] = StorageOpt, address: Optional[str] = AddressOpt,
          shared_storage: bool = SharedOpt) -> None:
    """Train the replicates (then any instability children and curves' bends), no sweeps.
    Example: raysweep train digits_mlp --replicate 1 --force"""
    r = _open(job, storage, set_, replicates, shared_storage, compute=True)
    done = r.train(replicates=replicate, force=force, address=address)
    typer.echo(f"trained replicates {done}" if done else "all requested replicates are already trained")


@app.command()
@_guard
def sweep(job: str, sweep_: Optional[List[str]] = typer.Option(None, "--sweep", help="Only these sweeps"),
          replicates: Optional[int] = ReplicatesOpt, set_: Optional[List[str]] = SetOpt,
          storage: Optional[str] = StorageOpt, address: Optional[str] = AddressOpt,
          shared_storage: bool = SharedOpt) -> None:
    """Run the sweeps of trained replicates and aggregate.  Example: raysweep sweep digits_mlp --sweep init_to_final"""
    r = _open(job, storage, set_, replicates, shared_storage, compute=True)
    for name in sweep_ or []:
        r.job.sweep(name)
    _fits(r, address)
    summary = r.sweep(sweeps=sweep_, address=address)
    typer.echo(f"evaluated {summary.items_run} of {summary.items_total} work items ({summary.rows_written} rows)")
    from raysweep.sweep.rounds import failure_message

    if summary.failures:
        raise SweepFailed(failure_message(r.job, summary.failures, r.store))


@app.command()
@_guard
def status(job: str, replicates: Optional[int] = ReplicatesOpt, set_: Optional[List[str]] = SetOpt,
           storage: Optional[str] = StorageOpt,
           verify: bool = typer.Option(False, "--verify", help="Also hash every checkpoint against the sha256 its "
                                       "manifest records (reads each file; the tensors are not loaded)")) -> None:
    """Say what is done.  Example: raysweep status digits_mlp"""
    from raysweep.io.runs import locator

    r = _open(job, storage, set_, replicates)
    st, run_id = r.status(verify=verify), locator(r.job, r.store)
    typer.echo(f"run: {st['run']}")
    for k, info in st["replicates"].items():
        count = (f"{info['checkpoints']} checkpoints" if info["checkpoints"] >= info["expected"]
                 else f"{info['checkpoints']} of {info['expected']} checkpoints")
        typer.echo(f"  replicate {k}: {'trained' if info['trained'] else 'not trained'}, {count}")
        for problem in info["problems"]:
            typer.echo(f"    {problem}")
        if info["problems"]:
            typer.echo(f"    repair: `raysweep train {run_id} --replicate {k} --force` (the others are kept)")
    if st["sweeps"] is None:
        typer.echo("  sweeps: waiting for training")
        return
    for name, s in st["sweeps"].items():
        typer.echo(f"  sweep {name:18s} {s['done']}/{s['total']} work items")
    if st["damaged"]:
        shown = ", ".join(st["damaged"][:5]) + (f" and {len(st['damaged']) - 5} more" if len(st["damaged"]) > 5 else "")
        typer.echo(f"  damaged: {len(st['damaged'])} points file(s) cannot be read ({shown}); they count as not done: "
                   f"`raysweep run {run_id}` (or `raysweep sweep`) evaluates them again")
    typer.echo(
        {
            "current": "  report: written, current",
            "none": "  report: not yet",
            "stale": f"  report: stale (made before the latest results; `raysweep plot {run_id}` redraws it)",
        }[st["report"]]
    )


@app.command()
@_guard
def results(job: str, table: str = typer.Option("curves", "--table", help=f"Which table: {', '.join(TABLES)}, or "
                                               f"one a plugin kind of the job makes"),
            sweep: Optional[str] = typer.Option(None, "--sweep", help="Only this sweep"),
            format: Format = typer.Option(Format.table, "--format", help="Output format"),
            out: Optional[Path] = typer.Option(None, "--out", help="Write to this file"),
            columns: Optional[str] = typer.Option(None, "--columns", help="Comma-separated columns, or 'all' "
                                                  "[default: the table's key columns, as many as the terminal fits]"),
            replicates: Optional[int] = ReplicatesOpt, set_: Optional[List[str]] = SetOpt,
            storage: Optional[str] = StorageOpt, partial: bool = PartialOpt) -> None:
    """Print or export a results table of a job (with its --set overrides) or of a stored run by id.
    Example: raysweep results digits_mlp --table barriers --columns sweep,step,metric,barrier_linear_mean"""
    r = _open(job, storage, set_, replicates)
    if format in (Format.hdf5, Format.vtk):
        return surface_file(r, table, sweep, format, out, partial)
    emit(r.table(table, sweep, partial), format, out, table, columns)


@app.command()
@_guard
def query(job: str, sql: str, format: Format = typer.Option(Format.table, "--format"),
          out: Optional[Path] = typer.Option(None, "--out"), replicates: Optional[int] = ReplicatesOpt,
          set_: Optional[List[str]] = SetOpt, storage: Optional[str] = StorageOpt, partial: bool = PartialOpt) -> None:
    """Polars SQL over points, curves, barriers, checkpoints (a job, or a stored run by id).
    Example: raysweep query digits_mlp "select sweep, max(loss_mean) from curves group by sweep" """
    import polars.exceptions as ple

    r = _open(job, storage, set_, replicates)
    try:
        df = r.query(sql, partial)
    except (ple.SQLInterfaceError, ple.SQLSyntaxError, ple.ColumnNotFoundError, ple.InvalidOperationError) as exc:
        raise SpecError(f"query failed: {exc}. Tables are points, curves, barriers, checkpoints; "
                        f"`raysweep results {job} --table NAME` shows their columns.") from None
    emit(df, format, out, columns="all")


@app.command()
@_guard
def plot(job: str, out: Optional[str] = typer.Option(None, "--out", help="Local HTML file [default: in the store]"),
         png: bool = typer.Option(False, "--png", help="Also write a PNG of all charts"),
         svg: bool = typer.Option(False, "--svg", help="Also write an SVG of all charts"),
         log_height: bool = LogHeightOpt, replicates: Optional[int] = ReplicatesOpt,
         set_: Optional[List[str]] = SetOpt, storage: Optional[str] = StorageOpt, partial: bool = PartialOpt) -> None:
    """Write the HTML report (a job, or a stored run by id).
    Example: raysweep plot digits_mlp --out report.html --png"""
    r = _open(job, storage, set_, replicates)
    r.tables.check_complete(partial=partial)
    for path in r.plot(out, [f for f, on in (("png", png), ("svg", svg)) if on], log_height):
        typer.echo(path)


@app.command()
@_guard
def figures(job: str, out: str = typer.Option("figures", "--out", help="Folder for the figure files"),
            format_: str = typer.Option("png,svg", "--format", help="Comma-separated: png, svg, pdf"),
            log_height: bool = LogHeightOpt, replicates: Optional[int] = ReplicatesOpt,
            set_: Optional[List[str]] = SetOpt, storage: Optional[str] = StorageOpt,
            partial: bool = PartialOpt) -> None:
    """One file per paper figure (with a caption .txt).
    Example: raysweep figures digits_mlp --out figs --format png,pdf"""
    from raysweep.report.figures import FORMATS, write_figures

    formats = [f.strip().lower() for f in format_.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        _err(f"--format {format_!r}: {bad or 'nothing'} is not a figure format; give a comma-separated list of "
             f"{', '.join(FORMATS)}, e.g. --format png,svg", 2)
    r = _open(job, storage, set_, replicates)
    r.tables.check_complete(partial=partial)
    for path in write_figures(r.job, r.tables, out, formats, log_height):
        typer.echo(path)


import raysweep.cli_interpolate  # noqa: E402,F401  (registers `raysweep interpolate`)
import raysweep.cli_slurm  # noqa: E402,F401  (registers `raysweep slurm`)
from raysweep.cli_data import data_app  # noqa: E402  (the `raysweep data ...` commands)
from raysweep.cli_toys import toy  # noqa: E402  (the `raysweep toy ...` commands)

app.add_typer(toy, name="toy")
app.add_typer(data_app, name="data")


def main() -> None:
    """The `raysweep` command (its console script, and `python -m raysweep`)."""
    signals.mark_command()
    app(prog_name="raysweep")


if __name__ == "__main__":  # python -m raysweep.cli: every import above has run
    main()
