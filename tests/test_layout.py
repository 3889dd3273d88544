"""The house rules, checked: no import circle (counting imports inside functions), the spec as the
base layer, imports inside functions only where they keep torch, Ray or another heavy library out
of a light module, modules of at most ~300 lines, every storage key spelled in io/paths.py, and
the sweep kinds' registry in step with the job language."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "raysweep"
# what an import inside a function may keep out of a module: libraries that cost a command's start-up
HEAVY = {"torch", "torchvision", "ray", "altair", "vl_convert", "sklearn", "scipy", "boto3", "safetensors", "polars",
         "pyarrow"}
MAX_LINES = 400  # a hint, not a wall: see test_long_modules_are_named_not_refused


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name


def _imports(path: Path):
    """(target, top_level) of every import at run time (not under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for b in node.body for n in ast.walk(b)}
    top: set[int] = set()  # run when the module is imported: its body, and the blocks of its try and with

    def run_on_import(block: list) -> None:
        for n in block:
            top.add(id(n))
            if isinstance(n, ast.Try):
                for inner in (n.body, n.orelse, n.finalbody, *(h.body for h in n.handlers)):
                    run_on_import(inner)
            elif isinstance(n, ast.With):
                run_on_import(n.body)

    run_on_import(tree.body)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                     for a in node.names]
        else:
            continue
        for name in names:
            yield name, id(node) in top


# The one edge that is no layer's: the kinds' registry (work/kinds.py) loads the built-in kind modules on its first
# lookup, as open_lth's registries import their models; the kinds themselves stand on the vocabulary below them.
REGISTRY_LOADS = ("raysweep.work.kinds", "raysweep.kinds")
GRAPH = {m: {(_resolve(t) if t.startswith("raysweep") else t.split(".")[0], top) for t, top in _imports(p)
             if (m, t) != REGISTRY_LOADS}
         for m, p in MODULES.items()}


def _heavy(module: str, seen=None) -> set[str]:
    """The heavy libraries importing `module` loads (through its top-level imports and those of the packages
    above it, whose __init__ runs first)."""
    seen = set() if seen is None else seen
    if module in seen:
        return set()
    seen.add(module)
    out = set()
    parent = module.rsplit(".", 1)[0]
    if parent != module and parent in MODULES:
        out |= _heavy(parent, seen)
    for target, top in GRAPH[module]:
        if not top:
            continue
        if target in MODULES:
            out |= _heavy(target, seen)
        elif target in HEAVY:
            out.add(target)
    return out


def test_no_import_circle_counting_imports_inside_functions():
    edges = {m: {t for t, _ in GRAPH[m] if t in MODULES and t != m} for m in MODULES}
    index, low, stack, on, circles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    assert circles == []


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_import_circle_between_packages():
    """The packages are layers too (raysweep/__init__.py states their order): no two import each other, even
    through modules that do not (data/ and cluster/ once did; train/ and validate)."""
    edges: dict[str, set[str]] = {}
    for m in MODULES:
        for t, _ in GRAPH[m]:
            if t in MODULES and _package(t) != _package(m):
                edges.setdefault(_package(m), set()).add(_package(t))

    def reaches(a: str, b: str, seen=frozenset()) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in edges.get(a, ()))
    circles = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if reaches(b, a)})
    assert circles == []


def test_the_spec_imports_nothing_above_it():
    for m in MODULES:
        if m.startswith("raysweep.spec"):
            above = {t for t, _ in GRAPH[m] if t.startswith("raysweep") and not t.startswith("raysweep.spec")
                     and t != "raysweep.errors"}
            assert not above, f"{m} imports {above}"
    assert {t for t, _ in GRAPH["raysweep.errors"] if t.startswith("raysweep")} == set()


ORCHESTRATION = ("raysweep.sweep", "raysweep.run", "raysweep.api", "raysweep.cli")


def _imports_of(package: str) -> dict[str, set[str]]:
    """module -> the raysweep modules it imports (at the top or inside functions), for a package's modules."""
    return {m: {t for t, _ in GRAPH[m] if t.startswith("raysweep") and t != m} for m in MODULES
            if m == package or m.startswith(package + ".")}


@pytest.mark.parametrize("package", ["raysweep.evaluate", "raysweep.analysis", "raysweep.train", "raysweep.data",
                                     "raysweep.io", "raysweep.work", "raysweep.report", "raysweep.cluster",
                                     "raysweep.kinds"])
def test_the_engine_never_imports_the_orchestration(package):
    """Planning and executing items (sweep/), the run's flow (run/), the API and the CLI sit above; what
    evaluates, trains, reads or draws is called by them with plain values and never calls back up."""
    wrong = [f"{m} -> {t}" for m, targets in _imports_of(package).items() for t in targets
             if t.startswith(ORCHESTRATION)]
    assert wrong == []


