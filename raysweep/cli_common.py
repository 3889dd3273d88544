"""What every `raysweep` command shares: the Typer app, the common options, opening a run, and the
guard that turns every error into one paragraph and an exit code."""
from __future__ import annotations

import errno
import os
import sys
from enum import Enum

import typer

from raysweep import signals
from raysweep.connect import joins_cluster, shutdown_ray
from raysweep.errors import (
    CheckpointError,
    DamagedPoints,
    DatasetMissing,
    ManifestError,
    NotTrainedError,
    SpecError,
    StorageFull,
    StoreError,
    SweepFailed,
    TrainingFailed,
)
from raysweep.progress import console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Loss-landscape interpolation sweeps on Ray: train replicates, interpolate, aggregate, plot.")

SetOpt = typer.Option(None, "--set", "-s", help="Override a job field: dotted.key=value (repeatable), "
                                                "e.g. --set train.lr=0.05 --set sweeps.init_to_final.alpha.num=50")
StorageOpt = typer.Option(None, "--storage", help="Storage root: a folder or s3://bucket/prefix "
                                                  "[default: $RAYSWEEP_STORAGE or ./raysweep-results]")
ReplicatesOpt = typer.Option(None, "--replicates", "-r", help="Number of replicates (overrides the job's)")
AddressOpt = typer.Option(
    None, "--address", help="Ray cluster to join, e.g. 'auto' [default: $RAY_ADDRESS or a local Ray]"
)
SharedOpt = typer.Option(False, "--shared-storage", help="The local --storage folder is mounted on every node of "
                                                         "the cluster (NFS, FSx, EFS) [or $RAYSWEEP_SHARED_STORAGE=1]")


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"
    hdf5 = "hdf5"  # --table surface (a plane) or curves (a line): tomgoldstein/loss-landscape's layout
    vtk = "vtk"  # --table surface: an XML VTK StructuredGrid (.vts) for ParaView


def _err(msg: str, code: int) -> None:
    console.print(f"[bold red]error:[/] {msg}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


PartialOpt = typer.Option(False, "--partial", help="Show what is stored even if a sweep of these settings has no "
                                                   "points yet (named in a warning) instead of stopping")


def _open(job: str, storage, overrides, replicates=None, shared_storage: bool = False, compute: bool = False):
    """The run of JOB: a built-in job name, a TOML file, or a stored run's id (job/hash, `raysweep runs`).
    compute: the command trains or evaluates, so torch and Ray are imported here, a Ctrl-C meanwhile deferred."""
    with signals.deferred():
        if compute:
            import ray  # noqa: F401
            import torch  # noqa: F401
            import torchvision  # noqa: F401
        from raysweep.api import open_run  # Polars, pyarrow: not for `--help` or `jobs`

    return open_run(job, storage, overrides or [], replicates, shared_storage)


NETWORK_WORDS = ("connect", "curl", "timeout", "timed out", "resolve", "unreachable", "network", "endpoint",
                 "aws error", "http", "ssl", "access denied", "credentials", "forbidden", "nosuchbucket")
PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENOENT, errno.EEXIST}
PATH_WORDS = ("permission denied", "read-only file system", "not a directory", "is a directory",
              "operation not permitted", "no such file or directory")


def io_error(exc: BaseException) -> tuple[str, int]:
    """One paragraph and an exit code for an I/O error, by its cause: a path that cannot be used is
    input to fix (2); a full disk, or an object store that cannot be reached, is work that failed (1)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    code = getattr(exc, "errno", None)
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if code in (errno.ENOSPC, errno.EDQUOT) or "no space left" in low:
        return (f"no space left on the device{where}: {text}. Free some space or give another --storage; finished "
                f"work is kept.", 1)
    if code in PATH_ERRNOS or any(w in low for w in PATH_WORDS):
        return (f"a path cannot be used{where}: {text}. Check the folder given to --storage (or the file named) "
                f"and its permissions, or give another one; nothing else was changed.", 2)
    if any(w in low for w in NETWORK_WORDS):
        return (f"storage error: {text}. Check that the storage is reachable (endpoint, network, credentials) and "
                f"run the command again; finished work is kept.", 1)
    return f"I/O error: {text}. Run the command again; finished work is kept.", 1


def _quiet_stdout() -> None:
    """The reader of our output went away (`raysweep status | head -2`): say nothing more, as Unix tools do."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _interrupted() -> None:
    """Ctrl-C (or USR1): one line, then exit 128 + the signal. In the command's own process the exit skips the
    interpreter's teardown, where a second Ctrl-C or Ray's half-started core worker could end the process
    with a signal of its own instead (seen: -11 for an interrupt in Ray's start-up); Ray is stopped first and
    its reaper ends whatever the process started."""
    import signal

    signum = signals.stopped_by() or signal.SIGINT
    what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    code = 128 + signum
    if not signals.is_command():
        _err(f"{what}. Everything finished before the interrupt is stored (checkpoints, work items); "
             "run the same command again to resume from there.", code)
    signals.ignore_all()  # a second signal must not cut the clean-up short
    console.print(f"[bold red]error:[/] {what}. Everything finished before the interrupt is stored (checkpoints, "
                  f"work items); run the same command again to resume from there.", highlight=False, soft_wrap=True)
    try:
        if "ray" in sys.modules:
            shutdown_ray()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _guard(fn):
    """Every error ends in one paragraph and an exit code, never a traceback: 2 for input a user can
    fix (job, overrides, storage, data), 1 for work that failed, 130 for Ctrl-C. An unexpected error
    is a bug: its one line says so ($RAYSWEEP_DEBUG=1 shows the traceback)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        signals.install()
        try:
            out = fn(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return out
        except typer.Exit:
            raise
        except (SpecError, StoreError, DatasetMissing) as exc:
            _err(str(exc), 2)
        except (NotTrainedError, SweepFailed, TrainingFailed, ManifestError, CheckpointError, DamagedPoints) as exc:
            _err(str(exc), 1)
        except KeyboardInterrupt:
            _interrupted()
        except BrokenPipeError:
            _quiet_stdout()
            raise typer.Exit(0)
        except StorageFull as exc:
            _err(str(exc), 1)
        except Exception as exc:
            pa = sys.modules.get("pyarrow")  # loaded by whatever raised an Arrow error
            if isinstance(exc, OSError) or (pa is not None and isinstance(exc, pa.ArrowException)):
                _err(*io_error(exc))  # by cause: a path, a full disk, an unreachable store
            if os.environ.get("RAYSWEEP_DEBUG"):
                raise
            notes = " ".join(getattr(exc, "__notes__", []))  # where it happened (e.g. a rehearsal's stage)
            _err(f"unexpected {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''} "
                 f"{notes + ' ' if notes else ''}— this is a raysweep bug; set RAYSWEEP_DEBUG=1 for the traceback "
                 f"and report it.", 1)
        finally:
            if "ray" in sys.modules:
                shutdown_ray()
    return wrapper


def _fits(r, address: str | None) -> None:
    """Refuse, before any work, a plan whose sweep actors cannot hold what they must — checked against this
    machine when the work runs here, or against resources.actor_memory_gb when that is given."""
    from raysweep.report.cost import plan_misfit  # torch

    if r.job.resources.actor_memory_gb or not joins_cluster(address):
        problem = plan_misfit(r.job, r.store)
        if problem:
            raise SpecError(problem)
