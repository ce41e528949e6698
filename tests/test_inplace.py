"""Issue 31: the overview pyramid inside an archive (format version 5), and reading an archive
in place through the API (``Archive.read(out_shape=)``, ``overviews()``, ``to_xarray(level=)``)
with one bounded tile cache per process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window
from testdata import DATA, psnr

import georsic
from georsic import inplace
from georsic.archive import _PREFIX, VERSION, ArchiveReader
from georsic.errors import InputError
from georsic.pyramid import auto_factors, record_count, resolve

LEGACY = [DATA / "legacy_v2_osbs_crop.grsc", DATA / "legacy_v3_osbs_crop.grsc",
          DATA / "legacy_exact_v1_osbs_crop.grsc"]


@pytest.fixture(scope="module")
def pyramid_archive(tmp_path_factory, aerial):
    """The 400x400 aerial raster in 128-pixel tiles (16) with a pyramid level of factor 4
    (100x100, one tile), and its decompressed GeoTIFF."""
    folder = tmp_path_factory.mktemp("inplace")
    path = folder / "aerial.grsc"
    summary = georsic.compress(aerial, path, quality=4, tile_size=128, overlap=16,
                               device="cpu", pyramid_levels=[4])
    georsic.decompress(path, folder / "aerial.tif", overviews="none")
    return path, folder / "aerial.tif", summary


def test_auto_factors_stop_at_512_pixels():
    assert auto_factors(16384, 16384) == (4, 16, 64)
    assert auto_factors(4096, 2000) == (4, 16)
    assert auto_factors(512, 300) == ()
    assert resolve("none", 4096, 4096) == ()
    assert resolve("4,16", 4096, 4096) == (4, 16)
    for bad in ("1", "x", "8192"):
        with pytest.raises(InputError):
            resolve(bad, 4096, 4096)


def test_pyramid_is_stored_and_measured(pyramid_archive):
    path, _, summary = pyramid_archive
    with ArchiveReader(path) as reader:
        assert reader.version == VERSION == 5
        assert reader.header["pyramid"] == {"factors": [4]}
        assert reader.tile_count == record_count(reader.header) == 16 + 1
    archive = georsic.open(path)
    assert archive.overviews() == [4] and summary.pyramid_factors == (4,)
    assert archive.pyramid_bytes == summary.pyramid_bytes > 0
    assert summary.pyramid_share == pytest.approx(summary.pyramid_bytes / path.stat().st_size)
    assert [(lv.factor, lv.width, lv.height) for lv in archive.levels] == \
        [(1, 400, 400), (4, 100, 100)]
    assert not archive.verify()


def test_full_resolution_reads_in_place_equal_decompress(pyramid_archive):
    path, decoded, _ = pyramid_archive
    archive = georsic.open(path)
    with rasterio.open(decoded) as ref:
        expected = ref.read()
    inplace.CACHE.clear()
    # windows inside one tile, across tile borders (112 = the stride), and everything
    for window in (Window(5, 7, 60, 50), Window(90, 100, 150, 130), Window(0, 0, 400, 400)):
        got = archive.read(window, out_shape=(int(window.height), int(window.width)))
        y, x = int(window.row_off), int(window.col_off)
        assert np.array_equal(got, expected[:, y:y + int(window.height),
                                            x:x + int(window.width)])
    assert got.dtype == expected.dtype
    assert np.array_equal(archive.read(Window(90, 100, 150, 130), out_shape=(3, 130, 150)),
                          archive.read(Window(90, 100, 150, 130)))


def test_coarse_reads_come_from_the_pyramid(pyramid_archive, aerial):
    path, decoded, _ = pyramid_archive
    archive = georsic.open(path)
    inplace.CACHE.clear()
    coarse = archive.read(out_shape=(100, 100))
    keys = list(inplace.CACHE._items)
    assert [key[1] for key in keys] == [4]  # one tile, of the level of factor 4, decoded
    with rasterio.open(aerial) as src:
        average = src.read(out_shape=(3, 100, 100), resampling=Resampling.average)
        valid = src.read_masks(1, out_shape=(100, 100)) > 0
    assert psnr(coarse[:, valid], average[:, valid]) > 20
    # a read between levels comes from the finer level, nearest pixel
    middle = archive.read(out_shape=(200, 200))
    assert middle.shape == (3, 200, 200)
    assert {key[1] for key in inplace.CACHE._items} == {1, 4}
    full = archive.read()
    assert np.array_equal(middle, full[:, 1::2, 1::2])


def test_to_xarray_of_a_level(pyramid_archive):
    path, _, _ = pyramid_archive
    archive = georsic.open(path)
    level = archive.to_xarray(level=4)
    assert level.shape == (3, 100, 100)
    assert level.rio.transform() == archive.transform @ rasterio.Affine.scale(4)
    assert np.array_equal(level.values, archive.read(out_shape=(100, 100)))
    with pytest.raises(InputError, match="no pyramid level 16"):
        archive.to_xarray(level=16)


def test_tile_cache_is_bounded_in_bytes(pyramid_archive):
    path, _, _ = pyramid_archive
    archive = georsic.open(path)
    full = archive.levels[0]
    cache = inplace.CACHE
    saved = cache.max_bytes
    try:
        cache.clear()
        piece_bytes = 4 * 128 * 128 * 4  # three float32 bands and the float32 weights
        cache.max_bytes = 3 * piece_bytes
        found = inplace.pieces(archive, full, Window(0, 0, 400, 400))
        assert len(found) == 16 and sum(map(cache.size_of, found)) > cache.max_bytes
        assert cache.bytes <= cache.max_bytes and 3 <= len(cache) < 16
        assert [key[2] for key in cache._items][-1] == 15  # the least recent went first
    finally:
        cache.max_bytes = saved
        cache.clear()


@pytest.mark.parametrize("legacy", LEGACY, ids=lambda p: p.stem)
def test_older_archives_open_in_place_from_full_resolution_tiles(legacy):
    archive = georsic.open(legacy)
    assert archive.overviews() == []
    full = archive.read()
    assert np.array_equal(archive.read(out_shape=full.shape[1:]), full)
    height, width = full.shape[1] // 2, full.shape[2] // 2
    small = archive.read(out_shape=(height, width))
    assert np.array_equal(small, full[:, 1:2 * height:2, 1:2 * width:2])


def test_a_version_4_archive_and_no_pyramid_read_in_place(tmp_path, aerial):
    path = tmp_path / "none.grsc"
    summary = georsic.compress(aerial, path, quality=4, tile_size=256, overlap=32,
                               device="cpu", pyramid_levels="none")
    assert summary.pyramid_factors == () and summary.pyramid_bytes == 0
    data = bytearray(path.read_bytes())
    _, _, length = _PREFIX.unpack_from(data)
    data[:_PREFIX.size] = _PREFIX.pack(b"GRSC\r\n\x1a\n", 4, length)  # as version 4 wrote
    old = tmp_path / "v4.grsc"
    old.write_bytes(bytes(data))
    with ArchiveReader(old) as reader:
        assert reader.version == 4
    archive = georsic.open(old)
    full = archive.read()
    assert archive.overviews() == []
    assert np.array_equal(archive.read(out_shape=(100, 100)), full[:, 2::4, 2::4])


def test_recovery_scan_counts_pyramid_tiles(tmp_path, pyramid_archive):
    path, _, _ = pyramid_archive
    cut = tmp_path / "cut.grsc"
    cut.write_bytes(path.read_bytes()[:-10])
    archive = georsic.open(cut, recover=True)
    assert archive._reader.tile_count == 17 and archive._reader.missing == []
    assert archive.overviews() == [4]


def test_bad_out_shape_and_bad_pyramid_are_one_line(pyramid_archive, tmp_path, aerial):
    path, _, _ = pyramid_archive
    with pytest.raises(InputError, match="out_shape"):
        georsic.open(path).read(out_shape=(0, 5))
    run = subprocess.run([sys.executable, "-m", "georsic.cli", "compress", str(aerial),
                          str(tmp_path / "x.grsc"), "--pyramid", "1"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert [line for line in run.stderr.splitlines() if line.startswith("georsic")] == [
        "georsic: error: pyramid factors must be whole numbers of at least 2, got [1]"]
    assert not (tmp_path / "x.grsc").exists()


def test_a_damaged_pyramid_tile_is_named_and_full_resolution_still_reads(tmp_path,
                                                                          pyramid_archive):
    from testdata import damaged_copy

    from georsic.errors import TileError

    path, decoded, _ = pyramid_archive
    damaged = damaged_copy(path, tmp_path / "damaged.grsc", 16)  # the pyramid's one tile
    archive = georsic.open(damaged)
    problems = archive.verify()
    assert len(problems) == 1
    assert "tile 0 (row 0, col 0) of pyramid level 4 is corrupt" in str(problems[0])
    with rasterio.open(decoded) as ref:
        assert np.array_equal(archive.read(), ref.read())
    with pytest.raises(TileError, match="pyramid level 4"):
        archive.read(out_shape=(100, 100))
