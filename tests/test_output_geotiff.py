"""The decoded GeoTIFF: overviews (the source's, rebuilt, or chosen), COG layout, masks."""

from __future__ import annotations

import shutil

import pytest
import rasterio
from rasterio.enums import Resampling
from test_errors import assert_clean_failure, leftovers, run_cli

import georsic
from georsic import overviews
from georsic.errors import InputError
from georsic.rasterinfo import RasterInfo


def test_auto_factors_stop_at_256_pixels_like_gdaladdo():
    assert overviews.auto_factors(1024, 1024) == (2, 4)
    assert overviews.auto_factors(400, 300) == (2,)
    assert overviews.auto_factors(256, 256) == ()
    assert overviews.auto_factors(8192, 100) == (2, 4, 8, 16, 32)


def test_parse_names_and_factors():
    assert overviews.parse("Auto") == "auto"
    assert overviews.parse(" 8,2,4,4 ") == (2, 4, 8)
    for bad in ("2,x", "", "1,2", "pyramids"):
        with pytest.raises(InputError, match="overview"):
            overviews.parse(bad)
    with pytest.raises(InputError, match="at least 2"):
        overviews.check_factors([2, "four"])


def test_resolve_each_choice():
    assert overviews.resolve("source", (2, 4, 8), 1000, 1000) == (2, 4, 8)
    assert overviews.resolve("source", (2, 4, 8), 6, 5) == (2, 4)  # a small decoded region
    assert overviews.resolve("auto", (2, 4, 8), 600, 400) == (2, 4)
    assert overviews.resolve("none", (2, 4, 8), 600, 400) == ()
    assert overviews.resolve(None, (2, 4, 8), 600, 400) == ()
    assert overviews.resolve([16, 2], (), 600, 400) == (2, 16)
    assert overviews.resolve("2,4", (), 600, 400) == (2, 4)


def test_header_leaves_the_key_out_when_there_are_none(aerial):
    with rasterio.open(aerial) as src:
        info = RasterInfo.from_dataset(src)
    assert info.overviews == ()
    assert "overviews" not in info.to_dict()  # archives without overviews are unchanged
    assert RasterInfo.from_dict(info.to_dict()) == info
    with_levels = RasterInfo.from_dict({**info.to_dict(), "overviews": [2, 4]})
    assert with_levels.overviews == (2, 4)
    assert RasterInfo.from_dict(with_levels.to_dict()) == with_levels


@pytest.fixture(scope="module")
def pyramid_archive(tmp_path_factory, aerial):
    """The aerial raster with internal overviews 2 and 4, compressed."""
    folder = tmp_path_factory.mktemp("overviews")
    source = folder / "pyramid.tif"
    shutil.copyfile(aerial, source)
    with rasterio.open(source, "r+") as dst:
        dst.build_overviews([2, 4], Resampling.average)
    archive = folder / "pyramid.grsc"
    georsic.compress(source, archive, quality=1, device="cpu")
    return archive


def levels(path) -> list[list[int]]:
    with rasterio.open(path) as src:
        return [src.overviews(band) for band in src.indexes]


def test_source_overviews_come_back(pyramid_archive, tmp_path):
    with georsic.open(pyramid_archive) as archive:
        assert archive.info.overviews == (2, 4)
        assert "overviews: 2, 4" in archive.describe()
    restored = georsic.decompress(pyramid_archive, tmp_path / "restored.tif", device="cpu")
    assert levels(restored) == [[2, 4]] * 3
    with rasterio.open(restored) as src:
        assert src.tags(ns="rio_overview") == {"resampling": "average"}
        overview = src.read(1, out_shape=(100, 100))  # read from the factor-4 level
        assert overview.shape == (100, 100) and overview.std() > 0


@pytest.mark.parametrize("choice, expected", [("none", []), ("auto", [2]), ([2, 8], [2, 8])])
def test_overviews_chosen_on_decompression(pyramid_archive, tmp_path, choice, expected):
    restored = georsic.decompress(pyramid_archive, tmp_path / "restored.tif", device="cpu",
                                  overviews=choice)
    assert levels(restored) == [expected] * 3


def test_region_of_an_archive_keeps_the_levels_that_fit(pyramid_archive, tmp_path):
    from rasterio.windows import Window

    restored = georsic.decompress(pyramid_archive, tmp_path / "part.tif", device="cpu",
                                  window=Window(0, 0, 3, 3))
    assert levels(restored) == [[2]] * 3


def test_cli_refuses_bad_overviews_before_writing(pyramid_archive, tmp_path):
    result = run_cli("decompress", pyramid_archive, tmp_path / "out.tif", "--overviews", "2,x")
    assert_clean_failure(result, 2, "overviews '2,x'")
    assert leftovers(tmp_path) == []
    result = run_cli("batch", "decompress", pyramid_archive, "-o", tmp_path / "out",
                     "--overviews", "1")
    assert_clean_failure(result, 2, "at least 2")
    assert not any((tmp_path / "out").glob("*.tif"))


def test_cloud_optimized_output_keeps_pixels_metadata_and_levels(pyramid_archive, tmp_path):
    from test_roundtrip import _assert_same_metadata

    plain = georsic.decompress(pyramid_archive, tmp_path / "plain.tif", device="cpu")
    result = run_cli("decompress", pyramid_archive, tmp_path / "cog.tif", "--cog", "--quiet")
    assert result.returncode == 0, result.stderr
    assert leftovers(tmp_path) == ["cog.tif", "plain.tif"]  # the staging copy is gone
    with rasterio.open(plain) as a, rasterio.open(tmp_path / "cog.tif") as b:
        assert b.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        _assert_same_metadata(a, b)
        assert (b.read() == a.read()).all()
        assert (b.read_masks() == a.read_masks()).all()
        assert [b.overviews(i) for i in b.indexes] == [[2, 4]] * 3


def test_cloud_optimized_output_without_overviews(pyramid_archive, tmp_path):
    restored = georsic.decompress(pyramid_archive, tmp_path / "cog.tif", device="cpu",
                                  overviews="none", cog=True)
    assert levels(restored) == [[]] * 3


@pytest.mark.parametrize("cog", [False, True])
def test_internal_mask_comes_back_exactly(aerial, tmp_path, cog):
    """A dataset mask (no nodata value) is coded losslessly and written back as a mask band."""
    import numpy as np
    from rasterio.enums import MaskFlags

    with rasterio.open(aerial) as src:
        pixels = src.read(window=((0, 150), (0, 200)))
        profile = {"driver": "GTiff", "width": 200, "height": 150, "count": 3,
                   "dtype": "uint8", "crs": src.crs,
                   "transform": src.window_transform(((0, 150), (0, 200)))}
    mask = np.full((150, 200), 255, np.uint8)
    mask[40:90, 20:170] = 0
    source = tmp_path / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(source, "w", **profile) as dst:
        dst.write(pixels)
        dst.write_mask(mask)
    georsic.compress(source, tmp_path / "masked.grsc", quality=3, device="cpu")
    with georsic.open(tmp_path / "masked.grsc") as archive:
        assert archive.info.mask_kind == "dataset"
    restored = georsic.decompress(tmp_path / "masked.grsc", tmp_path / "restored.tif",
                                  device="cpu", cog=cog)
    with rasterio.open(restored) as out:
        assert out.nodata is None
        assert MaskFlags.per_dataset in out.mask_flag_enums[0]
        assert (out.read_masks(1) == mask).all()
