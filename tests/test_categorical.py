"""Issue 21: categorical bands (class indices) are kept exactly, with what names their classes.

A band is categorical when it has a colour table (tests/test_hostile.py), a raster attribute
table (RAT), category names, or ``LAYER_TYPE=thematic`` in its metadata. The rasters are made
here with GDAL's Python bindings, which write RATs and category names (rasterio does not)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

import georsic
from georsic.cli import main

gdal = pytest.importorskip("osgeo.gdal")

CLASSES = ("water", "forest", "urban", "crop", "bare")


def land_cover(path: Path, *, bands: int = 1, seed: int = 21) -> tuple[np.ndarray, object]:
    """A 90x70 uint8 raster of class indices 0..4 (blocky, like a land-cover map), and the
    GDAL dataset, open for the caller to describe its bands (closing it writes them)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, len(CLASSES), (bands, 14, 18), dtype=np.uint8)
    data = coarse.repeat(5, axis=1).repeat(5, axis=2)
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 90, 70, bands, gdal.GDT_Byte)
    dataset.SetGeoTransform((500000.0, 10.0, 0.0, 4000700.0, 0.0, -10.0))
    dataset.SetProjection(rasterio.crs.CRS.from_epsg(32633).to_wkt())
    for band in range(bands):
        dataset.GetRasterBand(band + 1).WriteArray(data[band])
    return data, dataset


def attribute_table(thematic: bool = True):
    rat = gdal.RasterAttributeTable()
    rat.CreateColumn("Value", gdal.GFT_Integer, gdal.GFU_MinMax)
    rat.CreateColumn("Class", gdal.GFT_String, gdal.GFU_Name)
    rat.CreateColumn("Share", gdal.GFT_Real, gdal.GFU_Generic)
    for row, name in enumerate(CLASSES):
        rat.SetValueAsInt(row, 0, row)
        rat.SetValueAsString(row, 1, name)
        rat.SetValueAsDouble(row, 2, (row + 1) / 7)
    rat.SetTableType(gdal.GRTT_THEMATIC if thematic else gdal.GRTT_ATHEMATIC)
    return rat


def table(rat) -> dict | None:
    """A GDAL RAT as plain values (read while its dataset is open: the band owns it)."""
    if rat is None:
        return None
    return {"thematic": rat.GetTableType() == gdal.GRTT_THEMATIC,
            "columns": [(rat.GetNameOfCol(c), rat.GetTypeOfCol(c), rat.GetUsageOfCol(c))
                        for c in range(rat.GetColumnCount())],
            "rows": [(rat.GetValueAsInt(r, 0), rat.GetValueAsString(r, 1),
                      rat.GetValueAsDouble(r, 2)) for r in range(rat.GetRowCount())]}


def described(path: Path) -> tuple[np.ndarray, list[tuple[list | None, dict | None, dict]]]:
    """Pixels, and per band (category names, RAT, metadata), as GDAL reads them."""
    dataset = gdal.Open(str(path))
    dataset.GetMetadata()  # loads the PAM sidecar (GDAL 3.6's GetCategoryNames does not)
    bands = [dataset.GetRasterBand(b + 1) for b in range(dataset.RasterCount)]
    described = [(band.GetCategoryNames(), table(band.GetDefaultRAT()), band.GetMetadata())
                 for band in bands]
    pixels = dataset.ReadAsArray().reshape(len(bands), dataset.RasterYSize, -1)
    return pixels, described


def round_trip(capsys, src: Path, tmp_path: Path, *options: str) -> tuple[Path, str]:
    """``georsic compress`` at the lowest quality then ``decompress``; (output, stderr)."""
    archive, out = tmp_path / "a.grsc", tmp_path / "out.tif"
    assert main(["compress", str(src), str(archive), "-q", "0", "--quiet", *options]) == 0
    assert main(["decompress", str(archive), str(out), "--quiet"]) == 0
    return out, capsys.readouterr().err


def test_band_with_an_attribute_table_comes_back_exactly_with_it(capsys, tmp_path):
    data, dataset = land_cover(tmp_path / "rat.tif")
    dataset.GetRasterBand(1).SetDefaultRAT(attribute_table())
    dataset = None
    out, err = round_trip(capsys, tmp_path / "rat.tif", tmp_path)
    assert err == ""
    assert georsic.open(tmp_path / "a.grsc").mapping.lossless == (0,)
    pixels, [(_, rat, _)] = described(out)
    assert np.array_equal(pixels, data)
    assert rat == described(tmp_path / "rat.tif")[1][0][1]  # as GDAL reads the source's
    assert rat["thematic"] and rat["columns"] == [("Value", gdal.GFT_Integer, gdal.GFU_MinMax),
                                                  ("Class", gdal.GFT_String, gdal.GFU_Name),
                                                  ("Share", gdal.GFT_Real, gdal.GFU_Generic)]
    assert [row[:2] for row in rat["rows"]] == list(enumerate(CLASSES))
    # GDAL's PAM sidecar keeps 16 significant digits
    assert [row[2] for row in rat["rows"]] == pytest.approx([(i + 1) / 7 for i in range(5)],
                                                            rel=1e-15)


