"""CompressAI without the eager imports of its package ``__init__`` files.

``import compressai.entropy_models`` runs ``compressai/__init__.py`` first, and that imports every
subpackage: point-cloud datasets, models and transforms too.  ``compressai.registry``'s table of
transforms imports ``torchvision.transforms`` and ``torch_geometric``, which imports
``torch._dynamo``: about 1.7 s on top of torch's own 1.2 s (``python -X importtime -c "import
compressai"``), for nothing the codec uses.

:func:`install` puts a finder first on :data:`sys.meta_path` that imports the packages named in
:data:`DEFERRED` with their ``__init__`` less the statements that import the listed subpackages.
Submodules import as usual (``compressai.models.sensetime``, ``compressai.entropy_models``,
``compressai.ans``), and the code that runs is CompressAI's own.  The skipped statements run,
in the package's namespace, the first time a name is missing from it: ``compressai.zoo``,
``compressai.models.Cheng2020Anchor`` or ``compressai.registry.TRANSFORMS`` still work, only
later.  Where compressai was imported before, nothing changes.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from types import ModuleType

#: Package -> the subpackages whose imports its ``__init__`` defers (None: all of them).
DEFERRED: dict[str, frozenset[str] | None] = {
    "compressai": None,
    "compressai.models": None,
    "compressai.registry": frozenset({"transforms"}),
}
_LOCK = threading.RLock()


def install() -> None:
    """Import CompressAI's packages lazily from now on (once; not where it is imported)."""
    if "compressai" in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())


def _submodules(node: ast.stmt, package: str) -> set[str]:
    """The subpackages of ``package`` a top-level statement of its ``__init__`` imports."""
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level == 1:  # from .base import *; from . import x
        return {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    if node.level == 0 and node.module == package:  # from compressai import (datasets, ...)
        return {alias.name for alias in node.names}
    if node.level == 0 and node.module and node.module.startswith(package + "."):
        return {node.module[len(package) + 1:].split(".")[0]}
    return set()


def _split(tree: ast.Module, package: str) -> tuple[ast.Module, ast.Module]:
    """``tree`` as what runs now and what is deferred."""
    deferred = DEFERRED[package]
    now, later = [], []
    for node in tree.body:
        names = _submodules(node, package)
        wait = bool(names) and (deferred is None or bool(names & deferred))
        (later if wait else now).append(node)
    return ast.Module(body=now, type_ignores=[]), ast.Module(body=later, type_ignores=[])


class _Loader(importlib.abc.Loader):
    """Runs a package's ``__init__`` less its deferred imports; the rest on a missing name."""

    def __init__(self, loader: importlib.machinery.SourceFileLoader, source: str) -> None:
        self._loader = loader
        self._source = source

    def __getattr__(self, name: str):  # get_resource_reader, is_package, get_filename, ...
        return getattr(self._loader, name)

    def create_module(self, spec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        origin = module.__spec__.origin
        now, later = _split(ast.parse(self._source, origin), module.__name__)
        exec(compile(now, origin, "exec"), module.__dict__)  # noqa: S102 - the package's code
        if later.body and "__getattr__" not in module.__dict__:
            module.__getattr__ = _completer(module, compile(later, origin, "exec"))


def _completer(module: ModuleType, code):
    """A module ``__getattr__``: a submodule's name imports that submodule (``from compressai
    import ans``), another name runs ``code`` (the deferred imports) once and is looked up
    again."""
    done = []

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
        with _LOCK:
            if importlib.util.find_spec(f"{module.__name__}.{name}") is not None:
                return importlib.import_module(f"{module.__name__}.{name}")
            if not done:
                done.append(True)
                exec(code, module.__dict__)  # noqa: S102 - the package's own imports
        try:
            return module.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}") from None

    return __getattr__


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the packages of :data:`DEFERRED` as Python would, loading them with
    :class:`_Loader`; anything it cannot read as source is left to the other finders."""

    def find_spec(self, name: str, path=None, target=None):
        if name not in DEFERRED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        loader = getattr(spec, "loader", None)
        if not isinstance(loader, importlib.machinery.SourceFileLoader):
            return None
        try:
            source = loader.get_source(name)
        except (ImportError, OSError):
            return None
        if source is None:
            return None
        spec.loader = _Loader(loader, source)
        return spec
