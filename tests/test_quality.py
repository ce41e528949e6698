"""The shipped default model really compresses, and tile seams do not show.

Both use a real aerial image that was held out from training (NEON OSBS, see
tests/data/ATTRIBUTION.md).  The floors are the measured figures of the shipped weights
(``georsic compress ...`` at the default quality 5, then ``georsic compare``) less a small
margin for floating-point differences between machines.
"""

from __future__ import annotations

import numpy as np
import rasterio
from testdata import DATA

import georsic
from georsic.bench.seams import seam_ratio

AERIAL = DATA / "osbs_aerial_rgb.tif"

#: The default quality of the shipped model on the held-out aerial image (measured: 0.8387 bpp,
#: 21.12 dB; see README).
FLOOR_QUALITY = georsic.DEFAULT_QUALITY
FLOOR_MAX_BPP = 0.88
FLOOR_MIN_PSNR = 20.9


def _valid_psnr(source, decoded) -> float:
    with rasterio.open(source) as a, rasterio.open(decoded) as b:
        original = a.read().astype(np.float64)
        restored = b.read().astype(np.float64)
        valid = a.dataset_mask() > 0
    mse = ((original - restored) ** 2)[:, valid].mean()
    return float(10 * np.log10(255.0**2 / mse))


def test_default_model_meets_its_rate_distortion_floor(tmp_path):
    summary = georsic.compress(AERIAL, tmp_path / "a.grsc", quality=FLOOR_QUALITY)
    georsic.decompress(tmp_path / "a.grsc", tmp_path / "b.tif")
    psnr = _valid_psnr(AERIAL, tmp_path / "b.tif")
    # 24-bit RGB: anything below a tenth of the raw size at this PSNR is real compression.
    assert summary.bpp <= FLOOR_MAX_BPP
    assert psnr >= FLOOR_MIN_PSNR


def test_tile_borders_within_ten_percent_of_interior():
    blended = seam_ratio(AERIAL, quality=3, tile_size=128, overlap=16)
    assert blended["ratio"] <= 1.10
    # the measure does see seams: without overlap the borders are visibly worse
    hard = seam_ratio(AERIAL, quality=3, tile_size=128, overlap=0)
    assert hard["ratio"] > blended["ratio"]
