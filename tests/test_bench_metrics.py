"""Metrics and BD-rate of the RD benchmark (georsic.bench.metrics, georsic.bench.bdrate)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from georsic.bench import bdrate
from georsic.bench.images import to_rgb8
from georsic.bench.metrics import ms_ssim, ms_ssim_db, mse, psnr


def _image(h: int = 200, w: int = 224, seed: int = 0) -> np.ndarray:
    """A smooth-ish 8-bit RGB image (noise is not what MS-SSIM is made for)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0)
    img = np.stack([base, base[::-1], base[:, ::-1]], axis=-1) + rng.normal(0, 8, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------- PSNR


def test_psnr_of_known_mse():
    a = np.full((10, 10, 3), 100, dtype=np.uint8)
    b = a + 5  # MSE 25
    assert mse(a, b) == 25.0
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-12)
    assert psnr(a, b) == pytest.approx(34.1514, abs=1e-4)


def test_psnr_mixed_errors_over_all_channels():
    a = np.zeros((2, 2, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] = 12  # one value off by 12 among 12: MSE = 144 / 12 = 12
    assert mse(a, b) == 12.0
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 12))


def test_psnr_identical_is_inf_and_shapes_must_match():
    a = _image(32, 32)
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError):
        psnr(a, a[:-1])


# ---------------------------------------------------------------------------- MS-SSIM


def test_ms_ssim_identical_is_one():
    a = _image()
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim_db(1.0) == math.inf


def test_ms_ssim_decreases_with_distortion():
    a = _image()
    rng = np.random.default_rng(1)
    values = []
    for sigma in (2, 8, 25):
        b = np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).astype(np.uint8)
        values.append(ms_ssim(a, b))
    assert 1.0 > values[0] > values[1] > values[2] > 0.0
    dbs = [ms_ssim_db(v) for v in values]
    assert dbs[0] > dbs[1] > dbs[2] > 0


def test_ms_ssim_matches_pytorch_msssim_odd_size():
    torch = pytest.importorskip("torch")
    pm = pytest.importorskip("pytorch_msssim")
    a = _image(181, 203, seed=3)
    rng = np.random.default_rng(4)
    b = np.clip(a + rng.normal(0, 10, a.shape), 0, 255).astype(np.uint8)

    def t(x):
        return torch.from_numpy(x.transpose(2, 0, 1).copy()).double()[None]

    ref = float(pm.ms_ssim(t(a), t(b), data_range=255))
    assert ms_ssim(a, b) == pytest.approx(ref, abs=1e-5)


def test_ms_ssim_too_small_is_nan():
    a = _image(100, 300)
    assert math.isnan(ms_ssim(a, a))


# ---------------------------------------------------------------------------- BD-rate

RATES = [0.08, 0.15, 0.25, 0.4, 0.65, 1.0, 1.6]


def _psnr_curve(rates, gain_db=0.0):
    # a concave, realistic curve: PSNR = 20 + 4.5 * ln(bpp / 0.05)
    return [20.0 + 4.5 * math.log(r / 0.05) + gain_db for r in rates]


def test_bd_rate_against_itself_is_zero():
    d = _psnr_curve(RATES)
    assert bdrate.bd_rate(RATES, d, RATES, d) == pytest.approx(0.0, abs=1e-9)
    w = bdrate.bd_rate_window(RATES, d, RATES, d, 0.1, 0.5)
    assert w.percent == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_of_twenty_percent_fewer_bits():
    d = _psnr_curve(RATES)
    fewer = [0.8 * r for r in RATES]
    assert bdrate.bd_rate(RATES, d, fewer, d) == pytest.approx(-20.0, abs=1e-6)
    # and the anchor needs 25 % more bits than the test codec
    assert bdrate.bd_rate(fewer, d, RATES, d) == pytest.approx(25.0, abs=1e-6)
    w = bdrate.bd_rate_window(RATES, d, fewer, d, 0.1, 0.5)
    assert w.percent == pytest.approx(-20.0, abs=1e-6)
    assert w.rate_lo == pytest.approx(0.1, rel=1e-6)
    assert w.rate_hi == pytest.approx(0.5, rel=1e-6)


