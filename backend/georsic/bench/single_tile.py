"""One image coded as a single tile: the unit the ablation benchmarks (``benchmarks/``) measure.

Only the rANS streams are counted (no archive header), over the image's real pixels.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from georsic.bench.bdrate import bd_rate
from georsic.bench.metrics import psnr
from georsic.codec import TileCodec


@dataclass(frozen=True)
class TilePoint:
    """Rate, distortion and encoding time of one coding."""

    bpp: float
    psnr: float
    encode_seconds: float


def code_single_tile(codec: TileCodec, rgb: np.ndarray, quality: float, padding: str = "mean",
                     refine: int = 0) -> TilePoint:
    """Code (H, W, 3) uint8 ``rgb`` as one tile and decode it back."""
    image = rgb.transpose(2, 0, 1).astype(np.float32) / 255.0
    h, w = image.shape[1:]
    start = time.perf_counter()
    streams = codec.encode(image, quality, padding=padding, refine=refine)
    seconds = time.perf_counter() - start
    decoded = codec.decode(streams, h, w, quality)
    rgb_hat = np.clip(np.rint(decoded * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return TilePoint(8 * sum(map(len, streams)) / (h * w), psnr(rgb, rgb_hat), seconds)


def bd_rate_of(points: Sequence[TilePoint], base: Sequence[TilePoint]) -> float:
    """BD-rate (PSNR) in % of the curve ``points`` against ``base``; NaN where undetermined."""
    return bd_rate([p.bpp for p in base], [p.psnr for p in base],
                   [p.bpp for p in points], [p.psnr for p in points])


def quality_columns(qualities: Sequence[float]) -> str:
    """Markdown header cells, one per quality level."""
    return " | ".join(f"q{q:g} bpp / dB" for q in qualities)


def point_cells(points: Sequence[TilePoint]) -> str:
    """Markdown cells ``bpp / dB``, one per point."""
    return " | ".join(f"{p.bpp:.4f} / {p.psnr:.2f}" for p in points)
