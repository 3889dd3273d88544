"""`raysweep slurm`: the run command as a Slurm batch job (Ray started on the allocation's nodes, the
run on the head, USR1 before the time limit -> stop -> requeue -> resume). See cluster/slurm.py."""
from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional

import typer

from raysweep.cli_common import ReplicatesOpt, SetOpt, SharedOpt, StorageOpt, _guard, _open, app
from raysweep.cluster.slurm import SlurmRequest, refusal
from raysweep.cluster.slurm_script import render
from raysweep.errors import SpecError, StoreError
from raysweep.io import paths


@app.command()
@_guard
def slurm(job: str, replicates: Optional[int] = ReplicatesOpt, set_: Optional[List[str]] = SetOpt,
          storage: Optional[str] = StorageOpt, shared_storage: bool = SharedOpt,
          report: bool = typer.Option(True, help="Write report.html at the end of the run"),
          nodes: int = typer.Option(1, "--nodes", "-N", help="Slurm nodes; one Ray node on each"),
          gpus_per_node: int = typer.Option(0, "--gpus-per-node", help="GPUs on each node"),
          gres: bool = typer.Option(False, "--gres", help="Ask for the GPUs as --gres=gpu:G (sites without "
                                                          "--gpus-per-node)"),
          cpus_per_node: Optional[int] = typer.Option(None, "--cpus-per-node", help="CPUs on each node "
                                                      "(--cpus-per-task) [default: the site's]"),
          mem: Optional[str] = typer.Option(None, "--mem", help="Memory per node, e.g. 200G (0: all of it)"),
          time: Optional[str] = typer.Option(None, "--time", help="Time limit, e.g. 1-00:00:00 (a requeue "
                                                                  "continues past it)"),
          partition: Optional[str] = typer.Option(None, "--partition", "-p"),
          account: Optional[str] = typer.Option(None, "--account", "-A"),
          qos: Optional[str] = typer.Option(None, "--qos"),
          sbatch_arg: Optional[List[str]] = typer.Option(None, "--sbatch-arg", help="Any other sbatch option, "
                                                         "repeatable, e.g. --sbatch-arg=--constraint=a100"),
          max_requeues: int = typer.Option(3, "--max-requeues", help="Times the job requeues itself on USR1"),
          signal_lead: int = typer.Option(300, "--signal-lead", help="Seconds before the time limit that USR1 "
                                                                     "stops the run"),
          shared_nodes: bool = typer.Option(False, "--shared-nodes", help="Let other jobs share the nodes "
                                                                          "(no --exclusive)"),
          setup: Optional[List[str]] = typer.Option(None, "--setup", help="A shell line run first on each start, "
                                                    "repeatable, e.g. --setup 'module load cuda/12.4'"),
          ip_interface: Optional[str] = typer.Option(None, "--ip-interface", help="The network interface the "
                                                     "nodes share (e.g. ib0) [default: the host name's address]"),
          ready_timeout: int = typer.Option(600, "--ready-timeout", help="Seconds for every node's Ray to join"),
          python: Optional[str] = typer.Option(None, "--python", help="The Python with raysweep on the nodes "
                                                                      "[default: this one]"),
          dry_run: bool = typer.Option(False, "--dry-run", help="Print the script; write and submit nothing"),
          rehearse: bool = typer.Option(False, "--rehearse", help="Submit `raysweep run --rehearse` (the plan with "
                                        "a stand-in model: minutes)")) -> None:
    """Run a job as a Slurm batch job: Ray on the allocation's nodes, the run on the first.
    Example: raysweep slurm imagenet_resnet50 --nodes 4 --gpus-per-node 8 --time 2-00:00:00 --storage /shared/runs
    --shared-storage"""
    r = _open(job, storage, set_, replicates, shared_storage)
    request = SlurmRequest(
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        gres=gres,
        cpus_per_node=cpus_per_node,
        mem=mem,
        time=time,
        partition=partition,
        account=account,
        qos=qos,
        sbatch_args=tuple(sbatch_arg or ()),
        max_requeues=max_requeues,
        signal_lead=signal_lead,
        shared_nodes=shared_nodes,
        setup=tuple(setup or ()),
        ip_interface=ip_interface,
        ready_timeout=ready_timeout,
        job_name=f"raysweep-{r.job.name}",
    )
    request.check()
    _check_storage(r, nodes, contact=not dry_run)
    if r.job.resources.accelerator == "gpu" and not gpus_per_node:
        raise SpecError(f"{r.job.name} runs on GPUs (resources.accelerator = \"gpu\") but no GPUs were asked for: "
                        f"add --gpus-per-node G (or --set resources.accelerator=auto to let it run on CPUs).")
    run_argv = ["run", str(Path(job).resolve()) if Path(job).is_file() else job, "--storage", r.store.address]
    run_argv += [f"--replicates={replicates}"] if replicates is not None else []
    run_argv += [a for s in set_ or [] for a in ("--set", s)]
    run_argv += (["--shared-storage"] if r.shared_storage else []) + ([] if report else ["--no-report"])
    run_argv += ["--rehearse"] if rehearse else []
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = (Path(r.store.full(paths.slurm_dir(r.dir))) if r.store.is_local
              else Path.cwd() / "raysweep-slurm" / f"{r.job.name}-{r.job.hash}")
    script = folder / Path(paths.slurm_script("", stamp)).name
    text = render(request, run_argv, python=python or sys.executable, logs=str(folder), script=str(script),
                  run_id=f"{r.job.name}/{r.job.hash}")
    if dry_run:
        typer.echo(text, nl=False)
        typer.echo(f"# (dry run: nothing written or submitted, and the store {r.store.uri} was not contacted — "
                   f"without --dry-run it is checked first; the script goes to {script} and `sbatch {script}`)",
                   err=True)
        return
    job_id = _submit(request, text, script)
    if not r.store.is_local:  # the script beside the run it made, for the record
        r.store.write_bytes(paths.slurm_script(r.dir, stamp), text.encode())
    log = folder / f"slurm-{job_id}.out"
    typer.echo(f"submitted Slurm job {job_id}: {r.job.name}/{r.job.hash} on {nodes} node(s) × {gpus_per_node} GPU(s)")
    typer.echo(f"  script  {script}")
    typer.echo(f"  log     {log}  (each node's Ray: {folder}/ray-{job_id}-<node>.log)")
    typer.echo(f"  follow  tail -f {log}   ·   squeue -j {job_id}   ·   stop: scancel {job_id}")


