"""Checks of the benchmarks' arguments, made before any benchmark runs: a user's mistake (a
folder that does not exist, a size of 0, an archive given for a raster) is one
``georsic: error`` line and exit 2 (or 3 for an output), never "this is a bug", and never
after minutes of measuring."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from georsic.errors import InputError, OutputError


def positive(values: int | float | Iterable[int | float], option: str) -> None:
    """Each of ``values`` above zero, else an :class:`InputError` naming ``option``."""
    for value in values if isinstance(values, Iterable) else (values,):
        if not value > 0:
            raise InputError(f"{option} takes positive numbers, not {value:g}")


def folder(path: str | Path | None, option: str) -> None:
    """``path`` (when given) an existing, writable folder, else an :class:`OutputError`."""
    if path is None:
        return
    path = Path(path)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise OutputError(f"{option} {path} {what}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path} is not writable")


def output_file(path: str | Path | None, option: str) -> None:
    """``path`` (when given) a file that can be written: its folder exists and is writable,
    and it is not a folder itself; else an :class:`OutputError`."""
    if path is None:
        return
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder, not a file")
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and
                                                     not os.access(path, os.W_OK)):
        raise OutputError(f"{option} {path} cannot be written (permission denied)")


def raster(path: str | Path, what: str = "input") -> Path:
    """``path`` an existing raster file that GDAL opens (not a GeoRSIC archive), else an
    :class:`InputError` saying which of these it is not."""
    from georsic.archive import MAGIC

    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder, not a raster file")
    try:
        with open(path, "rb") as file:
            head = file.read(len(MAGIC))
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    if head == MAGIC:
        raise InputError(f"{what} {path} is a GeoRSIC archive; the benchmark takes the raster "
                         "itself (a GeoTIFF), which it compresses")
    from georsic.source import open_raster

    with open_raster(path):
        pass
    return path
