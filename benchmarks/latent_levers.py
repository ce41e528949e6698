#!/usr/bin/env python
"""Two coding-side levers that need no training, measured on the held-out images.

1. **Centroid reconstruction** (decoder only): the latent residual ``r = y - mu`` is coded as
   ``q = round(r)``, and ``y_hat = mu + q``.  Under the entropy model's Gaussian ``N(0, sigma)``
   the mean of ``r`` within the bin of ``q != 0`` lies nearer zero than ``q`` (for sigma 0.3
   and q = 1 about 0.63), so a decoder could reconstruct ``mu + q + s * (centroid - q)``.
   ``s`` = 0 is what GeoRSIC does.
2. **Alignment 16 instead of 64**: images are padded to a multiple of 64 so that the hyper-latent
   grid is whole; padding to 16 and cropping the hyper-decoder's output to the latent's size
   codes fewer padded pixels (448x448 -> 400x400 for the 400x400 images).

Bits are the entropy model's estimate (``-log2`` of the likelihoods of ``z`` and ``y``, what the
rANS coder reaches within a few bytes), PSNR over the real 8-bit pixels, each image one tile.
Printed: BD-rate (PSNR) of each variant against GeoRSIC's coding (s = 0, alignment 64).

    python benchmarks/latent_levers.py [--qualities 0 1 2 3 4 5 6 7] [--threads 2] [images ...]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from georsic.bench.bdrate import bd_rate
from georsic.bench.images import AERIAL_RGB, load_image
from georsic.codec import TileCodec
from georsic.weights import find_model

STRENGTHS = (-0.25, 0.5, 1.0)


def mean_pad(x: torch.Tensor, align: int) -> torch.Tensor:
    """``x`` padded right and below to a multiple of ``align`` with each channel's mean."""
    h, w = x.shape[-2:]
    padded = x.mean(dim=(2, 3), keepdim=True).expand(
        *x.shape[:2], h - h % -align, w - w % -align).clone()
    padded[..., :h, :w] = x
    return padded


def gaussian_centroid_offset(q: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Mean of ``N(0, sigma)`` over the bin ``[q - 1/2, q + 1/2]``, minus ``q``."""
    normal = torch.distributions.Normal(torch.zeros((), dtype=sigma.dtype), 1.0)
    low, high = (q.abs() - 0.5) / sigma, (q.abs() + 0.5) / sigma
    density = normal.log_prob(low).exp() - normal.log_prob(high).exp()
    mass = (normal.cdf(high) - normal.cdf(low)).clamp_min(1e-12)
    centroid = sigma * density / mass
    return (centroid - q.abs()).clamp(-0.5, 0.0) * q.sign()


class LatentProbe:
    """The model's forward pass in coding mode, with the Gaussian parameters of every latent."""

    def __init__(self, codec: TileCodec) -> None:
        self.model = codec.model
        self.hyper = self.model.latent_codec.latent_codec["hyper"]
        self.y_codec = self.model.latent_codec.latent_codec["y"]
        self.captured: list[tuple[torch.Tensor, torch.Tensor]] = []
        for k in range(len(self.model.groups)):
            group = self.y_codec.latent_codec[f"y{k}"]
            group.forward_method = "twopass"
            group.latent_codec["y"].gaussian_conditional.register_forward_pre_hook(
                self._capture, with_kwargs=True)

    def _capture(self, module, args, kwargs) -> None:
        self.captured.append((args[1], kwargs["means"]))

    @torch.no_grad()
    def point(self, x: torch.Tensor, quality: float, align: int = 64,
              strength: float = 0.0) -> tuple[float, float]:
        """(bpp, PSNR) of ``x`` (1, 3, H, W) in [0, 1]."""
        model, (h, w) = self.model, x.shape[-2:]
        y = (model.g_a(mean_pad(x, align)) * model._gain(model.log_gain, quality)).double()
        z_hat, z_likelihoods = self.hyper.entropy_bottleneck(self.hyper.h_a(y))
        params = self.hyper.h_s(z_hat)[..., : y.shape[-2], : y.shape[-1]]
        self.captured.clear()
        out = self.y_codec(y, params)
        y_hat = out["y_hat"]
        if strength:
            sigma = torch.cat([c[0] for c in self.captured], 1).clamp_min(0.11)
            means = torch.cat([c[1] for c in self.captured], 1)
            q = torch.round(y_hat - means)
            y_hat = y_hat + strength * gaussian_centroid_offset(q, sigma)
        bits = -(torch.log2(z_likelihoods).sum() + torch.log2(out["likelihoods"]["y"]).sum())
        x_hat = model.g_s(y_hat.float() * model._gain(model.log_inverse_gain, quality))
        x_hat = torch.round(x_hat.clamp(0, 1)[..., :h, :w] * 255) / 255
        mse = float(((x_hat - x) ** 2).mean())
        return float(bits) / (h * w), 10 * math.log10(1 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--qualities", nargs="+", type=float, default=list(range(8)))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = args.images or [Path(__file__).parent / "data" / n for n in AERIAL_RGB]
    codec = TileCodec(find_model())
    probe = LatentProbe(codec)
    variants = {"alignment 16": {"align": 16}}
    variants.update({f"centroid s={s:g}": {"strength": s} for s in STRENGTHS})
    print(f"model {codec.entry.id} ({codec.entry.sha256[:12]}), qualities {args.qualities}\n")
    print("| variant | " + " | ".join(p.name for p in images) + " | mean |")
    print("|---|" + "---|" * (len(images) + 1))
    results: dict[str, list[float]] = {name: [] for name in variants}
    for path in images:
        rgb = load_image(path).rgb.transpose(2, 0, 1).astype(np.float32) / 255.0
        x = torch.from_numpy(np.ascontiguousarray(rgb))[None]
        base = [probe.point(x, q) for q in args.qualities]
        for name, options in variants.items():
            points = [probe.point(x, q, **options) for q in args.qualities]
            results[name].append(bd_rate(*zip(*base, strict=True), *zip(*points, strict=True)))
    for name, values in results.items():
        cells = " | ".join(f"{v:+.1f} %" for v in values)
        print(f"| {name} | {cells} | {np.mean(values):+.1f} % |")


if __name__ == "__main__":
    main()
