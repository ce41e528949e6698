"""``georsic bench view`` at a small size: the mosaic, the table and its pixel checks."""

from __future__ import annotations

import re
from argparse import Namespace

import numpy as np
import rasterio

import georsic
from georsic.bench import view


def test_mosaic_mirrors_the_source(tmp_path):
    out = view.make_mosaic(view.MOSAIC_SOURCE, 1000, tmp_path / "m.tif")
    with rasterio.open(view.MOSAIC_SOURCE) as src, rasterio.open(out) as mosaic:
        image, data = src.read(), mosaic.read()
        assert mosaic.crs == src.crs and mosaic.transform == src.transform
    w = image.shape[2]
    assert data.shape == (3, 1000, 1000)
    assert np.array_equal(data[:, :image.shape[1], :w], image[:, :, :w][:, :1000])
    assert np.array_equal(data[:, :200, w:w + 10], image[:, :200, ::-1][:, :, :10])


def test_bench_view_reports_every_figure(tmp_path, aerial, capsys):
    archive = tmp_path / "a.grsc"
    summary = georsic.compress(aerial, archive, quality=3, tile_size=128, overlap=16,
                               device="cpu", pyramid_levels=[4])
    out = tmp_path / "view.md"
    assert view.main(Namespace(archive=str(archive), input=None, size=0, quality=3.0,
                               tile_size=128, pyramid="auto", out=str(out))) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out.rstrip("\n") + "\n"
    for row in ("| open |", "| whole extent at 1024 x 1024 px, cold (pyramid level 1) |",
                "| full-resolution 160 x 160 window, cold |", "| the same window, warm |",
                "| one full-resolution tile's decode (1 thread) |"):
        assert re.search(re.escape(row) + r" [\d,]+ ms \|", text), row
    share = 100 * summary.pyramid_bytes / summary.bytes
    assert f"Pyramid: {summary.pyramid_bytes:,} of {summary.bytes:,} bytes ({share:.2f} %" \
        in text
    assert "overview True, window True" in text
