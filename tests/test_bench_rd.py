"""The RD benchmark end to end on small images (georsic.bench.classical, georsic.bench.rd)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("imagecodecs")

from georsic.bench import rd  # noqa: E402
from georsic.bench.classical import build_codecs, run_point, sweep  # noqa: E402
from georsic.bench.images import BenchImage, load_image, write_geotiff  # noqa: E402

AERIAL = Path(__file__).parents[1] / "benchmarks" / "data" / "deepforest_OSBS_029.tif"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> BenchImage:
    """A 192x192 crop of a real held-out NEON aerial image, as a GeoTIFF."""
    full = load_image(AERIAL)
    crop = BenchImage("crop.tif", AERIAL, full.rgb[:192, :192].copy(), "uint8", 3,
                      "8-bit as is", full.crs, full.transform)
    path = write_geotiff(crop, tmp_path_factory.mktemp("rd") / "crop.tif")
    return load_image(path)


@pytest.mark.parametrize("key", ["jpeg", "webp", "jpeg2000", "jpegxl", "avif", "gtiff-jpeg",
                                 "gtiff-webp", "gdal-jp2"])
def test_every_codec_round_trips(small, key):
    codec = build_codecs()[key]
    lo = run_point(codec, small, codec.params[1])
    hi = run_point(codec, small, codec.params[-2])
    for p in (lo, hi):
        assert p["bytes"] > 0 and math.isfinite(p["psnr"]) and 0 < p["ms_ssim"] < 1
    # more bits, better quality
    assert hi["bpp"] > lo["bpp"]
    assert hi["psnr"] > lo["psnr"]


def test_gdal_file_counts_its_header(small):
    codecs = build_codecs()
    stream = run_point(codecs["jpeg"], small, 50)
    tiff = run_point(codecs["gtiff-jpeg"], small, 50)
    assert tiff["bytes"] > stream["bytes"]


def test_sweep_refines_sparse_grids(small):
    codec = build_codecs()["jpeg2000"]
    coarse = sweep(codec, small, params=(18, 30), rounds=0)
    fine = sweep(codec, small, params=(18, 30), rounds=2)
    assert len(coarse) == 2 and len(fine) > 2
    bpp = [p["bpp"] for p in fine]
    assert bpp == sorted(bpp)


def test_parse_qualities():
    assert rd.parse_qualities(None, 8) == [float(q) for q in range(8)]
    assert rd.parse_qualities("0..3", 8) == [0.0, 1.0, 2.0, 3.0]
    assert rd.parse_qualities("5,0.5,2..3", 8) == [0.5, 2.0, 3.0, 5.0]
    with pytest.raises(argparse.ArgumentTypeError):
        rd.parse_qualities("0..9", 8)


def test_add_parser_registers_rd():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what")
    rd.add_parser(sub)
    args = parser.parse_args(["rd", "--quick", "--qualities", "0,7", "--device", "cpu"])
    assert args.quick and args.qualities == "0,7" and args.func is rd._cmd


def test_classical_only_run_writes_outputs(small, tmp_path):
    result = rd.run(images=[small.path], out=tmp_path, codec_keys=["jpeg", "gtiff-jpeg"],
                    with_georsic=False, refine_rounds=0, log=lambda *a: None)
    assert (tmp_path / "rd.md").read_text().startswith("# Rate-distortion benchmark")
    data = json.loads((tmp_path / "rd.json").read_text())
    assert set(data["curves"]["crop.tif"]) == {"jpeg", "gtiff-jpeg"}
    assert data["speed"]["jpeg|cpu"]["encode_mps"] > 0
    assert "gtiff-jpeg" in data["gdal_overhead"]
    assert (tmp_path / "rd.png").stat().st_size > 1000
    assert result["bd"] == {}


def _fake_georsic_curve(points, factor):
    return [{**p, "bpp": p["bpp"] * factor} for p in points]


def test_bd_table_and_best_classical():
    pts = [{"bpp": r, "psnr": 20 + 4 * math.log(r / 0.05), "ms_ssim": 1 - 0.1 * math.exp(-r)}
           for r in (0.06, 0.1, 0.2, 0.35, 0.6, 1.0)]
    curves = {"jpeg": _fake_georsic_curve(pts, 1.5), "avif": pts,
              rd.GEORSIC: _fake_georsic_curve(pts, 0.7)}
    bd = rd.bd_table(curves)
    assert bd["avif"]["psnr_full"] == pytest.approx(-30.0, abs=1e-6)
    assert bd["jpeg"]["psnr_full"] == pytest.approx((0.7 / 1.5 - 1) * 100, abs=1e-6)
    key, value = rd.best_classical(bd)
    assert key == "avif" and value == pytest.approx(-30.0, abs=1e-6)
    # the envelope of the classical codecs is AVIF here
    assert bd["envelope"]["psnr_full"] == pytest.approx(-30.0, abs=1e-6)


@pytest.mark.slow
def test_run_with_georsic(small, tmp_path):
    georsic = pytest.importorskip("georsic")
    try:
        georsic.compress  # noqa: B018
    except AttributeError:
        pytest.skip("georsic API not available")
    result = rd.run(images=[small.path], qualities=[0.0, 7.0], out=tmp_path,
                    codec_keys=["jpeg2000"], gpu_speed=False, refine_rounds=0,
                    log=lambda *a: None)
    g = result["curves"]["crop.tif"][rd.GEORSIC]
    assert len(g) == 2 and g[1]["bpp"] > g[0]["bpp"] and g[1]["psnr"] > g[0]["psnr"]
    assert "jpeg2000" in result["bd"]["crop.tif"]
    assert "| GeoRSIC | cpu |" in (tmp_path / "rd.md").read_text()
    assert np.isfinite(result["speed"]["georsic|cpu"]["encode_mps"])
