"""The ``raysweep`` command: each command parses, resolves the job, and calls one API function.

    raysweep run digits_mlp                      # train -> sweep -> aggregate -> report
    raysweep results digits_mlp --table barriers --sweep step_to_final
    raysweep query digits_mlp "select step, max_increase_mean from barriers where metric = 'loss'"
"""
from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from raysweep.spec import SpecError
from raysweep.io.store import StoreError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Loss-landscape interpolation sweeps on Ray: train replicates, interpolate, aggregate, plot.")

SetOpt = typer.Option(None, "--set", "-s", help="Override a job field: dotted.key=value (repeatable), "
                                                "e.g. --set train.lr=0.05 --set sweeps.init_to_final.alpha.num=50")
StorageOpt = typer.Option(None, "--storage", help="Storage root: a folder or s3://bucket/prefix "
                                                  "[default: $RAYSWEEP_STORAGE or ./raysweep-results]")
ReplicatesOpt = typer.Option(None, "--replicates", "-r", help="Number of replicates (overrides the job's)")
AddressOpt = typer.Option(None, "--address", help="Ray cluster to join, e.g. 'auto' [default: $RAY_ADDRESS or a local Ray]")
SharedOpt = typer.Option(False, "--shared-storage", help="The local --storage folder is mounted on every node of "
                                                         "the cluster (NFS, FSx, EFS) [or $RAYSWEEP_SHARED_STORAGE=1]")


def _tables() -> type[Enum]:
    from raysweep.io.paths import TABLES

    return Enum("Table", {name: name for name in TABLES}, type=str)


