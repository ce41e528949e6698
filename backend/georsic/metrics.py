"""Quality of a decoded raster against its source."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from georsic.errors import InputError


def psnr(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def compare_rasters(reference: str | Path, test: str | Path) -> dict:
    """PSNR over pixels valid in both rasters; the peak is 255 for 8-bit data, else the
    reference's valid range."""
    from georsic.source import open_raster

    with open_raster(reference) as a, open_raster(test) as b:
        if (a.count, a.height, a.width) != (b.count, b.height, b.width):
            raise InputError(f"{test} ({b.count}x{b.height}x{b.width}) does not match "
                             f"{reference} ({a.count}x{a.height}x{a.width})")
        ref, out = a.read().astype(np.float64), b.read().astype(np.float64)
        valid = (a.read_masks() > 0) & (b.read_masks() > 0)
        peak = 255.0 if a.dtypes[0] == "uint8" else float(np.ptp(ref[valid])) or 1.0
    bands = [psnr(ref[i][valid[i]], out[i][valid[i]], peak) for i in range(ref.shape[0])]
    return {"psnr": psnr(ref[valid], out[valid], peak), "band_psnr": bands, "peak": peak,
            "valid_pixels": int(valid[0].sum())}
