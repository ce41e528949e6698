"""Paths and helpers shared by the backend tests (a module of its own: tests/plugin has its own
conftest.py, so ``from conftest import ...`` would be ambiguous)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(peak**2 / mse))
