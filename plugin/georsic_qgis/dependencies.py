"""Finding the GeoRSIC backend, and telling the user how to install it when it is missing.

Nothing here imports the backend or its heavy dependencies at module import time: the plugin must
load in a QGIS whose Python has none of them. ``missing_modules`` only looks the modules up
(cheap); ``load_backend`` imports them, inside ``processAlgorithm``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import sysconfig

from qgis.core import QgsProcessingException

#: The backend package and the dependencies it needs at run time, in the order they are checked.
REQUIRED_MODULES = ("georsic", "torch", "compressai", "rasterio")

#: The oldest backend this plugin works with (the API it calls appeared in it).
MIN_BACKEND_VERSION = "0.1.0"

#: What pip installs: the backend pulls torch, compressai, rasterio and the pins it needs.
PIP_REQUIREMENT = "georsic"


def python_executable() -> str:
    """The path of the Python interpreter that QGIS embeds (the one pip must install into)."""
    exe = sys.executable or ""
    name = os.path.basename(exe).lower()
    if name.startswith("python") and os.path.exists(exe):
        return exe
    # Windows (OSGeo4W, standalone installer) and some macOS builds report the QGIS binary
    # itself as sys.executable; the interpreter sits next to the Python prefix.
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        os.path.join(sys.exec_prefix, "python.exe"),
        os.path.join(sys.exec_prefix, "python3.exe"),
        os.path.join(sys.exec_prefix, "bin", f"python{version}"),
        os.path.join(sys.exec_prefix, "bin", "python3"),
    ]
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    return "python" if os.name == "nt" else "python3"


def _externally_managed() -> bool:
    """True when this Python refuses plain pip installs (PEP 668, e.g. Debian/Ubuntu 23.04+)."""
    if sys.prefix != sys.base_prefix:  # inside a virtual environment pip may install freely
        return False
    stdlib = sysconfig.get_path("stdlib") or ""
    return os.path.exists(os.path.join(stdlib, "EXTERNALLY-MANAGED"))


def _quote(path: str) -> str:
    return f'"{path}"' if " " in path else path


def install_command(upgrade: bool = False, requirement: str = PIP_REQUIREMENT) -> str:
    """The exact shell command that installs the backend into the Python QGIS uses."""
    parts = [_quote(python_executable()), "-m", "pip", "install"]
    if upgrade:
        parts.append("--upgrade")
    in_venv = sys.prefix != sys.base_prefix
    if not in_venv and os.name != "nt":
        parts.append("--user")
    if _externally_managed():
        parts.append("--break-system-packages")
    parts.append(requirement)
    return " ".join(parts)


def source_folder() -> str | None:
    """The GeoRSIC source folder (it holds pyproject.toml, backend/ and the model weights) when
    this plugin runs from one (``QGIS_PLUGINPATH=<sources>/plugin``); None for a plugin
    installed from the zip."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pyproject = os.path.join(root, "pyproject.toml")
    if not os.path.isdir(os.path.join(root, "backend", "georsic")):
        return None
    try:
        with open(pyproject, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    return root if 'name = "georsic"' in text else None


def missing_modules() -> list[str]:
    """Names from REQUIRED_MODULES that this Python cannot find, without importing them."""
    missing = []
    for name in REQUIRED_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def install_message(
    missing: list[str] | None = None, detail: str = "", upgrade: bool = False
) -> str:
    """A message for the user: what is missing and the command that installs it."""
    if missing is None:
        missing = missing_modules()
    if missing:
        what = ", ".join(missing)
        head = (
            f"GeoRSIC cannot run: the Python that QGIS uses ({python_executable()}) "
            f"lacks {what}."
        )
    else:
        head = "GeoRSIC cannot run: its Python backend is not usable in this QGIS."
    if detail:
        head += f" ({detail})"
    source = source_folder()
    if source is not None:
        alternative = (
            "or, from the GeoRSIC source folder this plugin runs from (it also holds the model "
            "weights):\n"
            f"    {install_command(upgrade=upgrade, requirement='-e ' + _quote(source))}\n"
        )
    else:
        alternative = (
            "or, from a GeoRSIC source folder (it also holds the model weights):\n"
            f"    {install_command(upgrade=upgrade, requirement='-e /path/to/georsic')}\n"
        )
    return (
        f"{head} Install the GeoRSIC backend (it brings torch, compressai and rasterio) into "
        f"that Python with:\n"
        f"    {install_command(upgrade=upgrade)}\n"
        f"{alternative}"
        "then restart QGIS. On Windows run the command in the OSGeo4W Shell. "
        "See docs/plugin.md in the GeoRSIC sources for details."
    )


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
        if not piece.isdigit():
            break
    return tuple(parts)


def load_backend():
    """Import and return the ``georsic`` module, or raise QgsProcessingException saying how to
    install or upgrade it."""
    missing = missing_modules()
    if missing:
        raise QgsProcessingException(install_message(missing))
    try:
        georsic = importlib.import_module("georsic")
        for name in REQUIRED_MODULES[1:]:
            importlib.import_module(name)
    except ImportError as exc:  # a module is present but broken (e.g. a compiled part missing)
        raise QgsProcessingException(install_message([], detail=str(exc))) from exc
    version = getattr(georsic, "__version__", "0")
    api = ("compress", "decompress", "open", "errors")
    if _version_tuple(version) < _version_tuple(MIN_BACKEND_VERSION) or not all(
        hasattr(georsic, name) for name in api
    ):
        raise QgsProcessingException(
            install_message(
                [],
                detail=(
                    f"the installed georsic {version} is too old for this plugin, "
                    f"which needs georsic >= {MIN_BACKEND_VERSION}"
                ),
                upgrade=True,
            )
        )
    return georsic
