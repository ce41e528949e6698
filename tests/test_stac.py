"""Issue 32, part 4: ``georsic stac ARCHIVE``, a STAC Item so catalogues list archives beside
COGs: footprint and bbox in WGS 84, the projection extension's fields, an asset of type
application/vnd.georsic, and the model, quality and bits per pixel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rasterio
from rangeserver import range_server
from rasterio.warp import transform_bounds
from testdata import DATA, aerial_crop

import georsic
from georsic.cli import main
from georsic.stac import MEDIA_TYPE, PROJECTION_SCHEMA, stac_item


@pytest.fixture(scope="module")
def dated(tmp_path_factory) -> Path:
    """An archive of a 96x80 crop of the NEON image whose TIFF says when it was taken,
    compressed to a target PSNR (a bound the item names)."""
    folder = tmp_path_factory.mktemp("stac")
    aerial_crop(folder / "s.tif", 96, 80, TIFFTAG_DATETIME="2018:05:01 14:30:00")
    georsic.compress(folder / "s.tif", folder / "scene.grsc", target_psnr=28, tile_size=64,
                     overlap=16, device="cpu")
    return folder / "scene.grsc"


def test_item_of_an_archive(dated, capsys):
    assert main(["stac", str(dated)]) == 0
    item = json.loads(capsys.readouterr().out)
    with georsic.open(dated) as archive:
        assert item == stac_item(archive)
        bounds, crs, transform = archive.bounds, archive.info.crs, archive.transform
        bpp, quality, model = archive.bpp, archive.quality, archive.model_id
    assert item["type"] == "Feature" and item["stac_version"] == "1.1.0"
    assert item["stac_extensions"] == [PROJECTION_SCHEMA]
    assert item["id"] == "scene" and item["links"] == []
    props = item["properties"]
    assert props["datetime"] == "2018-05-01T14:30:00Z"
    assert props["georsic:datetime_from"] == "TIFFTAG_DATETIME"
    assert props["proj:code"] == "EPSG:32617" and crs.to_epsg() == 32617
    assert rasterio.crs.CRS.from_wkt(props["proj:wkt2"]) == crs
    assert props["proj:shape"] == [80, 96]
    assert props["proj:transform"] == list(transform)[:6]
    assert props["proj:bbox"] == pytest.approx(list(bounds))
    assert props["georsic:model"] == model and props["georsic:quality"] == quality
    assert props["georsic:bpp"] == pytest.approx(bpp, abs=1e-6)
    assert props["georsic:bytes"] == dated.stat().st_size
    assert props["georsic:target_psnr"] == 28 and "georsic:target_bpp" not in props
    asset = item["assets"]["data"]
    assert asset["type"] == MEDIA_TYPE == "application/vnd.georsic"
    assert asset["roles"] == ["data"] and asset["href"] == str(dated.resolve())
    # the footprint: a closed counter-clockwise ring in lon/lat whose bbox is the raster's
    ring = item["geometry"]["coordinates"][0]
    assert item["geometry"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) == 81
    area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring[:-1], ring[1:], strict=True))
    assert area > 0  # counter-clockwise (RFC 7946)
    expected = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    assert item["bbox"] == pytest.approx(list(expected), abs=1e-6)
    lon, lat = props["proj:centroid"]["lon"], props["proj:centroid"]["lat"]
    assert expected[0] < lon < expected[2] and expected[1] < lat < expected[3]


def test_item_options_and_a_remote_archive(dated, capsys):
    assert main(["stac", str(dated), "--href", "https://example.org/scene.grsc", "--id", "s1",
                 "--datetime", "2020-01-02T03:04:05+01:00"]) == 0
    item = json.loads(capsys.readouterr().out)
    assert item["id"] == "s1" and item["assets"]["data"]["href"] == \
        "https://example.org/scene.grsc"
    assert item["properties"]["datetime"] == "2020-01-02T02:04:05Z"
    with range_server(dated.parent) as server:
        url = f"{server.url}/scene.grsc"
        assert main(["stac", url]) == 0
        remote = json.loads(capsys.readouterr().out)
        assert remote["assets"]["data"]["href"] == url
        with georsic.open(dated) as archive:
            local = stac_item(archive, href=url)
        assert remote == local


def test_item_without_a_date_or_a_crs(tmp_path, capsys):
    src = DATA / "landsat_int16_custom_crs.tif"  # a CRS without an EPSG code
    georsic.compress(src, tmp_path / "l.grsc", quality=2, tile_size=64, overlap=16,
                     device="cpu")
    with georsic.open(tmp_path / "l.grsc") as archive:
        item = stac_item(archive)
        has_crs = archive.info.crs is not None
    props = item["properties"]
    assert props["georsic:datetime_from"] == "archive modification time"
    assert props["datetime"].endswith("Z")
    if has_crs:
        assert props["proj:code"] is None and props["proj:wkt2"]
    else:
        assert item["geometry"] is None and "bbox" not in item
    assert main(["stac", str(tmp_path / "l.grsc"), "--datetime", "yesterday"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RFC 3339" in err[0]
    assert main(["stac", str(tmp_path / "none.grsc")]) == 2
    assert "does not exist" in capsys.readouterr().err