def _check_storage(r, nodes: int, contact: bool = True) -> None:
    """Refused before anything is submitted: a folder on one machine's disk for several nodes; and (`contact`)
    a store that cannot be reached from here. A dry run contacts nothing (a laptop may not reach the bucket)."""
    if r.store.is_local and nodes > 1 and not r.shared_storage:
        raise StoreError(f"storage {r.store.uri} is a local folder, but the job runs on {nodes} nodes: each would "
                         f"write checkpoints and points to its own disk. Give an object store every node reaches "
                         f"(--storage s3://BUCKET/PREFIX) or, if {r.store.uri} is a filesystem mounted on every node "
                         f"(NFS, Lustre, GPFS), say so with --shared-storage; nothing was submitted.")
    if contact:
        r.store.check()


SLURM_TIMEOUT = 60  # seconds for one sbatch call: a controller that does not answer must not hang raysweep


def _slurm(argv: list[str], input: str | None = None) -> subprocess.CompletedProcess:
    """A Slurm command with a deadline; one that does not answer is named with the fix."""
    try:
        return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=SLURM_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise SpecError(f"`{' '.join(argv[:2])}` did not answer within {SLURM_TIMEOUT} s: the Slurm controller is "
                        f"down or overloaded (`scontrol ping` tells). Nothing was submitted; try again "
                        f"later.") from None


def _submit(request: SlurmRequest, text: str, script: Path) -> str:
    """Asked first with --test-only (Slurm checks the request, nothing is queued or written), then the
    script is written and submitted; on a refusal what was written is removed."""
    if shutil.which("sbatch") is None:
        raise SpecError("sbatch is not on PATH: run `raysweep slurm` on a Slurm login node (or add --dry-run to "
                        "print the script).")
    test = _slurm(["sbatch", "--test-only"], input=text)
    if test.returncode != 0:
        raise SpecError(refusal(test.stderr or test.stdout, request))
    created = not script.parent.exists()
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(text)
    script.chmod(0o700)
    done = _slurm(["sbatch", "--parsable", str(script)])
    job_id = done.stdout.strip().split(";")[0]
    if done.returncode != 0 or not job_id.isdigit():
        script.unlink(missing_ok=True)
        if created:
            shutil.rmtree(script.parent, ignore_errors=True)
        raise SpecError(refusal(done.stderr or done.stdout, request))
    return job_id
