"""The exact synthesis prototype (georsic.models.exact_synthesis): the same bits by any route."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from georsic.models.exact_synthesis import (
    FLOAT32_EXACT,
    METHODS,
    SIGMOID_BITS,
    SIGMOID_RANGE,
    SYNTHESES,
    ExactConv,
    ExactSynthesis,
    _column_peak,
    _phase_weight,
    _sigmoid_table,
    calibrate,
    int8_sums_exact,
)
from georsic.weights import find_model

#: latent shapes (channels, height, width): square, odd-sized edge tiles, and a 1024-px tile
SHAPES = [(4, 4), (3, 5), (7, 11), (64, 64)]


@pytest.fixture(scope="module")
def g_s() -> torch.nn.Sequential:
    from georsic.codec import TileCodec

    return TileCodec(find_model(None), "cpu", 1).model.g_s.float().eval()


@pytest.fixture(scope="module", params=sorted(SYNTHESES))
def exact(g_s, request) -> ExactSynthesis:
    """Each exact synthesis an archive may name: ``exact-v1`` (two bytes per input, float64
    epilogue) and ``exact-v2`` (2**11 - 1 levels, one float32 convolution where the tile's
    bound allows, float32 epilogue)."""
    return ExactSynthesis(g_s, _amax(g_s), request.param).eval()


def _latent(g_s, height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    channels = g_s[0].conv_a[0].conv[0].in_channels
    return torch.round(torch.randn(1, channels, height, width, generator=generator) * 3)


def _run(exact: ExactSynthesis, latent: torch.Tensor, method: str) -> torch.Tensor:
    with torch.no_grad():
        return exact(latent, method)


def _routes() -> list[str]:
    """Every route this CPU runs (``fast-int8`` only where oneDNN's int8 sums are exact)."""
    return [m for m in METHODS if m != "fast-int8" or int8_sums_exact()]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_routes_give_the_same_bits(g_s, exact, shape):
    """Byte-split float32 sums, one float64 convolution and the fast routes (int8 or float32
    byte sums, phase convolutions, blocked element-wise work): other summation orders, other
    kernels, the same integers, hence the same float32 image."""
    latent = _latent(g_s, *shape, seed=sum(shape))
    by_bytes = _run(exact, latent, "bytes")
    assert by_bytes.shape == (1, 3, 16 * shape[0], 16 * shape[1])
    assert by_bytes.is_contiguous() and by_bytes.dtype == torch.float32
    for method in _routes():
        if method == "bytes":  # the reference itself: run once
            continue
        out = _run(exact, latent, method)
        assert out.is_contiguous() and out.dtype == torch.float32, method
        assert torch.equal(by_bytes, out), method
    # the fast route overwrites activations no later step reads, never the caller's latent
    before = latent.clone()
    channels_last = latent.contiguous(memory_format=torch.channels_last)
    assert torch.equal(_run(exact, channels_last, "fast"), by_bytes)
    assert torch.equal(channels_last, before) and torch.equal(latent, before)


@pytest.mark.parametrize("method", ["bytes", "fast", "fast-float32"])
def test_thread_count_does_not_change_bits(g_s, exact, method):
    latent = _latent(g_s, 9, 13, seed=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run(exact, latent, method)
        torch.set_num_threads(2)
        two = _run(exact, latent, method)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)
    assert torch.equal(one, _run(exact, latent, "float64"))


def test_single_convolution_route_where_the_bound_allows(g_s, exact, monkeypatch):
    """The fast route sums a layer by one float32 convolution where the tile's bound allows
    it (most of exact-v2's layers on a calibrated latent, few of exact-v1's) and by bytes
    elsewhere; both kinds occur, and the image is the reference route's."""
    taken: list[bool] = []
    single = ExactConv._single_sums

    def recording(self, x, spent=False):
        a, peak, sums = single(self, x, spent)
        taken.append(sums is not None)
        return a, peak, sums

    monkeypatch.setattr(ExactConv, "_single_sums", recording)
    latent = _latent(g_s, 16, 16, seed=8)
    fast = _run(exact, latent, "fast-float32")
    assert len(taken) == len(exact.convs)
    if exact.synthesis == "exact-v2":
        assert sum(taken) >= 0.8 * len(taken)
    assert not all(taken)
    assert torch.equal(fast, _run(exact, latent, "float64"))


def _integer_conv(transposed: bool, transposed_outs: int, generator: torch.Generator,
                  random_bias: bool) -> torch.nn.Module:
    """A 16-input convolution (8 outputs; ``transposed_outs`` for a 5x5 stride-2 transposed
    one) with integer weights in -127..127, output channel 0's all 127 so that its sums reach
    the bound, and an integer bias in -999..999 (``random_bias``) or zero."""
    conv = (torch.nn.ConvTranspose2d(16, transposed_outs, 5, 2, 2, 1) if transposed
            else torch.nn.Conv2d(16, 8, 3, 1, 1))
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-127, 128, conv.weight.shape, generator=generator)
                          .float())
        if random_bias:
            conv.bias.copy_(torch.randint(-999, 1000, conv.bias.shape, generator=generator)
                            .float())
        else:
            conv.bias.zero_()
        if transposed:  # (in, out, k, k)
            conv.weight[:, 0] = 127.0
        else:
            conv.weight[0] = 127.0
    return conv


