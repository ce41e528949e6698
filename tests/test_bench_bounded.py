"""``georsic bench bounded``: its table (every cell checked against its bound) and its curve
from quality 0 to lossless (``--curve``)."""

from __future__ import annotations

import math

from testdata import aerial_crop

from georsic.bench import curve
from georsic.cli import main


def test_table_has_every_codec_within_its_bound(tmp_path, capsys):
    image = aerial_crop(tmp_path / "crop.tif", 96, 80)
    out = tmp_path / "bounded.md"
    assert main(["bench", "bounded", str(image), "--bounds", "0", "3", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| crop.tif")]
    codecs = {row.split(" | ")[1] for row in rows}
    assert {"JPEG-LS (CharLS, NEAR=D)", "GeoRSIC (exact base + correction)",
            "AVIF base + GeoRSIC correction"} <= codecs
    assert not any("MISSED" in row for row in rows)


def test_curve_runs_from_quality_0_to_lossless(tmp_path):
    image = aerial_crop(tmp_path / "crop.tif", 96, 80)
    prefix = tmp_path / "curve"
    assert main(["bench", "bounded", str(image), "--bounds", "0", "4", "--curve",
                 str(prefix)]) == 0
    text = prefix.with_suffix(".md").read_text()
    assert "| GeoRSIC | q 0 |" in text and "| GeoRSIC | lossless [" in text
    for codec in ("JPEG XL", "AVIF", "JPEG 2000"):
        assert f"| {codec} |" in text
    assert prefix.with_suffix(".png").stat().st_size > 10_000
    points = curve.curves([image], (0, 4), lambda _: None)["crop.tif"]
    mine = [p for p in points if p["codec"] == "GeoRSIC"]
    lossless = [p for p in points if "lossless" in p["setting"] or "reversible" in p["setting"]]
    assert len(lossless) == 4 and all(math.isinf(p["psnr"]) for p in lossless)
    # GeoRSIC's curve rises with the rate: each bounded point above every lossy quality
    lossy = [p["psnr"] for p in mine if p["setting"].startswith("q ")]
    bounded = [p["psnr"] for p in mine if p["setting"].startswith("D ")]
    assert len(lossy) == len(curve.QUALITIES) and min(bounded) > max(lossy)
