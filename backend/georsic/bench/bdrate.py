"""Bjontegaard delta rate (BD-rate) and delta PSNR.

The method is the piecewise-cubic one used by JVET/VCEG (VCEG-AL22 and later, the
``bdrate`` of the common test conditions): for each codec, log(rate) is interpolated as a
function of the distortion metric (PSNR in dB, or MS-SSIM in dB) with a monotone piecewise
cubic Hermite interpolant (PCHIP, Fritsch-Carlson), both are integrated over the distortion
interval where the two curves overlap, and the mean log-rate difference is turned into a
percentage: ``BD-rate = exp(mean(log R_test - log R_anchor)) - 1``. Negative means the test
codec needs fewer bits than the anchor for the same quality. No extrapolation is done.

Before interpolation, each curve is reduced to its rate-distortion front (the points no
other point beats in both rate and quality), which makes it strictly increasing in both.

``bd_rate_window`` restricts the distortion interval to the qualities the anchor reaches
between two rates (e.g. 0.1-0.5 bpp), intersected with the overlap of the two curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator


def rd_front(rates: Sequence[float], dists: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The points of a curve no other point beats, sorted; strictly increasing in both."""
    r = np.asarray(rates, dtype=np.float64)
    d = np.asarray(dists, dtype=np.float64)
    ok = np.isfinite(r) & np.isfinite(d) & (r > 0)
    r, d = r[ok], d[ok]
    order = np.lexsort((-d, r))  # by rate, then best quality first
    keep_r, keep_d = [], []
    best = -math.inf
    for i in order:
        if d[i] > best:
            if keep_r and r[i] == keep_r[-1]:
                continue
            keep_r.append(r[i])
            keep_d.append(d[i])
            best = d[i]
    return np.asarray(keep_r), np.asarray(keep_d)


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    return max(a.min(), b.min()), min(a.max(), b.max())


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_dist: Sequence[float],
    test_rate: Sequence[float],
    test_dist: Sequence[float],
    dist_range: tuple[float, float] | None = None,
) -> float:
    """BD-rate of ``test`` against ``anchor`` in percent; NaN if the curves do not overlap."""
    ar, ad = rd_front(anchor_rate, anchor_dist)
    tr, td = rd_front(test_rate, test_dist)
    if len(ar) < 2 or len(tr) < 2:
        return math.nan
    lo, hi = _overlap(ad, td)
    if dist_range is not None:
        lo, hi = max(lo, dist_range[0]), min(hi, dist_range[1])
    if not hi > lo:
        return math.nan
    fa = PchipInterpolator(ad, np.log(ar))
    ft = PchipInterpolator(td, np.log(tr))
    diff = (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
    return float((math.exp(diff) - 1.0) * 100.0)


def bd_psnr(
    anchor_rate: Sequence[float],
    anchor_dist: Sequence[float],
    test_rate: Sequence[float],
    test_dist: Sequence[float],
) -> float:
    """Mean quality gain (dB) of ``test`` over ``anchor`` over the overlapping log-rate range."""
    ar, ad = rd_front(anchor_rate, anchor_dist)
    tr, td = rd_front(test_rate, test_dist)
    if len(ar) < 2 or len(tr) < 2:
        return math.nan
    la, lt = np.log(ar), np.log(tr)
    lo, hi = _overlap(la, lt)
    if not hi > lo:
        return math.nan
    fa = PchipInterpolator(la, ad)
    ft = PchipInterpolator(lt, td)
    return float((ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo))


def dist_at_rate(rates: Sequence[float], dists: Sequence[float], rate: float) -> float:
    """Quality at ``rate``, PCHIP-interpolated in log-rate; NaN outside the measured range."""
    r, d = rd_front(rates, dists)
    if len(r) == 0 or not (r[0] <= rate <= r[-1]):
        return math.nan
    if len(r) == 1:
        return float(d[0])
    return float(PchipInterpolator(np.log(r), d)(math.log(rate)))


def rate_at_dist(rates: Sequence[float], dists: Sequence[float], dist: float) -> float:
    """Rate needed for quality ``dist`` (PCHIP in log-rate); NaN outside the measured range."""
    r, d = rd_front(rates, dists)
    if len(r) == 0 or not (d[0] <= dist <= d[-1]):
        return math.nan
    if len(r) == 1:
        return float(r[0])
    return float(math.exp(PchipInterpolator(d, np.log(r))(dist)))


@dataclass
class WindowBD:
    """A BD-rate restricted to an anchor rate window, with the interval actually used."""

    percent: float
    dist_lo: float = math.nan
    dist_hi: float = math.nan
    #: Anchor rates at the two ends of the distortion interval used.
    rate_lo: float = math.nan
    rate_hi: float = math.nan

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in self.__dict__.items()}


def bd_rate_window(
    anchor_rate: Sequence[float],
    anchor_dist: Sequence[float],
    test_rate: Sequence[float],
    test_dist: Sequence[float],
    rate_lo: float = 0.1,
    rate_hi: float = 0.5,
) -> WindowBD:
    """BD-rate over the anchor's qualities between ``rate_lo`` and ``rate_hi``.

    The distortion interval is [D_anchor(rate_lo), D_anchor(rate_hi)], clipped to the
    anchor's measured rates and to the overlap with the test curve; the anchor rates at the
    ends of the interval finally used are returned with the result.
    """
    ar, ad = rd_front(anchor_rate, anchor_dist)
    tr, td = rd_front(test_rate, test_dist)
    if len(ar) < 2 or len(tr) < 2:
        return WindowBD(math.nan)
    lo_r, hi_r = max(rate_lo, ar[0]), min(rate_hi, ar[-1])
    if not hi_r > lo_r:
        return WindowBD(math.nan)
    d_lo = dist_at_rate(ar, ad, lo_r)
    d_hi = dist_at_rate(ar, ad, hi_r)
    lo, hi = _overlap(ad, td)
    lo, hi = max(lo, d_lo), min(hi, d_hi)
    if not hi > lo:
        return WindowBD(math.nan)
    pct = bd_rate(ar, ad, tr, td, dist_range=(lo, hi))
    return WindowBD(pct, lo, hi, rate_at_dist(ar, ad, lo), rate_at_dist(ar, ad, hi))
