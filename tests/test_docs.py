"""README.md and docs/*.md stay true: every `raysweep ...` command in their shell blocks names a command that
exists and only options it takes (with a value where it takes one), every job it names is built in or a file
the docs make, every link to a page or file in the repository resolves, and the README stays the front door
(at most 250 lines)."""
import re
import shlex
from pathlib import Path

import pytest
import typer.main

from raysweep.cli import app
from raysweep.jobs import builtin_jobs

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(page: Path) -> list[str]:
    """Every `raysweep ...` command line of the page's shell blocks (continuation lines joined)."""
    out, block = [], re.findall(r"```(?:bash|sh)\n(.*?)```", page.read_text(), re.S)
    for text in block:
        joined = re.sub(r" *\\\n\s*", " ", text)
        for line in joined.splitlines():
            line = line.split(" # ")[0].strip()
            for part in re.split(r"\s&&\s|;\s", line):
                part = part.strip()
                part = part[part.index("-- raysweep ") + 3:] if "-- raysweep " in part else part  # `ray job submit --`
                if part.startswith("raysweep "):
                    out.append(part)
    return out


ALL = [(p.relative_to(ROOT).as_posix(), c) for p in PAGES for c in _commands(p)]
CLI = typer.main.get_command(app)


def _resolve(argv: list[str]):
    cmd, rest = CLI, argv
    while hasattr(cmd, "commands") and rest and rest[0] in cmd.commands:  # a group (typer's own click)
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    return cmd, rest


def test_the_pages_show_commands():
    assert len(ALL) > 50 and {p for p, _ in ALL} >= {"README.md", "docs/commands.md", "docs/clusters.md"}


@pytest.mark.parametrize("page, line", ALL)
def test_every_documented_command_exists_with_the_options_it_takes(page, line):
    argv = shlex.split(line)[1:]
    cmd, rest = _resolve(argv)
    assert not hasattr(cmd, "commands"), f"{page}: `{line}` names no command"
    options = {o: p for p in cmd.params if p.param_type_name == "option" for o in [*p.opts, *p.secondary_opts]}
    i = 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("-") and word != "-":
            name = word.split("=", 1)[0]
            assert name in options or name == "--help", f"{page}: `{line}`: {cmd.name} takes no {name}"
            param = options.get(name)
            if param is not None and not param.is_flag and "=" not in word:
                i += 1  # its value
                assert i < len(rest), f"{page}: `{line}`: {name} needs a value"
        i += 1
    if cmd.name in ("run", "show", "train", "sweep", "status", "results", "plot", "figures", "query", "export",
                    "slurm") and rest and not rest[0].startswith("-"):
        job = rest[0]
        assert (job in builtin_jobs() or job.endswith(".toml") or "/" in job or job in ("JOB",)), \
            f"{page}: `{line}` names job {job!r}, which is not built in"


def test_links_between_pages_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}, which is not there"


def test_the_readme_is_the_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for heading in ("## Quick start", "## Tests", "## Where to go next"):
        assert heading in text
    # CI runs the README's test install line and test command, exactly
    line = "pip install -c constraints.txt -e '.[dev]' --config-settings editable_mode=strict"
    assert "scripts/test --quick" in text and line in text and "pip install -c constraints.txt .  " in text
    install = (ROOT / ".ci" / "run").read_text()
    assert line.replace("pip install", "pip install -q") in install and "\nscripts/test\n" in install