@pytest.mark.parametrize("transposed", [False, True])
def test_single_convolution_is_exact_up_to_its_bound(transposed):
    """One float32 convolution of integer inputs whose bound (largest input x weights'
    magnitudes, plus |bias|) is just below 2**24 equals the float64 one: sums of products
    only, no Winograd or FFT, in oneDNN's direct, deconvolution and 1x1 kernels alike; one
    input level more and the route declines."""
    generator = torch.Generator().manual_seed(4)
    conv = _integer_conv(transposed, 8, generator, random_bias=False)
    layer = ExactConv(conv, amax=1.0, nonneg_input=False, levels=1)
    bound = float(layer._sum_weights[0].add(layer._sum_weights[1]).sum(1).max())
    peak = (FLOAT32_EXACT - 1) // bound
    layer.in_mult.fill_(peak)  # integer inputs +-peak: the bound just below 2**24
    layer.levels = int(peak)
    x = torch.sign(torch.randn(1, 16, 9, 13, generator=generator))
    x[..., :6] = 1.0  # there, output channel 0 sums its largest products: the bound
    x = x.contiguous(memory_format=torch.channels_last)
    a, _, sums = layer._single_sums(x)
    assert sums is not None
    want = (F.conv_transpose2d(a.double(), layer.weight.double(), None, 2, 2, 1) if transposed
            else F.conv2d(a.double(), layer.weight.double(), None, 1, 1))
    assert float(want.abs().max()) > 0.9 * FLOAT32_EXACT
    assert torch.equal(sums.double(), want)
    layer.in_mult.fill_(peak + 1)
    layer.levels = int(peak) + 1
    assert layer._single_sums(x)[2] is None


def test_threads_sharing_one_synthesis_get_their_own_bits(g_s, exact):
    """Archives share one ExactSynthesis per weights between the tile threads: two threads
    running it at once on different latents (each layer's route chosen from its own inputs'
    bound) get the bits each gets alone."""
    import threading

    latents = [_latent(g_s, 16, 16, seed=8), _latent(g_s, 16, 16, seed=9) * 2]
    alone = [_run(exact, latent, "fast") for latent in latents]
    results: dict[int, list[torch.Tensor]] = {0: [], 1: []}

    def work(index: int) -> None:
        for _ in range(3):
            results[index].append(_run(exact, latents[index], "fast"))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(2):
        assert len(results[index]) == 3
        assert all(torch.equal(got, alone[index]) for got in results[index])


def test_column_peak_is_each_columns_largest_value():
    """The widened reduction of :func:`_column_peak` is torch's own per column, for widths
    that divide its view and widths that leave rows over (signed: the largest magnitude)."""
    generator = torch.Generator().manual_seed(2)
    for channels in (1, 3, 16, 32, 200, 300):
        for rows in (1, 7, 16, 257, 4096):
            flat = torch.randn(rows, channels, generator=generator)
            assert torch.equal(_column_peak(flat, signed=False), flat.amax(dim=0))
            assert torch.equal(_column_peak(flat, signed=True), flat.abs().amax(dim=0))


@pytest.mark.parametrize("transposed", [False, True])
def test_layers_exact_at_any_input_measure_no_peaks(transposed):
    """A layer whose sums stay below 2**24 even at the quantisation's largest input in every
    channel takes one float32 convolution without measuring the tile's peaks, and its sums
    are the float64 convolution's; raising its levels past that bound measures them again."""
    generator = torch.Generator().manual_seed(6)
    conv = _integer_conv(transposed, 8, generator, random_bias=False)
    layer = ExactConv(conv, amax=1.0, nonneg_input=False, levels=1)
    bound = float(layer._sum_weights[0].add(layer._sum_weights[1]).sum(1).max())
    for levels, always in ((int(0.9 * FLOAT32_EXACT / bound), True),
                           (int(1.2 * FLOAT32_EXACT / bound), False)):
        layer.levels = levels
        layer.in_mult.fill_(levels)
        x = torch.rand(1, 16, 9, 13, generator=generator).mul_(2).sub_(1)
        a, peak, single = layer._single_sums(x.contiguous(memory_format=torch.channels_last))
        assert layer._always_single() is always and (peak is None) is always
        if always:
            want = (F.conv_transpose2d(a.double(), layer.weight.double(), None, 2, 2, 1)
                    if transposed else F.conv2d(a.double(), layer.weight.double(), None, 1, 1))
            assert torch.equal(single.double(), want)


