"""A full disk (or quota) mid-run, on a small filesystem of the test's own (tmpfs, as root): one line naming the
storage, what was being written and the fix, exit 1, no traceback — in training and in the sweep; after space
is freed, the same command resumes and ends with the tables of an undisturbed run."""
import os
import subprocess
import sys

import pytest
from conftest import TINY, write_job_toml

from raysweep.api import Run
from raysweep.io.store import Store
from raysweep.spec import parse_job


@pytest.fixture
def small_fs(tmp_path):
    """mount(size) mounts a tmpfs of that many KiB at tmp_path/fs (again, to resize it); unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem of the test's own needs root")
    where = tmp_path / "fs"
    where.mkdir()
    mounted = []

    def mount(kib: int):
        opts = f"size={kib}k" + (",remount" if mounted else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(kib)
        return where
    yield mount
    if mounted:
        subprocess.run(["umount", str(where)], check=False)


def run(job_file, storage) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raysweep", "run", job_file, "--storage", str(storage),
                           "--no-progress", "--no-report"], capture_output=True, text=True, timeout=600)


def used_kib(path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) // 1024


def test_a_full_disk_is_one_line_then_the_same_command_resumes(small_fs, tmp_path):
    job_file = write_job_toml(tmp_path / "tiny.toml", TINY)
    ref = run(job_file, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    job = parse_job(TINY)
    total = used_kib(tmp_path / "ref")
    trained = used_kib(tmp_path / "ref" / job.name / job.hash / "replicate_0") * job.replicates
    # in training (Tune's state, a checkpoint), then in the sweep (a prepared point or a points file)
    for kib, writing in ((32, "while writing"), (trained + (total - trained) // 2, f"{job.hash}/")):
        where = small_fs(kib)
        r = run(job_file, where / "s")
        text = r.stdout + r.stderr
        errors = [ln for ln in text.splitlines() if ln.startswith("error:")]
        assert r.returncode == 1 and len(errors) == 1, text[-3000:]
        assert f"no space left in the storage {where / 's'}" in errors[0] and writing in errors[0]
        assert "--storage" in errors[0] and "Traceback" not in text
    small_fs(64 * 1024)  # space freed: the same command goes on from what is stored
    r = run(job_file, where / "s")
    assert r.returncode == 0, r.stderr[-2000:]
    got, want = Run(job, Store(str(where / "s"))), Run(job, Store(str(tmp_path / "ref")))
    assert got.table("checkpoints")["sha256"].to_list() == want.table("checkpoints")["sha256"].to_list()
    assert got.table("curves").equals(want.table("curves"))
