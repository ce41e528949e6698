"""The shipped default model really compresses, and tile seams do not show.

Both use a real aerial image that was held out from training (NEON OSBS, see
tests/data/ATTRIBUTION.md).  The floors are the measured figures of the shipped weights
(``georsic compress ...`` at the default quality 5, then ``georsic compare``) less a small
margin for floating-point differences between machines.
"""

from __future__ import annotations

import numpy as np
import rasterio
import torch
from testdata import DATA

import georsic
from georsic.bench.seams import seam_ratio
from georsic.codec import get_codec, pad_to_align
from georsic.weights import find_model

AERIAL = DATA / "osbs_aerial_rgb.tif"

#: The default quality of the shipped model on the held-out aerial image (measured with
#: elic-vr-s-v3: 0.6332 bpp, 21.40 dB; see README).
FLOOR_QUALITY = georsic.DEFAULT_QUALITY
FLOOR_MAX_BPP = 0.66
FLOOR_MIN_PSNR = 21.2


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


def test_padding_fills_with_the_channel_mean_and_keeps_the_image():
    image = torch.rand(1, 3, 70, 130)
    padded = pad_to_align(image)
    assert padded.shape == (1, 3, 128, 192)
    assert torch.equal(padded[..., :70, :130], image)
    means = image.mean(dim=(2, 3))[0]
    for channel in range(3):
        assert torch.allclose(padded[0, channel, 70:, :], means[channel])
        assert torch.allclose(padded[0, channel, :, 130:], means[channel])
    assert pad_to_align(padded) is padded  # aligned images are left alone


def test_mean_padding_spends_fewer_bits_than_replicated_edges():
    with rasterio.open(AERIAL) as src:
        image = src.read(window=((0, 200), (0, 200))).astype(np.float32) / 255.0  # pads to 256
    codec = get_codec(find_model(), "cpu")
    sizes, psnrs = {}, {}
    for padding in ("mean", "replicate"):
        streams = codec.encode(image, 4.0, padding=padding)
        decoded = codec.decode(streams, 200, 200, 4.0)
        sizes[padding] = sum(map(len, streams))
        psnrs[padding] = 10 * np.log10(1.0 / np.mean((decoded - image) ** 2))
    assert sizes["mean"] < 0.95 * sizes["replicate"]
    assert psnrs["mean"] > psnrs["replicate"] - 0.1
