"""The perceptual measures of ``georsic bench prior``: DISTS, patch FID (and MS-SSIM), each zero
(or minimal) for identical images and growing with distortion, on a real aerial image."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
import torch
from scipy.ndimage import uniform_filter
from testdata import DATA

from georsic.bench.metrics import ms_ssim


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """A 256x256 crop of the NEON aerial test image, (3, H, W) float32 in [0, 1]."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(DATA / "osbs_aerial_rgb.tif") as src:
            data = src.read(window=((72, 328), (72, 328)))
    return data.astype(np.float32) / 255


def blurred(image: np.ndarray, size: int) -> np.ndarray:
    return uniform_filter(image, (1, size, size)).astype(np.float32)


def noisy(image: np.ndarray, sigma: float) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0, sigma, image.shape)
    return np.clip(image + noise, 0, 1).astype(np.float32)


def test_dists_is_zero_for_identical_images_and_grows_with_blur(crop):
    from georsic.perceptual.dists import dists_distance

    crop = crop[:, :128, :128]
    x = torch.from_numpy(crop)[None]
    batch = torch.from_numpy(np.stack([crop, blurred(crop, 3), blurred(crop, 7)]))
    d = dists_distance(x.expand(3, -1, -1, -1), batch)
    assert abs(float(d[0])) < 1e-5
    assert 0.01 < float(d[1]) < float(d[2]) < 1.0


def test_dists_weights_are_the_authors(crop):
    """alpha and beta come from the dists-pytorch wheel: positive, 1475 channels each."""
    from georsic.perceptual.dists import CHANNELS, _alpha_beta

    alpha, beta = _alpha_beta()
    assert alpha.shape == beta.shape == (1, sum(CHANNELS), 1, 1) == (1, 1475, 1, 1)
    assert float(alpha.min()) >= 0 and float(beta.min()) >= 0
    assert float(alpha.std()) > 0  # learned, not a constant


def test_patch_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(crop):
    from georsic.perceptual.fid import features, frechet_distance, patches

    assert len(list(patches(crop, 128))) == 4 + 1  # the grid and the half-shifted grid
    small = crop[:, :192, :192]  # 1 + 1 patches a set: InceptionV3 costs ~1 s a patch here
    ref = features(patches(small, 128))
    assert ref.shape == (2, 2048)
    assert frechet_distance(ref, ref) == pytest.approx(0, abs=1e-6)
    light = features(patches(noisy(small, 0.03), 128))
    heavy = features(patches(noisy(small, 0.15), 128))
    assert 0 < frechet_distance(ref, light) < frechet_distance(ref, heavy)


def test_ms_ssim_is_one_for_identical_images_and_falls_with_blur(crop):
    image = (crop.transpose(1, 2, 0) * 255).astype(np.float64)
    assert ms_ssim(image, image) == pytest.approx(1.0)
    soft = blurred(crop, 3).transpose(1, 2, 0) * 255
    softer = blurred(crop, 7).transpose(1, 2, 0) * 255
    assert 1.0 > ms_ssim(image, soft) > ms_ssim(image, softer)


def test_frechet_distance_matches_the_matrix_square_root_formula():
    from scipy import linalg

    from georsic.perceptual.fid import frechet_distance

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 10)), rng.normal(size=(40, 10)) * 1.3 + 0.2
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = (((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2)
                - 2 * np.trace(np.real(linalg.sqrtm(s1 @ s2))))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
