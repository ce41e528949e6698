"""Choosing the quality that meets a target PSNR or bit rate.

GeoRSIC's quality is continuous (gain interpolation between trained levels), and both the rate
and the PSNR grow with it.  :func:`search_quality` searches it against a measurement, which
:func:`georsic.api.fit_quality` makes by coding sample windows of the raster
(:func:`sample_windows`) and decoding them again: the whole raster when it is small, else a
spread of windows.  A target PSNR gets the lowest quality that reaches it, a target bit rate the
highest quality that stays within it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

#: Pixels coded per probe at most: about a second on two CPU cores with the shipped model.
SAMPLE_PIXELS = 2**19
#: Edge of the sample windows of a raster larger than SAMPLE_PIXELS.
SAMPLE_WINDOW = 256
#: Probes after the two ends at most; the search also stops at a bracket of 7 / 2**6 = 0.11.
SEARCH_STEPS = 6
#: A probe this close to the target, on the right side of it, ends the search.
CLOSE_DB = 0.1
CLOSE_RATE = 0.02


@dataclass(frozen=True)
class Probe:
    """Rate and PSNR of the sample at one quality (the rate without the archive's header)."""

    quality: float
    bpp: float
    psnr: float


@dataclass(frozen=True)
class QualityFit:
    """The quality chosen for a target, what the sample measured there, and whether the
    target was reached (False: the closest end of the range, 0 or the top, was taken)."""

    quality: float
    bpp: float
    psnr: float
    reached: bool
    probes: int
    target_psnr: float | None = None
    target_bpp: float | None = None

    def to_dict(self) -> dict:
        """For an archive's header (``codec.fit``); an unreachable PSNR is stored as null."""
        return {"target_psnr": self.target_psnr, "target_bpp": self.target_bpp,
                "reached": self.reached, "psnr": self.psnr if math.isfinite(self.psnr) else None,
                "bpp": self.bpp, "probes": self.probes}


def sample_windows(width: int, height: int, pixels: int = SAMPLE_PIXELS,
                   edge: int = SAMPLE_WINDOW) -> list[tuple[int, int, int, int]]:
    """(col_off, row_off, width, height) of the windows to probe, spread over the raster.

    The whole raster when it has at most ``pixels``; else about ``pixels // edge**2`` windows
    of ``edge`` pixels on an even grid shaped like the raster (clipped to it).
    """
    if width * height <= pixels:
        return [(0, 0, width, height)]
    count = max(1, pixels // (edge * edge))
    cols = max(1, min(round(math.sqrt(count * width / height)), count, math.ceil(width / edge)))
    rows = max(1, min(round(count / cols), math.ceil(height / edge)))
    w, h = min(edge, width), min(edge, height)
    windows = []
    for r in range(rows):
        for c in range(cols):
            x = round((c + 0.5) * width / cols - w / 2)
            y = round((r + 0.5) * height / rows - h / 2)
            windows.append((min(max(x, 0), width - w), min(max(y, 0), height - h), w, h))
    return windows


def search_quality(measure: Callable[[float], Probe], *, target_psnr: float | None = None,
                   target_bpp: float | None = None, top: float = 7.0,
                   steps: int = SEARCH_STEPS) -> QualityFit:
    """Search the quality in ``[0, top]`` for exactly one of the two targets.

    ``measure(quality)`` codes the sample; PSNR and log-rate are taken to grow with quality,
    nearly linearly.  After the two ends, each step probes where the line between the bracket's
    ends meets the target (kept at least a tenth of the bracket from either end); the search
    stops after ``steps`` more probes, at a bracket of ``top / 2**steps``, or at a probe
    within :data:`CLOSE_DB` dB or :data:`CLOSE_RATE` of the target on the right side of it.
    """
    if (target_psnr is None) == (target_bpp is None):
        raise ValueError("give exactly one of target_psnr and target_bpp")
    probes = 0
    targets = (target_psnr, target_bpp)

    def probe(quality: float) -> Probe:
        nonlocal probes
        probes += 1
        return measure(quality)

    if target_psnr is not None:
        def value(p: Probe) -> float:
            return p.psnr

        def meets(p: Probe) -> bool:
            return p.psnr >= target_psnr

        def close(p: Probe) -> bool:
            return p.psnr - target_psnr <= CLOSE_DB
        goal = target_psnr
        # the lowest quality that meets the PSNR: `good` is the high end, `bad` the low end
        good_end, bad_end = top, 0.0
    else:
        def value(p: Probe) -> float:
            return math.log(max(p.bpp, 1e-9))

        def meets(p: Probe) -> bool:
            return p.bpp <= target_bpp

        def close(p: Probe) -> bool:
            return p.bpp >= target_bpp * (1 - CLOSE_RATE)
        goal = math.log(target_bpp)
        good_end, bad_end = 0.0, top
    good = probe(good_end)
    if not meets(good):
        return QualityFit(good.quality, good.bpp, good.psnr, False, probes, *targets)
    bad = probe(bad_end)
    if meets(bad):
        return QualityFit(bad.quality, bad.bpp, bad.psnr, True, probes, *targets)
    resolution = top / 2**steps
    while probes < steps + 2 and abs(good.quality - bad.quality) > resolution \
            and not close(good):
        span = value(good) - value(bad)
        share = (goal - value(bad)) / span if math.isfinite(span) and span else 0.5
        share = min(max(share, 0.1), 0.9)
        middle = probe(bad.quality + share * (good.quality - bad.quality))
        if meets(middle):
            good = middle
        else:
            bad = middle
    return QualityFit(good.quality, good.bpp, good.psnr, True, probes, *targets)