@pytest.mark.parametrize("transposed", [False, True])
def test_grouped_route_past_the_single_bound(transposed):
    """Where one convolution's bound passes 2**24, the fast route sums blocks of input
    channels by one grouped float32 convolution and adds the blocks in float64: the same
    integers as one float64 convolution (bias included), at 1.5x, 3x and 6x the single
    bound; where even 8 blocks pass it, the route declines (the byte route takes over)."""
    generator = torch.Generator().manual_seed(5)
    conv = _integer_conv(transposed, 3, generator, random_bias=True)
    layer = ExactConv(conv, amax=1.0, nonneg_input=False, levels=1)
    layer.bias.copy_(conv.bias.reshape(layer.bias.shape))  # an integer bias as it is
    bound = float(layer._sum_weights[0].add(layer._sum_weights[1]).sum(1).max())
    x = torch.sign(torch.randn(1, 16, 9, 13, generator=generator))
    x[..., :6] = 1.0
    x = x.contiguous(memory_format=torch.channels_last)
    weight, padding, _ = layer._regular
    for factor, expected in ((1.5, True), (3.0, True), (6.0, True), (20.0, False)):
        peak = int(factor * FLOAT32_EXACT / bound)
        layer.in_mult.fill_(peak)
        layer.levels = peak
        a, peak, single = layer._single_sums(x)
        assert single is None
        sums = layer._split_sums(a, peak)
        assert (sums is not None) == expected, factor
        if sums is not None:
            want = F.conv2d(a.double(), weight.double(), None, 1, padding)
            want += layer._fast_affine[0]
            assert float(want.abs().max()) > FLOAT32_EXACT
            assert torch.equal(sums, want)


def test_unknown_method_is_refused(g_s, exact):
    with pytest.raises(ValueError):
        _run(exact, _latent(g_s, 2, 2, seed=1), "int4")


def test_phase_weight_is_the_transposed_convolution():
    """A transposed convolution as a regular one over its four output phases and a pixel
    shuffle: the same integer sums, exactly."""
    generator = torch.Generator().manual_seed(2)
    weight = torch.randint(-127, 128, (6, 5, 5, 5), generator=generator).double()
    x = torch.randint(-300, 300, (1, 6, 7, 9), generator=generator).double()
    want = F.conv_transpose2d(x, weight, None, 2, 2, 1)
    regular, padding = _phase_weight(weight, 2, 2, 1)
    got = F.pixel_shuffle(F.conv2d(x, regular, None, 1, padding), 2)
    assert regular.shape == (20, 6, 3, 3) and padding == 1
    assert torch.equal(got, want)


def test_avx2_class_gives_the_same_bits(g_s, exact, tmp_path):
    """A process capped to AVX2 (oneDNN and ATen: no VNNI, so the fast route's int8 sums are
    not exact and it sums in float32) decodes the same latent to the same bits as this one."""
    latent = _latent(g_s, 7, 11, seed=11)
    amax = {name: float(m) for name, m in _amax(g_s).items()}
    (tmp_path / "amax.json").write_text(json.dumps(amax))
    torch.save(latent, tmp_path / "latent.pt")
    script = (
        "import json, sys, torch\n"
        "from georsic.codec import TileCodec\n"
        "from georsic.weights import find_model\n"
        "from georsic.models.exact_synthesis import ExactSynthesis, int8_sums_exact\n"
        "d = sys.argv[1]\n"
        "g_s = TileCodec(find_model(None), 'cpu', 1).model.g_s.float().eval()\n"
        "amax = json.load(open(d + '/amax.json'))\n"
        "with torch.no_grad():\n"
        "    out = ExactSynthesis(g_s, amax, sys.argv[2]).eval()(torch.load(d + '/latent.pt'),"
        " 'fast')\n"
        "torch.save(out, d + '/out.pt')\n"
        "print(int8_sums_exact())\n")
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]
                                                          / "backend"),
                                                      env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), exact.synthesis], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        here = ExactSynthesis(g_s, amax, exact.synthesis).eval()(latent, "fast")
    assert torch.equal(torch.load(tmp_path / "out.pt"), here)


def _amax(g_s) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    channels = g_s[0].conv_a[0].conv[0].in_channels
    latents = [torch.randn(1, channels, 16, 16, generator=generator) * 3 for _ in range(2)]
    with torch.no_grad():
        return calibrate(g_s, latents)


def test_close_to_the_float_transform(g_s, exact):
    """Against g_s in float64: exact-v1's error stays below a quarter of an 8-bit level on a
    latent of the calibrated kind, exact-v2's within half a level in RMS."""
    latent = _latent(g_s, 8, 8, seed=5)
    with torch.no_grad():
        reference = g_s.double()(latent.double())
        g_s.float()
        ours = _run(exact, latent, "bytes").double()
    error = ours - reference
    if exact.synthesis == "exact-v1":  # 2**15 input levels
        assert float(error.abs().max()) < 0.25 / 255
    else:  # 2**11: a few times coarser, within half a level in RMS (the BD-rate: the bench)
        assert float(error.square().mean().sqrt()) < 0.5 / 255
        assert float(error.abs().max()) < 4 / 255


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
