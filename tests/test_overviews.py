"""Overviews: recorded from the source, rebuilt on decompression, or chosen by the user."""

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
