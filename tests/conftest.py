"""Shared fixtures: real rasters from tests/data (see tests/data/ATTRIBUTION.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from testdata import DATA


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def aerial() -> Path:
    """NEON 0.1 m aerial RGB, 400x400, EPSG:32617, nodata 255 (held out from training)."""
    return DATA / "osbs_aerial_rgb.tif"


@pytest.fixture(scope="session")
def aerial_archive(tmp_path_factory, aerial) -> Path:
    import georsic

    path = tmp_path_factory.mktemp("archive") / "aerial.grsc"
    georsic.compress(aerial, path, quality=4, tile_size=256, overlap=32, device="cpu")
    return path
