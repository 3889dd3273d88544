"""What every `raysweep` command shares: the Typer app, the common options, opening a run, and the
guard that turns every error into one paragraph and an exit code."""
from __future__ import annotations

import sys
from enum import Enum

import typer

from raysweep.io.store import StoreError
from raysweep.spec import SpecError

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
