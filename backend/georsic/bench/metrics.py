"""Image quality metrics on 8-bit images (H, W, C): PSNR and MS-SSIM.

PSNR is computed from the mean squared error over all pixels and channels together
("PSNR over RGB"). MS-SSIM is that of Wang, Simoncelli and Bovik (2003) with the standard five
scale weights, an 11x11 Gaussian window (sigma 1.5) and K = (0.01, 0.03), as implemented by
``pytorch_msssim`` (a dependency of CompressAI); it is computed per channel and averaged.
"""

from __future__ import annotations

import math

import numpy as np
import torch

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


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).to(torch.float64)[None]


def ms_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """MS-SSIM in [0, 1] of two (H, W, C) or (H, W) images; NaN when they are too small."""
    _check(a, b)
    if min(a.shape[0], a.shape[1]) < MS_SSIM_MIN_SIDE:
        return math.nan
    from pytorch_msssim import ms_ssim as _ms_ssim

    with torch.no_grad():
        v = _ms_ssim(
            _to_tensor(a),
            _to_tensor(b),
            data_range=data_range,
            size_average=True,
            weights=list(MS_SSIM_WEIGHTS),
        )
    return float(v)


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, -10 log10(1 - MS-SSIM), as used in learned-compression papers."""
    if math.isnan(value):
        return math.nan
    if value >= 1.0:
        return math.inf
    return -10.0 * math.log10(1.0 - value)


def bits_per_pixel(num_bytes: int, pixels: int) -> float:
    return num_bytes * 8.0 / pixels
