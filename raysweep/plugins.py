"""Your own code, by import path: ``model.name = "mypkg.nets:build"``, ``data.name = "mypkg.data:load"``.

The contracts (built-in models and datasets are reached through the same lookup, `resolve`):

    model builder   build(in_shape: tuple[int, ...], num_classes: int, **model.kwargs) -> torch.nn.Module
                    called under the replicate's seed (torch.manual_seed), so its own init is seeded;
                    raysweep applies no init of its own to it.
    data loader     load(root: str, **data.kwargs) -> raysweep.data.Splits
                    train_x/train_y (tensors: uint8 images or float features; int64 labels, or float
                    targets for regression), test_x/test_y, num_classes, and optionally mean/std
                    (uint8 images are scaled to [0, 1] then normalised per channel), augment="cifar".

``kwargs`` are TOML tables in the job (``[model.kwargs]``). The code is validated in the driver
(import, signature), shipped to every Ray worker (runtime environment ``py_modules``: the top-level
package directory, or the single .py file), and its source is hashed into the run's hash, so
changed code is a new run.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import os
import sys
from pathlib import Path
from typing import Callable

from raysweep.errors import SpecError
from raysweep.spec.names import is_import_path


def load_object(path: str, what: str) -> Callable:
    """The callable at "module.sub:attr"; a SpecError naming the problem and the fix otherwise."""
    module_name, attr = path.split(":", 1)
    if os.getcwd() not in sys.path:  # like `python -m`: the folder raysweep runs from holds user code
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own error at import
        raise SpecError(f"{what} = {path!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc}). Run "
                        f"raysweep from the folder that holds the package, or add that folder to PYTHONPATH.") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise SpecError(f"{what} = {path!r}: module {module_name!r} has no {attr!r}; it has "
                        f"{sorted(n for n in vars(module) if not n.startswith('_'))[:20]}")
    if not callable(fn):
        raise SpecError(f"{what} = {path!r} is a {type(fn).__name__}, not a function")
    return fn


def check_call(fn: Callable, path: str, what: str, args: tuple, kwargs: dict) -> None:
    """The function accepts the contract's arguments (named in the error if not)."""
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise SpecError(f"{what} = {path!r} cannot be called as the contract says ({exc}); see `raysweep.plugins` "
                        f"or the README's \"Your own model, data and checkpoints\".") from None
    except ValueError:  # builtins without a signature: nothing to check
        pass


def source_file(path: str) -> Path:
    """What ships to the workers: the top-level package's folder, or the module's own .py file."""
    top = path.split(":", 1)[0].split(".", 1)[0]
    module = importlib.import_module(top)
    file = getattr(module, "__file__", None)
    if not file:
        raise SpecError(f"{path!r}: {top!r} has no source file (a namespace package?); make it a package with "
                        f"an __init__.py")
    file = Path(file)
    return file.parent if file.name == "__init__.py" else file


@functools.lru_cache(maxsize=64)
def _digest(where: str) -> str:
    root = Path(where)
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root) if root.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def source_identity(path: str) -> str:
    """sha256 of the user code's source (every .py of its top-level package): part of the run hash.
    Read once per process, like the code itself: what this process imported is what it runs."""
    return _digest(str(source_file(path)))


def py_modules(names: list[str]) -> list[str]:
    """Paths for Ray's runtime environment `py_modules`: the user code behind these import paths."""
    out = []
    for name in names:
        if is_import_path(name):
            path = str(source_file(name))
            if path not in out:
                out.append(path)
    return out




def load_plugins(names) -> None:
    """Import the job's plugin modules ("package.module"), each registering what it adds when imported — sweep
    kinds (work/kinds.py), models (models.py), datasets (data/registry.py), metrics and losses
    (evaluate/losses.py), checkpoint formats (train/formats.py); a module that does not import is named with the
    fix. In every process that runs the job's work (the driver, Tune trials, evaluator actors)."""
    for name in names:
        if os.getcwd() not in sys.path:  # like `python -m`: the folder raysweep runs from holds user code
            sys.path.insert(0, os.getcwd())
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or the module's own error at import
            raise SpecError(f"plugins: {name!r} cannot be imported ({type(exc).__name__}: {exc}). Run raysweep from "
                            f"the folder that holds it, or add that folder to PYTHONPATH.") from None


class Registry(dict):
    """name -> a real callable, for one axis a user extends (models, datasets, losses, metrics, checkpoint
    formats). The built-ins are registered the way a plugin registers its own: `@REGISTRY.register("name")`
    on the function (or `REGISTRY.register("name")(fn)`); a name taken by another function is refused, and a
    failed lookup names every entry."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def register(self, name: str):
        def add(fn):
            old = self.get(name)
            if old is not None and old is not fn and (old.__module__, old.__qualname__) != (fn.__module__,
                                                                                             fn.__qualname__):
                raise SpecError(f"{self.what} {name!r} is registered twice: by {old.__module__} and by "
                                f"{fn.__module__}; rename one")
            self[name] = fn
            return fn
        return add

    def lookup(self, name: str, key: str = ""):
        if name not in self:
            raise SpecError(f"{key + ' = ' if key else ''}{name!r} is no registered {self.what}; they are "
                            f"{sorted(self)} (yours: register it in a module named in the job's plugins, or give "
                            f"an import path 'package.module:function')")
        return self[name]

    def origin(self, name: str) -> str:
        """The module that registered `name` (a plugin's code is hashed into what it makes)."""
        return getattr(self[name], "__module__", "") if name in self else ""
