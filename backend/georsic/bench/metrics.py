"""Image quality metrics on 8-bit images (H, W, C): PSNR and MS-SSIM.

PSNR is computed from the mean squared error over all pixels and channels together
("PSNR over RGB"). MS-SSIM is that of Wang, Simoncelli and Bovik (2003) with the standard five
scale weights, an 11x11 Gaussian window (sigma 1.5, "valid" filtering) and K = (0.01, 0.03),
computed per channel and averaged over channels. It follows ``pytorch_msssim`` (the
implementation CompressAI uses) step for step, including its 2x2 average pooling with zero
padding of odd sizes, and agrees with it to about 1e-7; it is written with SciPy separable
filters because that is several times faster on a CPU.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d

#: The five MS-SSIM scale weights of Wang et al. (2003).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

#: MS-SSIM needs the smaller side to be larger than (win_size - 1) * 2**4.
MS_SSIM_MIN_SIDE = 161


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")


def mse(a: np.ndarray, b: np.ndarray) -> float:
    _check(a, b)
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB; ``inf`` for identical images."""
    m = mse(a, b)
    if m == 0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / m)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    c = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(c * c) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Separable filtering of (H, W, C) keeping only the fully covered ("valid") part."""
    h = len(win) // 2
    x = correlate1d(x, win, axis=0, mode="constant")[h:-h]
    return correlate1d(x, win, axis=1, mode="constant")[:, h:-h]


def _ssim_cs(x: np.ndarray, y: np.ndarray, win: np.ndarray, c1: float, c2: float
             ) -> tuple[np.ndarray, np.ndarray]:
    mu1 = _filter_valid(x, win)
    mu2 = _filter_valid(y, win)
    s11 = _filter_valid(x * x, win) - mu1 * mu1
    s22 = _filter_valid(y * y, win) - mu2 * mu2
    s12 = _filter_valid(x * y, win) - mu1 * mu2
    cs_map = (2.0 * s12 + c2) / (s11 + s22 + c2)
    ssim_map = ((2.0 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1)) * cs_map
    return ssim_map.mean(axis=(0, 1)), cs_map.mean(axis=(0, 1))


def _downsample(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling, odd sizes zero-padded by one on both sides (as pytorch_msssim)."""
    ph, pw = x.shape[0] % 2, x.shape[1] % 2
    if ph or pw:
        x = np.pad(x, ((ph, ph), (pw, pw), (0, 0)))
    x = x[: x.shape[0] // 2 * 2, : x.shape[1] // 2 * 2]
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def ms_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """MS-SSIM in [0, 1] of two (H, W, C) or (H, W) images; NaN when they are too small."""
    _check(a, b)
    if min(a.shape[0], a.shape[1]) < MS_SSIM_MIN_SIDE:
        return math.nan
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    if x.ndim == 2:
        x, y = x[:, :, None], y[:, :, None]
    win = _gaussian_window()
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    factors = []
    levels = len(MS_SSIM_WEIGHTS)
    for level in range(levels):
        ssim_c, cs_c = _ssim_cs(x, y, win, c1, c2)
        if level < levels - 1:
            factors.append(np.maximum(cs_c, 0.0))
            x, y = _downsample(x), _downsample(y)
    factors.append(np.maximum(ssim_c, 0.0))
    per_channel = np.prod(np.stack(factors) ** np.asarray(MS_SSIM_WEIGHTS)[:, None], axis=0)
    return float(per_channel.mean())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, -10 log10(1 - MS-SSIM), as used in learned-compression papers."""
    if math.isnan(value):
        return math.nan
    if value >= 1.0:
        return math.inf
    return -10.0 * math.log10(1.0 - value)


def bits_per_pixel(num_bytes: int, pixels: int) -> float:
    return num_bytes * 8.0 / pixels