Table = _tables()


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def _err(msg: str, code: int) -> None:
    from raysweep.progress import console

    console.print(f"[bold red]error:[/] {msg}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _open(job: str, storage, overrides, replicates=None, shared_storage: bool = False):
    from raysweep.api import open as open_run

    return open_run(job, storage, overrides or [], replicates, shared_storage)


def _guard(fn):
    """Every error ends in one paragraph and an exit code, never a traceback: 2 for input a user can
    fix (job, overrides, storage, data), 1 for work that failed, 130 for Ctrl-C. An unexpected error
    is a bug: its one line says so ($RAYSWEEP_DEBUG=1 shows the traceback)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import os

        import pyarrow as pa

        from raysweep.api import SweepFailed, TrainingFailed
        from raysweep.io.checkpoints import CheckpointError
        from raysweep.data import DatasetMissing
        from raysweep.sweep import ManifestError, NotTrainedError

        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (SpecError, StoreError, DatasetMissing) as exc:
            _err(str(exc), 2)
        except (NotTrainedError, SweepFailed, TrainingFailed, ManifestError, CheckpointError) as exc:
            _err(str(exc), 1)
        except KeyboardInterrupt:
            _err("interrupted. Everything finished before the interrupt is stored (checkpoints, work items); "
                 "run the same command again to resume from there.", 130)
        except (OSError, pa.ArrowException) as exc:  # the store went away mid-command
            _err(f"storage error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}. "
                 f"Check that the storage is reachable (endpoint, network, credentials) and run the command again; "
                 f"finished work is kept.", 1)
        except Exception as exc:
            if os.environ.get("RAYSWEEP_DEBUG"):
                raise
            _err(f"unexpected {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''} "
                 f"— this is a raysweep bug; set RAYSWEEP_DEBUG=1 for the traceback and report it.", 1)
        finally:
            from raysweep.cluster import shutdown_ray

            if "ray" in sys.modules:
                shutdown_ray()
    return wrapper


@app.command()
def jobs() -> None:
    """List the built-in jobs.  Example: raysweep jobs"""
    from raysweep.jobs import builtin_jobs, read_toml

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
    typer.echo(f"(`raysweep results JOB --storage {store.url('')} --set ...` with the run's overrides reads one)")


@app.command()
@_guard
def show(job: str, set_: Optional[List[str]] = SetOpt, replicates: Optional[int] = ReplicatesOpt,
         storage: Optional[str] = StorageOpt) -> None:
    """Print the resolved spec and the plan.  Example: raysweep show digits_mlp --set train.epochs=5"""
    from raysweep.report.cost import describe

    run = _open(job, storage, set_, replicates)
    typer.echo(describe(run))


@app.command()
@_guard
def run(job: str, replicates: Optional[int] = ReplicatesOpt, set_: Optional[List[str]] = SetOpt,
        storage: Optional[str] = StorageOpt, address: Optional[str] = AddressOpt,
        report: bool = typer.Option(True, help="Write report.html at the end"),
        progress: bool = typer.Option(True, help="Show progress (bars on a terminal, plain lines in logs)"),
        shared_storage: bool = SharedOpt) -> None:
    """Train, sweep, aggregate and plot.  Example: raysweep run digits_mlp --replicates 3"""
    r = _open(job, storage, set_, replicates, shared_storage)
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
    """Train the replicates only.  Example: raysweep train digits_mlp --replicate 1 --force"""
    r = _open(job, storage, set_, replicates, shared_storage)
    done = r.train(replicates=replicate, force=force, address=address)
    typer.echo(f"trained replicates {done}" if done else "all requested replicates are already trained")


@app.command()
@_guard
def sweep(job: str, sweep_: Optional[List[str]] = typer.Option(None, "--sweep", help="Only these sweeps"),
          replicates: Optional[int] = ReplicatesOpt, set_: Optional[List[str]] = SetOpt,
          storage: Optional[str] = StorageOpt, address: Optional[str] = AddressOpt,
          shared_storage: bool = SharedOpt) -> None:
    """Run the sweeps of trained replicates and aggregate.  Example: raysweep sweep digits_mlp --sweep init_to_final"""
    from raysweep.api import SweepFailed, failure_message

    r = _open(job, storage, set_, replicates, shared_storage)
    for name in sweep_ or []:
        r.job.sweep(name)
    summary = r.sweep(sweeps=sweep_, address=address)
    r.aggregate()
    typer.echo(f"evaluated {summary.items_run} of {summary.items_total} work items ({summary.rows_written} rows)")
    if summary.failures:
        raise SweepFailed(failure_message(r, summary.failures))


def _pairs(items: Optional[List[str]], flag: str) -> dict:
    from raysweep.spec import parse_value

    out = {}
    for item in items or []:
        if "=" not in item:
            raise SpecError(f"{flag} {item!r} has no '='; write it as name=value, e.g. {flag} width=32")
        key, text = item.split("=", 1)
        out[key.strip()] = parse_value(text.strip())
    return out


@app.command()
@_guard
def interpolate(checkpoints: List[str] = typer.Argument(..., help="Two or more checkpoint files or s3:// URIs "
                                                               "(.safetensors or torch.save state dicts): θ_a, θ_b, ..."),
                model: str = typer.Option(..., "--model", help="Built-in model name or your builder, pkg.module:build"),
                data: str = typer.Option(..., "--data", help="Built-in dataset name or your loader, pkg.module:load"),
                model_arg: Optional[List[str]] = typer.Option(None, "--model-arg", help="Builder keyword: name=value"),
                data_arg: Optional[List[str]] = typer.Option(None, "--data-arg", help="Loader keyword: name=value"),
                alpha: str = typer.Option("0:1:51", "--alpha", help="START:STOP:NUM of the α grid"),
                split: Optional[List[str]] = typer.Option(None, "--split", help="test (default) and/or train"),
                bn: str = typer.Option("interpolate", "--bn", help="interpolate or reset (BN statistics)"),
                set_: Optional[List[str]] = SetOpt, storage: Optional[str] = StorageOpt,
                address: Optional[str] = AddressOpt, report: bool = typer.Option(True, help="Write report.html"),
                progress: bool = typer.Option(True, help="Show progress")) -> None:
    """Sweep the line between checkpoints trained elsewhere, no training: θ(α) from the first file to the
    last.  Example: raysweep interpolate --model mypkg.nets:build
    --data mypkg.data:load a.pt b.pt --alpha -0.5:1.5:81"""
    from raysweep.api import Run
    from raysweep.spec import apply_overrides, parse_job

    try:
        start, stop, num = alpha.split(":")
        grid = {"start": float(start), "stop": float(stop), "num": int(num)}
    except ValueError:
        raise SpecError(f"--alpha {alpha!r} is not START:STOP:NUM, e.g. 0:1:51 or -0.5:1.5:81") from None
    if len(checkpoints) < 2:
        raise SpecError("interpolate needs at least two checkpoints: θ_a and θ_b")
    raw = {"name": "interpolate", "replicates": 1, "external": [list(checkpoints)],
           "model": {"name": model, **({"kwargs": _pairs(model_arg, "--model-arg")} if model_arg else {})},
           "data": {"name": data, **({"kwargs": _pairs(data_arg, "--data-arg")} if data_arg else {})},
           "sweeps": [{"name": "line", "kind": "init_to_final", "alpha": grid, "splits": split or ["test"], "bn": bn}]}
    run = Run(parse_job(apply_overrides(raw, set_ or []), "raysweep interpolate"), _store(storage))
    summary = run.run(progress=progress, address=address, report=report)
    b = run.barriers.filter(__import__("polars").col("sweep") == "line").collect()
    for row in b.iter_rows(named=True):
        typer.echo(f"{row['split']} {row['metric']}: barrier (max above the endpoints' line) "
                   f"{row['barrier_linear_mean']:.4g}, max increase {row['max_increase_mean']:.4g}")
    for name, where in summary.outputs.items():
        typer.echo(f"  {name:8s} {where}")


def _store(storage):
    from raysweep.io.store import Store

    return Store(storage)


@app.command()
@_guard
def status(job: str, replicates: Optional[int] = ReplicatesOpt, set_: Optional[List[str]] = SetOpt,
           storage: Optional[str] = StorageOpt) -> None:
    """Say what is done.  Example: raysweep status digits_mlp"""
    st = _open(job, storage, set_, replicates).status()
    typer.echo(f"run: {st['run']}")
    for k, info in st["replicates"].items():
        typer.echo(f"  replicate {k}: {'trained' if info['trained'] else 'not trained'}, "
                   f"{info['checkpoints']} checkpoints")
    if st["sweeps"] is None:
        typer.echo("  sweeps: waiting for training")
        return
    for name, s in st["sweeps"].items():
        typer.echo(f"  sweep {name:18s} {s['done']}/{s['total']} work items")
    typer.echo({"current": "  report: written, current", "none": "  report: not yet",
                "stale": f"  report: stale (made before the latest results; `raysweep plot {job}` redraws it)"}[st["report"]])


def _emit(df, fmt: Format, out: Optional[Path]) -> None:
    import polars as pl

    if fmt == Format.parquet and out is None:
        raise SpecError("--format parquet writes a binary file; add --out FILE.parquet")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == Format.table:
        with pl.Config(tbl_rows=200, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=60):
            text = str(df)
        out.write_text(text + "\n") if out else typer.echo(text)
    elif fmt == Format.csv:
        out.write_text(df.write_csv()) if out else typer.echo(df.write_csv(), nl=False)
    elif fmt == Format.json:
        text = json.dumps(df.to_dicts(), indent=1, default=str)
        out.write_text(text) if out else typer.echo(text)
    else:
        df.write_parquet(out)
    if out is not None:
        typer.echo(f"wrote {df.height} rows to {out}", err=True)


@app.command()
@_guard
def results(job: str, table: Table = typer.Option(Table.curves, "--table", help="Which table"),
            sweep: Optional[str] = typer.Option(None, "--sweep", help="Only this sweep"),
            format: Format = typer.Option(Format.table, "--format", help="Output format"),
            out: Optional[Path] = typer.Option(None, "--out", help="Write to this file"),
            replicates: Optional[int] = ReplicatesOpt, set_: Optional[List[str]] = SetOpt,
            storage: Optional[str] = StorageOpt) -> None:
    """Print or export a results table.  Example: raysweep results digits_mlp --table barriers --format csv"""
    r = _open(job, storage, set_, replicates)
    _emit(r.table(table.value, sweep), format, out)


@app.command()
@_guard
def query(job: str, sql: str, format: Format = typer.Option(Format.table, "--format"),
          out: Optional[Path] = typer.Option(None, "--out"), replicates: Optional[int] = ReplicatesOpt,
          set_: Optional[List[str]] = SetOpt, storage: Optional[str] = StorageOpt) -> None:
    """Polars SQL over points, curves, barriers, checkpoints.
    Example: raysweep query digits_mlp "select sweep, max(loss_mean) from curves group by sweep" """
    import polars.exceptions as ple

    r = _open(job, storage, set_, replicates)
    try:
        df = r.query(sql)
    except (ple.SQLInterfaceError, ple.SQLSyntaxError, ple.ColumnNotFoundError, ple.InvalidOperationError) as exc:
        raise SpecError(f"query failed: {exc}. Tables are points, curves, barriers, checkpoints; "
                        f"`raysweep results {job} --table NAME` shows their columns.") from None
    _emit(df, format, out)


@app.command()
@_guard
def plot(job: str, out: Optional[str] = typer.Option(None, "--out", help="Local HTML file [default: in the store]"),
         png: bool = typer.Option(False, "--png", help="Also write a PNG of all charts"),
         svg: bool = typer.Option(False, "--svg", help="Also write an SVG of all charts"),
         replicates: Optional[int] = ReplicatesOpt, set_: Optional[List[str]] = SetOpt,
         storage: Optional[str] = StorageOpt) -> None:
    """Write the HTML report.  Example: raysweep plot digits_mlp --out report.html --png"""
    r = _open(job, storage, set_, replicates)
    for path in r.plot(out, [f for f, on in (("png", png), ("svg", svg)) if on]):
        typer.echo(path)


from raysweep.cli_toys import toy  # noqa: E402  (the `raysweep toy ...` commands)

app.add_typer(toy, name="toy")


if __name__ == "__main__":
    app()