def test_the_work_vocabulary_stands_on_the_spec_and_io_only():
    """Work items, sweep kinds, stored refs and training tasks: the words every layer shares (the models only
    for a forward pass's FLOPs, which set how many α an item takes, and so its key)."""
    allowed = ("raysweep.work", "raysweep.spec", "raysweep.io", "raysweep.errors", "raysweep.models")
    wrong = [f"{m} -> {t}" for m, targets in _imports_of("raysweep.work").items() for t in targets
             if not t.startswith(allowed)]
    assert wrong == []


def test_imports_inside_functions_only_keep_heavy_libraries_out():
    """A raysweep import inside a function must defer a heavy library its module does not load already."""
    wrong = []
    for m in MODULES:
        mine = _heavy(m)
        for target, top in GRAPH[m]:
            if not top and target in MODULES and target != m and not (_heavy(target) - mine):
                wrong.append(f"{m} -> {target}")
    assert wrong == []


def test_reading_results_loads_neither_torch_nor_ray():
    code = ("import sys, raysweep.api, raysweep.analysis.aggregate, raysweep.run.tables, raysweep.cli_common; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray', 'torchvision'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["jobs"], ["slurm", "--help"], ["run", "--help"]])
def test_commands_that_compute_nothing_start_without_heavy_libraries(argv):
    """`raysweep --help` and `raysweep jobs` start in a fraction of a second: neither torch, Ray, Polars nor
    pyarrow is imported (each costs 0.1-1 s; measured with `python -X importtime -m raysweep --help`)."""
    code = ("import sys\nfrom raysweep.cli import app\ntry:\n    app(%r, prog_name='raysweep')\nexcept SystemExit:\n"
            "    pass\nprint(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray', 'polars', 'pyarrow'}))"
            % argv)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_long_modules_are_named_not_refused():
    """Length is a hint, never a wall (a module holds one idea; code is never moved to meet a count): modules past
    MAX_LINES are printed for a reader to look at, and the test fails only on one past ten times that."""
    long = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    for m, n in sorted(long.items()):
        if n > MAX_LINES:
            print(f"note: {m} has {n} lines (a hint to look at whether it holds one idea)")
    assert max(long.values()) < 10 * MAX_LINES


def test_every_storage_key_is_spelled_in_io_paths():
    """No module but io/paths.py writes a key literal ending in .json, .safetensors or .parquet."""
    found = []
    for p in PACKAGE.rglob("*.py"):
        if p == PACKAGE / "io" / "paths.py":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and " " not in node.value
                    and node.value.endswith((".json", ".safetensors", ".parquet"))):
                found.append(f"{p.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
    assert found == []


def test_the_kinds_registry_has_one_record_per_kind_of_the_job_language():
    """Every built-in kind of the job language is registered by its own module (raysweep/kinds/) with real
    callables, in the family the spec names it under; a failed lookup names every kind."""
    from raysweep.io.schemas import FOLDER_SCHEMAS
    from raysweep.spec import CURVE_KINDS, LINE_KINDS, MERGE_KINDS, PLANE_KINDS, SWEEP_KINDS, TRAJECTORY_KINDS
    from raysweep.work.kinds import all_kinds, kind

    builtin = {n: k for n, k in all_kinds().items() if k.module.startswith("raysweep.kinds")}
    assert set(builtin) == set(SWEEP_KINDS)
    families = {**dict.fromkeys(LINE_KINDS, "line"), **dict.fromkeys(TRAJECTORY_KINDS, "trajectory"),
                **dict.fromkeys(PLANE_KINDS, "plane"), **dict.fromkeys(MERGE_KINDS, "merge"),
                **dict.fromkeys(CURVE_KINDS, "curve")}
    for name, record in builtin.items():
        assert record.family == families[name] and record.folder in FOLDER_SCHEMAS
        assert record.schema == FOLDER_SCHEMAS[record.folder], name
        assert all(callable(f) for f in (record.plan, record.evaluate, record.figures, record.count)), name
    with pytest.raises(Exception, match="init_to_final"):
        kind("nope")


def test_every_package_docstring_names_its_modules():
    """A newcomer opens a package's __init__ and finds every room in it."""
    import re

    missing = []
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        rooms = [p.stem for p in init.parent.glob("*.py") if p.stem != "__init__"]
        rooms += [p.name for p in init.parent.iterdir() if (p / "__init__.py").exists()]
        missing += [f"{init.parent.name}: {m}" for m in rooms if not re.search(rf"\b{m}\b", doc)]
    assert missing == []
    assert all((p / "__init__.py").exists() for p in PACKAGE.iterdir() if p.is_dir() and list(p.glob("*.py")))