def test_band_with_category_names_comes_back_exactly_with_them(capsys, tmp_path):
    data, dataset = land_cover(tmp_path / "names.tif")
    dataset.GetRasterBand(1).SetCategoryNames(list(CLASSES))
    dataset = None
    out, err = round_trip(capsys, tmp_path / "names.tif", tmp_path)
    assert err == ""
    pixels, [(names, rat, _)] = described(out)
    assert np.array_equal(pixels, data)
    assert names == list(CLASSES) and rat is None


def test_thematic_layer_comes_back_exactly_and_still_thematic(capsys, tmp_path):
    """Three bands, the middle one thematic: only it is kept losslessly."""
    data, dataset = land_cover(tmp_path / "thematic.tif", bands=3)
    dataset.GetRasterBand(2).SetMetadataItem("LAYER_TYPE", "thematic")
    dataset = None
    out, err = round_trip(capsys, tmp_path / "thematic.tif", tmp_path)
    assert err == ""
    assert georsic.open(tmp_path / "a.grsc").mapping.lossless == (1,)
    pixels, described_bands = described(out)
    assert np.array_equal(pixels[1], data[1])
    assert described_bands[1][2] == {"LAYER_TYPE": "thematic"}
    assert not np.array_equal(pixels[0], data[0])  # quality 0: the other bands are lossy


def test_athematic_table_of_a_continuous_band_is_left_out_with_a_warning(capsys, tmp_path):
    data, dataset = land_cover(tmp_path / "athematic.tif", bands=3)
    dataset.GetRasterBand(1).SetDefaultRAT(attribute_table(thematic=False))
    dataset = None
    out, err = round_trip(capsys, tmp_path / "athematic.tif", tmp_path)
    assert err.splitlines() == ["georsic: warning: the raster attribute table of band 1 is not "
                                "kept (the band is athematic and coded lossily)"]
    assert georsic.open(tmp_path / "a.grsc").mapping.lossless == ()
    assert described(out)[1][0][1] is None
    assert not Path(f"{out}.aux.xml").exists()


def test_without_gdal_bindings_the_values_are_exact_and_a_warning_says_so(capsys, tmp_path,
                                                                         monkeypatch):
    data, dataset = land_cover(tmp_path / "rat.tif")
    dataset.GetRasterBand(1).SetDefaultRAT(attribute_table())
    dataset = None
    archive = tmp_path / "a.grsc"
    assert main(["compress", str(tmp_path / "rat.tif"), str(archive), "-q", "0", "--quiet"]) == 0
    monkeypatch.setitem(sys.modules, "osgeo", None)  # `from osgeo import gdal` fails
    assert main(["decompress", str(archive), str(tmp_path / "out.tif"), "--quiet"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "georsic: warning: the category names and raster attribute table of band 1 are not "
        "kept (GDAL's Python bindings are not installed); its values are exact"]
    monkeypatch.undo()
    pixels, [(_, rat, _)] = described(tmp_path / "out.tif")
    assert np.array_equal(pixels, data) and rat is None


def test_overwriting_an_output_replaces_its_sidecar(tmp_path):
    """A PAM sidecar left from the file replaced would describe the old classes."""
    data, dataset = land_cover(tmp_path / "rat.tif")
    dataset.GetRasterBand(1).SetDefaultRAT(attribute_table())
    dataset = None
    georsic.compress(tmp_path / "rat.tif", tmp_path / "a.grsc", quality=0)
    out = tmp_path / "out.tif"
    georsic.decompress(tmp_path / "a.grsc", out)
    with rasterio.open(tmp_path / "plain.tif", "w", driver="GTiff", width=90, height=70,
                       count=1, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(500000, 4000700, 10, 10)) as dst:
        dst.write(data)
    georsic.compress(tmp_path / "plain.tif", tmp_path / "plain.grsc", quality=0)
    georsic.decompress(tmp_path / "plain.grsc", out, overwrite=True)
    assert not Path(f"{out}.aux.xml").exists()
    assert described(out)[1][0][1] is None
    header = georsic.open(tmp_path / "plain.grsc").header["raster"]
    assert "tables" not in header and "categories" not in header  # headers as before
