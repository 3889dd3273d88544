"""How raysweep is installed and tested, as a user meets it: a script saved beside the clone still imports the
installed package (not the clone's folder as a namespace), and scripts/test runs in the active virtual
environment when there is no .venv."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_a_folder_named_raysweep_beside_a_script_does_not_hide_the_package(tmp_path):
    (tmp_path / "raysweep").mkdir()  # a clone's folder, seen from its parent: a namespace package
    (tmp_path / "snippet.py").write_text("import raysweep\nprint(raysweep.open.__module__)\n")
    r = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "raysweep.api", r.stderr  # the editable install, `strict`


def test_scripts_test_runs_in_the_active_virtual_environment(tmp_path):
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "scripts", clone / "scripts")
    venv = Path(sys.executable).parent.parent  # the environment these tests run in, as if activated
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    (clone / "tests").mkdir()
    (clone / "tests" / "test_nothing.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    r = subprocess.run(["bash", str(clone / "scripts" / "test"), "tests/test_nothing.py", "-p", "no:cacheprovider"],
                       cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(["bash", str(clone / "scripts" / "test")], cwd=clone,
                       env={k: v for k, v in env.items() if k != "VIRTUAL_ENV"}, capture_output=True, text=True)
    assert r.returncode == 2 and "no .venv here and no active virtual environment" in r.stderr
