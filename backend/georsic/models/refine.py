"""Encoder-side latent refinement: a smaller file for the same decoder.

The analysis transform ``g_a`` predicts a latent in one pass; a few gradient steps on the latent
itself, minimising the same rate-distortion cost the model was trained on for this image and
quality, usually find one that codes in fewer bits at the same error (the "amortisation gap"
of [Cremer2018]; latent optimisation as in [Campos2019] and [Yang2020]).  Decoding is unchanged:
the archive holds an ordinary latent, so refined and plain archives decode alike.

The rate is estimated with additive uniform noise (entropy models in training mode), the
distortion through the hard-rounded latent (straight-through), and after every few steps the
exact cost (hard rounding for both) decides which latent is kept, so refinement never returns
a latent costlier than ``g_a``'s own.

[Cremer2018]: "Inference Suboptimality in Variational Autoencoders", C. Cremer, X. Li and
D. Duvenaud, ICML 2018.
[Campos2019]: "Content Adaptive Optimization for Neural Image Compression", J. Campos,
S. Meierhans, A. Djelouah and C. Schroers, CVPR Workshops 2019.
[Yang2020]: "Improving Inference for Neural Image Compression", Y. Yang, R. Bamler and
S. Mandt, NeurIPS 2020.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from compressai.entropy_models import EntropyModel
from torch import Tensor, nn

#: Adam's step size on the latent (in quantisation bins), cosine-decayed over the steps.
LEARNING_RATE = 0.01
#: Steps between two exact evaluations of the cost.
CHECK_EVERY = 5


def lambda_at(lambdas: tuple[float, ...], quality: float) -> float:
    """The rate-distortion trade-off of a continuous quality: log-linear between levels."""
    q = min(max(float(quality), 0.0), len(lambdas) - 1)
    low = min(int(q), len(lambdas) - 2)
    frac = q - low
    return math.exp(math.log(lambdas[low]) * (1 - frac) + math.log(lambdas[low + 1]) * frac)


@contextlib.contextmanager
def _noisy_rates(module: nn.Module) -> Iterator[None]:
    """Entropy models in training mode: rates of the latent plus uniform noise."""
    models = [m for m in module.modules() if isinstance(m, EntropyModel)]
    for model in models:
        model.train()
    try:
        yield
    finally:
        for model in models:
            model.eval()


def rd_cost(model, y: Tensor, x: Tensor, quality: float, height: int, width: int) -> Tensor:
    """``lambda * 255^2 * MSE + bpp`` of latent ``y`` for the top-left ``height x width`` of x.

    Padding pixels (beyond ``height x width``) count for nothing: their latents cost bits
    only, and refinement makes them cheap.
    """
    out = model.latent_codec(y)
    y_hat = out["y_hat"].to(x.dtype) * model._gain(model.log_inverse_gain, quality)
    x_hat = model.g_s(y_hat)[..., :height, :width]
    mse = torch.mean((x_hat - x[..., :height, :width]) ** 2)
    bits = sum(-torch.log2(p).sum() for p in out["likelihoods"].values())
    return lambda_at(model.lambdas, quality) * 255.0**2 * mse + bits / (height * width)


def refine_latent(model, x: Tensor, quality: float, steps: int, height: int | None = None,
                  width: int | None = None) -> Tensor:
    """The latent of ``x`` after ``steps`` steps of refinement, in the entropy model's dtype.

    Parameters
    ----------
    model:
        A :class:`~georsic.models.elic.ElicVariableRate` in eval mode.
    x:
        The padded image, (1, 3, H, W) in [0, 1].
    height, width:
        The real image inside ``x`` (the rest is padding); all of ``x`` when None.
    """
    height = height or x.shape[-2]
    width = width or x.shape[-1]
    dtype = next(model.latent_codec.parameters()).dtype
    with torch.no_grad():
        start = (model.g_a(x) * model._gain(model.log_gain, quality)).to(dtype)
        best_cost = rd_cost(model, start, x, quality, height, width).item()
    best = start
    y = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([y], lr=LEARNING_RATE)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * step / steps))
        with torch.enable_grad(), _noisy_rates(model.latent_codec):
            loss = rd_cost(model, y, x, quality, height, width)
            (y.grad,) = torch.autograd.grad(loss, [y])
        optimizer.step()
        if (step + 1) % CHECK_EVERY == 0 or step + 1 == steps:
            with torch.no_grad():
                cost = rd_cost(model, y, x, quality, height, width).item()
            if cost < best_cost:
                best_cost, best = cost, y.detach().clone()
    return best
