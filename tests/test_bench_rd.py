"""The RD benchmark end to end on small images (georsic.bench.classical, georsic.bench.rd)."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("imagecodecs")

from georsic.bench import classical, rd  # noqa: E402
from georsic.bench.classical import (  # noqa: E402
    CODESTREAM_KEYS,
    GDAL_FILE_KEYS,
    build_codecs,
    run_point,
    sweep,
    unavailable_codecs,
)
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


@pytest.mark.parametrize("key", CODESTREAM_KEYS + GDAL_FILE_KEYS)
def test_every_codec_round_trips(small, key):
    if key in unavailable_codecs():
        pytest.skip(f"{key}: {unavailable_codecs()[key][1]}")
    codec = build_codecs()[key]
    lo = run_point(codec, small, codec.params[1])
    hi = run_point(codec, small, codec.params[-2])
    for p in (lo, hi):
        assert p["bytes"] > 0 and math.isfinite(p["psnr"]) and 0 < p["ms_ssim"] < 1
    # more bits, better quality
    assert hi["bpp"] > lo["bpp"]
    assert hi["psnr"] > lo["psnr"]


def test_every_codec_is_available_or_says_why():
    codecs, missing = build_codecs(), unavailable_codecs()
    assert set(codecs) | set(missing) == set(CODESTREAM_KEYS + GDAL_FILE_KEYS)
    assert not set(codecs) & set(missing)
    for label, reason in missing.values():
        assert label and len(reason) > 10
    # the ones GDAL and imagecodecs of the pinned environment always have
    assert {"jpeg", "webp", "jpeg2000", "gtiff-jpeg", "gtiff-webp", "gdal-jp2"} <= set(codecs)


def test_gdal_probe_reports_missing_compression():
    bogus = classical.ClassicalCodec(
        "gtiff-bogus", "bogus", "GDAL", "", "q", (1, 2),
        lambda img, q: classical._gdal_encode(img, "GTiff", {"compress": "NO_SUCH_CODEC"}),
        classical._gdal_decode, "file")
    reason = classical._probe_gdal(bogus)
    assert reason is not None and "GDAL" in reason
    assert classical._probe_gdal(build_codecs()["gtiff-jpeg"]) is None


def test_avif_through_pillow(small):
    codec, why = classical.avif_codec(backends=("pillow",))
    if codec is None:
        pytest.skip(why)
    assert "Pillow" in codec.library
    lo = run_point(codec, small, 10)
    hi = run_point(codec, small, 60)
    assert 0 < lo["bpp"] < hi["bpp"] and lo["psnr"] < hi["psnr"]


def test_avif_missing_everywhere_is_reported(monkeypatch):
    monkeypatch.setattr(classical, "_imagecodecs_missing", lambda name: f"no {name} here")
    monkeypatch.setattr(classical, "_pillow_avif_missing", lambda: "no Pillow AVIF here")
    codec, why = classical.avif_codec()
    assert codec is None
    assert why == "no AVIF here; no Pillow AVIF here"


def test_unavailable_codec_is_listed_not_fatal(small, tmp_path, monkeypatch):
    available = {k: v for k, v in build_codecs().items() if k != "avif"}
    monkeypatch.setattr(rd, "build_codecs", lambda: available)
    monkeypatch.setattr(rd, "unavailable_codecs", lambda: {"avif": ("AVIF", "libavif absent")})
    result = rd.run(images=[small.path], out=tmp_path, codec_keys=["jpeg", "avif"],
                    with_georsic=False, refine_rounds=0, log=lambda *a: None)
    assert set(result["curves"]["crop.tif"]) == {"jpeg"}
    assert result["unavailable"] == {"avif": {"label": "AVIF", "reason": "libavif absent"}}
    md = (tmp_path / "rd.md").read_text()
    assert "| avif | AVIF | **not available here**: libavif absent |" in md
    with pytest.raises(SystemExit, match="unknown codec"):
        rd.run(images=[small.path], out=tmp_path, codec_keys=["nope"], with_georsic=False,
               log=lambda *a: None)


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


def test_command_line_as_typed():
    assert rd.command_line(["/x/.venv/bin/georsic", "bench", "rd", "--out", "a b"]) == \
        "georsic bench rd --out 'a b'"
    assert rd.command_line(["benchmarks/rd.py", "--quick"]) == "python benchmarks/rd.py --quick"


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


def test_target_summary_is_undetermined_without_overlap():
    ok = {"psnr_window": -30.0}
    bd = {"a.tif": {"jpeg": {"psnr_window": -50.0}, "avif": ok, "envelope": ok},
          "b.tif": {"jpeg": {"psnr_window": -40.0}, "avif": {"psnr_window": -10.0},
                    "envelope": {"psnr_window": -10.0}}}
    t = rd.target_summary(bd, ["a.tif", "b.tif"])
    assert t["per_image"]["a.tif"][:2] == ("avif", -30.0)
    assert t["mean"] == pytest.approx(-20.0) and t["status"] == "met"
    assert rd.target_summary(bd, ["b.tif"])["status"] == "not met"
    # AVIF does not overlap on b: its hardest codec is unknown, no verdict from JPEG alone
    bd["b.tif"]["avif"] = {"psnr_window": math.nan}
    t = rd.target_summary(bd, ["a.tif", "b.tif"])
    assert t["per_image"]["b.tif"][2] == ["avif"] and math.isnan(t["per_image"]["b.tif"][1])
    assert t["status"] == "undetermined" and t["determined"] == 1
    assert t["mean"] == pytest.approx(-30.0)


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


@pytest.mark.slow
def test_cli_quick_run(small, tmp_path, monkeypatch, capsys):
    """`georsic bench rd --quick` through the real CLI, recording its command line."""
    from georsic import cli

    argv = ["bench", "rd", "--quick", "--images", str(small.path), "--out", str(tmp_path),
            "--codecs", "jpeg2000,gtiff-jpeg", "--no-gpu-speed"]
    monkeypatch.setattr("sys.argv", ["/somewhere/bin/georsic", *argv])
    assert cli.main() == 0
    data = json.loads((tmp_path / "rd.json").read_text())
    assert data["meta"]["command"] == "georsic " + " ".join(argv)
    assert data["meta"]["qualities"] == [0.0, 2.0, 4.0, 6.0, 7.0]
    g = data["curves"]["crop.tif"][rd.GEORSIC]
    assert [p["param"] for p in g] == [0.0, 2.0, 4.0, 6.0, 7.0]
    assert all(p["bytes"] > 0 and p["psnr"] > 10 for p in g)
    assert g[-1]["bpp"] > g[0]["bpp"]
    assert set(data["bd"]["crop.tif"]) >= {"jpeg2000", "gtiff-jpeg", "envelope"}
    assert data["target"]["status"] in {"met", "not met", "undetermined"}
    md = (tmp_path / "rd.md").read_text()
    assert "    georsic bench rd --quick" in md and "## Speed" in md
    assert (tmp_path / "rd.png").stat().st_size > 1000
    assert "# Rate-distortion benchmark" in capsys.readouterr().out


def test_cli_help_lists_rd(capsys):
    from georsic import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "rd", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "--qualities" in out and "--no-gpu-speed" in out


def test_codecs_without_imagecodecs_leave_gdal_files_and_say_why(tmp_path):
    """A lent GPU machine may carry rasterio but not imagecodecs: GeoRSIC and the GDAL files
    still run there, and the codestreams are listed as unavailable with the reason."""
    script = ("import json, sys\n"
              "sys.modules['imagecodecs'] = None  # any import of it now fails\n"
              "from georsic.bench.classical import build_codecs, unavailable_codecs\n"
              "print(json.dumps([sorted(build_codecs()), unavailable_codecs()]))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    running, missing = json.loads(result.stdout.splitlines()[-1])
    assert {"gtiff-jpeg", "gtiff-webp"} <= set(running)
    for key in ("jpeg", "webp", "jpeg2000", "jpegxl"):
        assert key not in running and "imagecodecs is not installed" in missing[key][1]
