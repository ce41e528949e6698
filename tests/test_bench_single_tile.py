"""The single-tile coding the ablation benchmarks measure."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.windows import Window

from georsic.bench.single_tile import (
    TilePoint,
    bd_rate_of,
    code_single_tile,
    point_cells,
    quality_columns,
)
from georsic.codec import get_codec
from georsic.weights import find_model


def test_single_tile_point_counts_the_streams_over_the_real_pixels(aerial):
    with rasterio.open(aerial) as src:
        rgb = src.read(window=Window(0, 0, 96, 80)).transpose(1, 2, 0)
    codec = get_codec(find_model(), "cpu")
    low, high = (code_single_tile(codec, rgb, q) for q in (1.0, 6.0))
    assert 0 < low.bpp < high.bpp < 24
    assert 10 < low.psnr < high.psnr < 60
    streams = codec.encode(rgb.transpose(2, 0, 1).astype(np.float32) / 255.0, 1.0)
    assert low.bpp == 8 * sum(map(len, streams)) / (96 * 80)
    assert low.encode_seconds > 0


def test_table_helpers_format_points_and_compare_curves():
    curve = [TilePoint(0.1, 25.0, 1.0), TilePoint(0.2, 28.0, 1.0), TilePoint(0.4, 31.0, 1.0)]
    smaller = [TilePoint(p.bpp * 0.9, p.psnr, 1.0) for p in curve]
    assert bd_rate_of(curve, curve) == 0
    assert round(bd_rate_of(smaller, curve), 6) == -10.0
    assert point_cells(curve[:2]) == "0.1000 / 25.00 | 0.2000 / 28.00"
    assert quality_columns([0, 2.5]) == "q0 bpp / dB | q2.5 bpp / dB"