def test_bd_rate_of_a_psnr_gain_on_a_log_curve():
    # +1 dB on PSNR = 20 + 4.5 ln(R/0.05) is the same rate times exp(-1/4.5)
    d = _psnr_curve(RATES)
    better = _psnr_curve(RATES, gain_db=1.0)
    expected = (math.exp(-1 / 4.5) - 1) * 100  # about -19.9 %
    assert bdrate.bd_rate(RATES, d, RATES, better) == pytest.approx(expected, abs=0.05)
    assert bdrate.bd_psnr(RATES, d, RATES, better) == pytest.approx(1.0, abs=1e-9)


def test_bd_rate_without_overlap_is_nan():
    d = _psnr_curve(RATES)
    assert math.isnan(bdrate.bd_rate(RATES, d, RATES, [x + 50 for x in d]))
    assert math.isnan(bdrate.bd_rate(RATES[:1], d[:1], RATES, d))


def test_bd_rate_window_is_clipped_to_anchor_rates():
    # anchor only from 0.25 bpp: window 0.1-0.5 becomes 0.25-0.5
    d = _psnr_curve(RATES)
    w = bdrate.bd_rate_window(RATES[2:], d[2:], [0.8 * r for r in RATES], d, 0.1, 0.5)
    assert w.percent == pytest.approx(-20.0, abs=1e-6)
    assert w.rate_lo == pytest.approx(0.25, rel=1e-6)
    assert w.rate_hi == pytest.approx(0.5, rel=1e-6)


def test_bd_rate_window_sees_only_the_window():
    # the test codec is 20 % cheaper above 0.6 bpp and equal below: over the anchor's
    # 0.1-0.25 bpp (PCHIP pieces there depend only on the equal points) BD-rate is 0
    d = _psnr_curve(RATES)
    test_r = [r if r < 0.6 else 0.8 * r for r in RATES]
    w = bdrate.bd_rate_window(RATES, d, test_r, d, 0.1, 0.25)
    assert w.percent == pytest.approx(0.0, abs=1e-9)
    full = bdrate.bd_rate(RATES, d, test_r, d)
    assert -20 < full < -5


def test_rd_front_drops_dominated_points_and_sorts():
    r, d = bdrate.rd_front([0.5, 0.1, 0.3, 0.3, 0.6, 0.2, math.nan],
                           [30, 20, 25, 24, 29, 26, 40])
    # 0.3/25 and 0.3/24 are beaten by 0.2/26; 0.6/29 by 0.5/30; NaN dropped
    assert r.tolist() == [0.1, 0.2, 0.5]
    assert d.tolist() == [20, 26, 30]


def test_dist_and_rate_at_are_inverse_and_exact_at_samples():
    d = _psnr_curve(RATES)
    assert bdrate.dist_at_rate(RATES, d, 0.25) == pytest.approx(d[2])
    assert math.isnan(bdrate.dist_at_rate(RATES, d, 0.05))
    q = bdrate.dist_at_rate(RATES, d, 0.3)
    assert bdrate.rate_at_dist(RATES, d, q) == pytest.approx(0.3, rel=1e-3)


# ------------------------------------------------------------------ 8-bit mapping


def test_uint16_single_band_is_mapped_by_percentiles_and_repeated():
    rng = np.random.default_rng(0)
    pan = rng.integers(100, 2000, (1, 64, 80)).astype(np.uint16)
    rgb, note = to_rgb8(pan)
    assert rgb.shape == (64, 80, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    lo, hi = np.percentile(pan, [0.5, 99.5])
    assert rgb[..., 0][pan[0] <= lo].max() == 0
    assert rgb[..., 0][pan[0] >= hi].min() == 255
    assert "percentiles" in note and "repeated" in note


def test_uint8_rgb_is_used_as_is():
    a = _image(20, 30).transpose(2, 0, 1)
    rgb, note = to_rgb8(a)
    assert (rgb == a.transpose(1, 2, 0)).all()
    assert note == "8-bit as is"
