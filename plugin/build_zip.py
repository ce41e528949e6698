"""Build the QGIS plugin zip: ``python plugin/build_zip.py`` -> ``dist/georsic_qgis.zip``.

The zip follows the QGIS plugin repository rules: one top folder (``georsic_qgis/``) holding
``__init__.py``, ``metadata.txt`` (the repository root's copy) and ``LICENSE``; sources only (no
``__pycache__``, compiled files, model weights or hidden files); at most 25 MB. Entries have a
fixed timestamp so the same sources give the same zip.
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "georsic_qgis"
SOURCE = REPO / "plugin" / PACKAGE
DEFAULT_OUTPUT = REPO / "dist" / f"{PACKAGE}.zip"
MAX_BYTES = 25 * 1024 * 1024

#: What may go into the zip; anything else in the package folder is an error, not skipped quietly.
ALLOWED_SUFFIXES = {".py", ".txt", ".svg", ".png", ".md", ".html", ".ui", ".qm"}
#: Build and editor debris that is skipped.
SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}
FIXED_DATE = (2020, 1, 1, 0, 0, 0)


class BuildError(Exception):
    pass


def plugin_files() -> list[tuple[Path, str]]:
    """(source file, name in the zip) for every file that goes into the zip, sorted."""
    files: list[tuple[Path, str]] = []
    for folder, dirs, names in os.walk(SOURCE):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(names):
            path = Path(folder) / name
            if name.startswith(".") or path.suffix in SKIPPED_SUFFIXES:
                continue
            if path.suffix not in ALLOWED_SUFFIXES:
                raise BuildError(f"{path.relative_to(REPO)}: file type not allowed in the zip")
            if name == "metadata.txt" and Path(folder) == SOURCE:
                continue  # the repository root's metadata.txt is the one that ships
            files.append((path, f"{PACKAGE}/{path.relative_to(SOURCE).as_posix()}"))
    files.append((REPO / "metadata.txt", f"{PACKAGE}/metadata.txt"))
    files.append((REPO / "LICENSE", f"{PACKAGE}/LICENSE"))
    for path, _ in files:
        if not path.is_file():
            raise BuildError(f"missing {path.relative_to(REPO)}")
    return sorted(files, key=lambda item: item[1])


def build(output: Path = DEFAULT_OUTPUT) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for folder in sorted({name.rsplit("/", 1)[0] + "/" for _, name in plugin_files()}):
                info = zipfile.ZipInfo(folder, date_time=FIXED_DATE)
                info.external_attr = 0o40755 << 16
                zf.writestr(info, b"")
            for path, name in plugin_files():
                info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
        size = tmp.stat().st_size
        if size > MAX_BYTES:
            raise BuildError(f"the zip is {size / 1e6:.1f} MB; the plugin repository allows 25 MB")
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", "-o", type=Path, default=DEFAULT_OUTPUT,
                        help=f"zip to write (default {DEFAULT_OUTPUT.relative_to(REPO)})")
    args = parser.parse_args(argv)
    try:
        path = build(args.output)
    except BuildError as exc:
        print(f"build_zip: {exc}", file=sys.stderr)
        return 1
    print(f"{path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
