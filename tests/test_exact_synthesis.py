"""The exact synthesis prototype (georsic.models.exact_synthesis): the same bits by any route."""

from __future__ import annotations

import math

import pytest
import torch

from georsic.models.exact_synthesis import (
    SIGMOID_BITS,
    SIGMOID_RANGE,
    ExactSynthesis,
    _sigmoid_table,
    calibrate,
)
from georsic.weights import find_model

#: latent shapes (channels, height, width): square, odd-sized edge tiles, and a 1024-px tile
SHAPES = [(4, 4), (3, 5), (7, 11), (64, 64)]


@pytest.fixture(scope="module")
def g_s() -> torch.nn.Sequential:
    from georsic.codec import TileCodec

    return TileCodec(find_model(None), "cpu", 1).model.g_s.float().eval()


@pytest.fixture(scope="module")
def exact(g_s) -> ExactSynthesis:
    generator = torch.Generator().manual_seed(0)
    channels = g_s[0].conv_a[0].conv[0].in_channels
    latents = [torch.randn(1, channels, 16, 16, generator=generator) * 3 for _ in range(2)]
    with torch.no_grad():
        return ExactSynthesis(g_s, calibrate(g_s, latents)).eval()


def _latent(g_s, height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    channels = g_s[0].conv_a[0].conv[0].in_channels
    return torch.round(torch.randn(1, channels, height, width, generator=generator) * 3)


def _run(exact: ExactSynthesis, latent: torch.Tensor, method: str) -> torch.Tensor:
    with torch.no_grad():
        return exact(latent, method)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_routes_give_the_same_bits(g_s, exact, shape):
    """Byte-split float32 sums and one float64 convolution: other summation orders, other
    kernels, the same integers, hence the same float32 image."""
    latent = _latent(g_s, *shape, seed=sum(shape))
    by_bytes = _run(exact, latent, "bytes")
    by_float64 = _run(exact, latent, "float64")
    assert by_bytes.shape == (1, 3, 16 * shape[0], 16 * shape[1])
    assert torch.equal(by_bytes, by_float64)


def test_thread_count_does_not_change_bits(g_s, exact):
    latent = _latent(g_s, 9, 13, seed=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run(exact, latent, "bytes")
        torch.set_num_threads(2)
        two = _run(exact, latent, "bytes")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_close_to_the_float_transform(g_s, exact):
    """Against g_s in float64: the integer path's error stays below a quarter of an 8-bit
    level on a latent of the calibrated kind."""
    latent = _latent(g_s, 8, 8, seed=5)
    with torch.no_grad():
        reference = g_s.double()(latent.double())
        g_s.float()
        ours = _run(exact, latent, "bytes").double()
    assert float((ours - reference).abs().max()) < 0.25 / 255


def test_sigmoid_table_is_correctly_rounded():
    table = _sigmoid_table()
    steps = SIGMOID_RANGE * 2**SIGMOID_BITS
    assert table.dtype == torch.float32 and table.numel() == 2 * steps + 1
    for k in (-steps, -1000, -1, 0, 1, 333, steps):
        x = k / 2**SIGMOID_BITS
        expected = 1.0 / (1.0 + math.exp(-x))
        assert abs(float(table[k + steps]) - expected) <= 2**-24 * max(expected, 2**-10)
    assert float(table[steps]) == 0.5


def test_eight_bit_synthesis_for_fine_tuning(g_s, exact):
    """The quantisation-aware copy (georsic.train.synthesis_qat): inputs on 256 levels,
    8-bit weights, gradients through both."""
    from georsic.train.synthesis_qat import QuantConv, quantized_synthesis

    amax = {name: 4.0 for name, m in g_s.named_modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))}
    model = quantized_synthesis(g_s, amax, levels=255)
    convs = [m for m in model.modules() if isinstance(m, QuantConv)]
    assert len(convs) == len(amax) == len(exact.convs)
    latent = _latent(g_s, 3, 4, seed=7).requires_grad_(True)
    out = model(latent)
    assert out.shape == (1, 3, 48, 64)
    out.square().mean().backward()
    assert latent.grad is not None and float(latent.grad.abs().sum()) > 0
    layer = convs[0]
    x = torch.linspace(-6, 6, 97).reshape(1, 1, 97, 1).expand(1, layer.conv.in_channels, 97, 1)
    levels = torch.unique(torch.round(x / layer.step).clamp(layer.low, layer.high))
    assert len(levels) <= 256
    assert torch.equal(layer.quantized_weight(), layer.quantized_weight().detach())
