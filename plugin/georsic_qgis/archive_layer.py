"""*Add GeoRSIC archive*: an archive as a raster layer read in place, no decompressed copy.

The layer is GDAL's view of the archive's VRT (``georsic vrt``), whose bands call the
backend's pixel function; a zoomed-out view reads the archive's pyramid.  GDAL runs Python
pixel functions only when trusted: the plugin trusts only the backend's module
(``GDAL_VRT_ENABLE_PYTHON=TRUSTED_MODULES``, ``GDAL_VRT_PYTHON_TRUSTED_MODULES`` naming
``georsic.vrt``), never every Python VRT.  When in-place reading cannot work the user is told
why (:class:`ArchiveLayerError`); nothing falls back to a decompressed copy.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

#: The module GDAL must trust (the backend's :data:`georsic.vrt.MODULE`).
TRUSTED_MODULE = "georsic.vrt"
#: Layer custom property holding the archive's path.
ARCHIVE_PROPERTY = "georsic/archive"


class ArchiveLayerError(Exception):
    """Why an archive cannot be opened in place (one line, for the message bar)."""


def trust_georsic_module() -> None:
    """Let GDAL run the backend's pixel function, and no other Python pixel function that
    was not trusted already (an existing list of trusted modules is kept, ours added)."""
    from osgeo import gdal

    mode = (gdal.GetConfigOption("GDAL_VRT_ENABLE_PYTHON") or "").upper()
    if mode not in ("YES", "TRUSTED_MODULES"):
        gdal.SetConfigOption("GDAL_VRT_ENABLE_PYTHON", "TRUSTED_MODULES")
    modules = [m for m in (gdal.GetConfigOption("GDAL_VRT_PYTHON_TRUSTED_MODULES") or "")
               .split(",") if m]
    if TRUSTED_MODULE not in modules:
        modules.append(TRUSTED_MODULE)
        gdal.SetConfigOption("GDAL_VRT_PYTHON_TRUSTED_MODULES", ",".join(modules))


def vrt_folder() -> Path:
    """Where the plugin keeps the small VRTs it writes (the user's QGIS profile)."""
    folder = Path(QgsApplication.qgisSettingsDirPath()) / "georsic" / "vrt"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _vrt_for(archive: Path, folder: Path) -> Path:
    stat = archive.stat()
    key = f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    return folder / f"{archive.stem}-{hashlib.sha256(key).hexdigest()[:12]}.vrt"


def _backend():
    from .dependencies import missing_modules

    missing = missing_modules()
    if missing:
        raise ArchiveLayerError(
            f"GeoRSIC archives open in place only with the GeoRSIC backend, and this QGIS "
            f"lacks {', '.join(missing)}; install it (see the plugin's About) and try again")
    from georsic import vrt
    from georsic.errors import GeorsicError

    return vrt, GeorsicError


def _check_reads(vrt_path: Path) -> None:
    """Read one pixel of the coarsest view through GDAL: the pixel function must run."""
    from osgeo import gdal

    gdal.ErrorReset()
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        dataset = gdal.Open(str(vrt_path))
        data = None if dataset is None else dataset.GetRasterBand(1).ReadRaster(
            0, 0, dataset.RasterXSize, dataset.RasterYSize, 1, 1)
        message = gdal.GetLastErrorMsg()
    finally:
        gdal.PopErrorHandler()
        dataset = None
    if data is None:
        text = " ".join(message.split()).split("RuntimeError: ")[-1] or "no reason given"
        raise ArchiveLayerError(f"GDAL cannot read {vrt_path.name} in place: {text}")


def archive_layer(path: str | os.PathLike, folder: Path | None = None) -> QgsRasterLayer:
    """A raster layer reading the archive at ``path`` in place (not added to a project).

    Raises :class:`ArchiveLayerError` saying why, when that cannot work: no backend, not an
    archive, GDAL refusing the pixel function.
    """
    archive = Path(path)
    vrt, GeorsicError = _backend()
    trust_georsic_module()
    try:
        target = _vrt_for(archive, folder or vrt_folder()) if archive.is_file() else None
        vrt_path = vrt.write_vrt(archive, target, overwrite=True)
    except GeorsicError as exc:
        raise ArchiveLayerError(str(exc)) from None
    except OSError as exc:
        raise ArchiveLayerError(f"cannot write the VRT of {archive.name}: {exc}") from None
    _check_reads(vrt_path)
    layer = QgsRasterLayer(str(vrt_path), f"{archive.stem} (GeoRSIC archive)", "gdal")
    if not layer.isValid():
        raise ArchiveLayerError(f"QGIS cannot open the VRT of {archive.name} ({vrt_path})")
    layer.setCustomProperty(ARCHIVE_PROPERTY, str(archive.resolve()))
    layer.setAbstract(f"GeoRSIC archive {archive.resolve()}, read in place (no decompressed "
                      f"copy) through {vrt_path}")
    return layer


def add_archive_layer(path: str | os.PathLike, project: QgsProject | None = None,
                      ) -> QgsRasterLayer:
    """:func:`archive_layer` added to ``project`` (default: the current project)."""
    layer = archive_layer(path)
    (project or QgsProject.instance()).addMapLayer(layer)
    return layer
