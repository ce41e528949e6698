"""The transforms' CPU runtime: sub-pixel convolutions compute the transposed convolutions, and
ONNX Runtime computes the same transforms as torch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from georsic.codec import TileCodec
from georsic.models.runtime import (
    Bfloat16Transform,
    NnpackUpsample,
    PhaseConvTranspose,
    StripedAnalysis,
    StripedSynthesis,
    SubPixelConv,
    analysis_split,
    bfloat16_transforms_pay,
    nnpack_available,
    onnxruntime_available,
    receptive_radius,
    synthesis_for_onnxruntime,
    synthesis_split,
    synthesis_stages,
    with_subpixel_convolutions,
)
from georsic.parallel import torch_threads
from georsic.weights import find_model


@pytest.mark.parametrize("form", [SubPixelConv, PhaseConvTranspose])
@pytest.mark.parametrize("shape", [(1, 8, 13, 17), (2, 8, 4, 4)])
def test_subpixel_and_phase_convolutions_are_the_transposed_convolution(shape, form):
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(8, 5, 5, stride=2, padding=2, output_padding=1).double()
    x = torch.randn(*shape, dtype=torch.float64)
    sub = form(deconv)
    with torch.no_grad():
        assert sub(x).shape == deconv(x).shape
        assert torch.allclose(sub(x), deconv(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("form", [SubPixelConv, PhaseConvTranspose])
def test_other_transposed_convolutions_are_refused(form):
    with pytest.raises(ValueError, match="not a 5x5 stride-2"):
        form(nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1))


@pytest.fixture(scope="module")
def model():
    return TileCodec(find_model(None), "cpu").model


def test_synthesis_with_subpixel_convolutions_matches(model):
    net = with_subpixel_convolutions(model.g_s)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    y = torch.randn(1, sum(model.groups), 8, 12)
    with torch.no_grad():
        expected = model.g_s(y.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(net(y), expected, atol=1e-4, rtol=0)


def test_synthesis_for_onnxruntime_is_the_same_function(model):
    net = synthesis_for_onnxruntime(model.g_s, sum(model.groups))
    kinds = [type(m).__name__ for m in net]
    assert kinds[0] == "LayoutAnchor" and kinds[-1] == "SubPixelConv"
    assert kinds.count("PhaseConvTranspose") == 3 and kinds.count("LayoutAnchor") == 4
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    y = torch.randn(1, sum(model.groups), 8, 12)
    with torch.no_grad():
        expected = model.g_s(y.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(net(y), expected, atol=1e-4, rtol=0)


@pytest.mark.skipif(not nnpack_available(), reason="torch without NNPACK")
def test_synthesis_stages_with_nnpack_upsampling_are_the_same_function_at_any_thread_count(model):
    stages = synthesis_stages(model.g_s, sum(model.groups))
    assert [kind for kind, _, _ in stages] == ["onnx", "nnpack"] * 4
    y = torch.round(torch.randn(1, sum(model.groups), 16, 24) * 3)
    with torch.no_grad():
        expected = model.g_s(y.contiguous(memory_format=torch.channels_last))
        x = y
        for _, module, channels in stages:
            assert x.shape[1] == channels
            x = module(x)
        assert torch.allclose(x, expected, atol=1e-4, rtol=0)  # Winograd: ~1e-5 here
        upsample = next(m for kind, m, _ in stages if kind == "nnpack")
        before = torch.get_num_threads()
        results = []
        try:
            for threads in (1, 2):
                torch.set_num_threads(threads)
                results.append(upsample(y))
        finally:
            torch.set_num_threads(before)
        assert torch.equal(results[0], results[1])
        assert isinstance(upsample, NnpackUpsample)


def _cpu_transforms(model, runtime_name: str, monkeypatch):
    from georsic.models import runtime

    monkeypatch.setenv("GEORSIC_RUNTIME", runtime_name)
    key = find_model(None).sha256
    return runtime.cpu_transforms(model.g_a, model.g_s, 3, sum(model.groups), key)


@pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime or onnx not installed")
@pytest.mark.parametrize("runtime_name", ["onnxruntime", "auto"])
def test_cpu_transforms_compute_the_torch_transforms(model, runtime_name, monkeypatch):
    """``onnxruntime``: float32 graphs on any CPU; ``auto``: bfloat16 where the CPU has it."""
    analysis, synthesis = _cpu_transforms(model, runtime_name, monkeypatch)
    bf16 = runtime_name == "auto" and bfloat16_transforms_pay()
    assert isinstance(synthesis, StripedSynthesis) and isinstance(analysis, StripedAnalysis)
    assert isinstance(synthesis.tail, Bfloat16Transform) == bf16
    assert isinstance(analysis.head, Bfloat16Transform) == bf16
    torch.manual_seed(1)
    x = torch.rand(1, 3, 128, 192)
    with torch.no_grad():
        y = model.g_a(x)
        x_hat = model.g_s(torch.round(y).contiguous(memory_format=torch.channels_last))
        y_ours, x_hat_ours = analysis(x), synthesis(torch.round(y))
    if bf16:
        # bfloat16 weights and activations (8-bit mantissa): the latent to within 1 % of its
        # range, the image to a third of an 8-bit level on average (the codec's own error is
        # tens of levels: 0.002 dB PSNR, BD-rate +0.03 %, synthesis_precision.py)
        assert (y_ours - y).abs().max() < 0.01 * y.abs().max()
        assert (x_hat_ours - x_hat).abs().max() < 2e-2
        assert (x_hat_ours - x_hat).abs().mean() < 2e-3
    else:
        assert torch.allclose(y_ours, y, atol=1e-3, rtol=0)
        assert torch.allclose(x_hat_ours, x_hat, atol=1e-4, rtol=0)


def test_runtime_can_be_chosen(monkeypatch):
    monkeypatch.setenv("GEORSIC_RUNTIME", "torch")
    codec = TileCodec(find_model(None), "cpu")
    assert codec.runtime == "torch" and codec.model._synthesis_runtime is None


@pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime or onnx not installed")
def test_exported_graphs_are_cached_and_a_damaged_cache_is_exported_again(tmp_path, monkeypatch,
                                                                          model):
    from georsic.models import runtime

    monkeypatch.setenv("GEORSIC_CACHE", str(tmp_path))
    monkeypatch.setenv("GEORSIC_RUNTIME", "onnxruntime")  # graphs on any CPU
    monkeypatch.setattr(runtime, "_GRAPHS", {})
    key = "test-weights"
    first = runtime.cpu_transforms(model.g_a, model.g_s, 3, sum(model.groups), key)
    files = sorted((tmp_path / "onnx").glob("test-weights-*.onnx"))
    names = [f.name.split("-")[2] for f in files]
    # g_a and g_s each a head and a tail (run in strips), g_s's cut at its upsamplings
    assert names[:2] == ["g_a_head", "g_a_tail"]
    assert all(name.startswith(("g_s_head", "g_s_tail")) for name in names[2:])
    assert len(names) == 2 + (4 if runtime.staged_synthesis_pays() else 2)
    assert not list((tmp_path / "onnx").glob("*.part"))
    x = torch.rand(1, 3, 64, 64)
    expected = first[0](x)
    # a new process: nothing in memory, the graphs come from the cache files
    monkeypatch.setattr(runtime, "_GRAPHS", {})
    files[0].write_bytes(b"not a graph")
    again = runtime.cpu_transforms(model.g_a, model.g_s, 3, sum(model.groups), key)
    assert torch.equal(again[0](x), expected)
    assert files[0].read_bytes() != b"not a graph"  # exported again and stored


@pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime or onnx not installed")
def test_cpu_transforms_give_the_same_bits_on_two_threads(model):
    from georsic.models import runtime

    key = find_model(None).sha256
    one = runtime.cpu_transforms(model.g_a, model.g_s, 3, sum(model.groups), key, 1)
    two = runtime.cpu_transforms(model.g_a, model.g_s, 3, sum(model.groups), key, 2)
    torch.manual_seed(2)
    x = torch.rand(1, 3, 256, 320)
    with torch_threads(1):
        y = one[0](x)
        x_hat = one[1](torch.round(y))
    with torch_threads(2):  # NNPACK's and oneDNN's pools follow torch's thread count
        assert torch.equal(two[0](x), y)
        assert torch.equal(two[1](torch.round(y)), x_hat)


def test_nnpack_stages_only_where_the_cpu_has_no_avx512(monkeypatch):
    from georsic.models import runtime

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert not runtime.staged_synthesis_pays()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert runtime.staged_synthesis_pays() == runtime.nnpack_available()


def _on_one_and_two_threads(transform, x):
    results = []
    for threads in (1, 2):
        with torch_threads(threads), torch.inference_mode():
            results.append(transform(x))
    return results


@pytest.mark.skipif(not bfloat16_transforms_pay(), reason="CPU without native bfloat16")
@pytest.mark.parametrize("latent", [(44, 42), (64, 64), (7, 9), (13, 64)])
def test_bfloat16_transforms_give_the_same_bits_on_one_and_two_threads(model, latent):
    """(44, 42) is a latent where oneDNN's bfloat16 transposed convolution does not; (64, 64)
    is a full 1024-px tile."""
    torch.manual_seed(3)
    x = torch.rand(1, 3, 16 * latent[0], 16 * latent[1])
    y, y_again = _on_one_and_two_threads(Bfloat16Transform(model.g_a), x)
    assert y.dtype == torch.float32 and y.shape == (1, sum(model.groups), *latent)
    assert torch.equal(y, y_again)
    x_hat, x_hat_again = _on_one_and_two_threads(Bfloat16Transform(model.g_s), torch.round(y))
    assert x_hat.dtype == torch.float32 and x_hat.shape == x.shape
    assert torch.equal(x_hat, x_hat_again)


def test_bfloat16_transforms_only_where_the_cpu_has_it(monkeypatch):
    from georsic.models import runtime

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert not runtime.bfloat16_transforms_pay()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert runtime.bfloat16_transforms_pay()
    monkeypatch.setenv("GEORSIC_RUNTIME", "onnxruntime")  # float32 on any CPU
    assert not runtime.bfloat16_transforms_pay()


def test_the_transforms_chosen_are_described(monkeypatch):
    from georsic.models import runtime

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    if runtime.onnxruntime_available():
        assert runtime.cpu_transforms_description() == "torch oneDNN, bfloat16"
        monkeypatch.setenv("GEORSIC_RUNTIME", "onnxruntime")
        assert runtime.cpu_transforms_description().startswith("ONNX Runtime, float32")
    monkeypatch.setenv("GEORSIC_RUNTIME", "torch")
    assert runtime.cpu_transforms_description() == "torch, float32"


@pytest.mark.parametrize("shape", [(16, 16), (44, 42), (64, 64)])
def test_striped_synthesis_is_the_synthesis(model, shape):
    """g_s's last upsamplings on strips with halos (StripedSynthesis) compute g_s: strips of
    a few rows, so that every strip edge and both image borders are crossed."""
    start, halo, factor = synthesis_split(model.g_s)
    assert halo >= receptive_radius(list(model.g_s)[start:])
    torch.manual_seed(2)
    y = torch.randn(1, sum(model.groups), *shape) * 3
    g_s = model.g_s.float().to(memory_format=torch.contiguous_format)
    striped = StripedSynthesis(g_s[:start], g_s[start:], halo, factor,
                               strip_pixels=4 * halo * shape[1] * 4)
    plan = striped.strips(shape[0] * 4, shape[1] * 4)
    assert len(plan) > 1 and plan[0][0] == 0 and plan[-1][1] == shape[0] * 4
    assert all(a[1] == b[0] for a, b in zip(plan[:-1], plan[1:], strict=True))
    with torch.no_grad():
        assert torch.allclose(striped(y), g_s(y), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(128, 64), (192, 128), (320, 64)])
def test_striped_analysis_is_the_analysis(model, shape):
    """g_a's head on strips of the input with halos (StripedAnalysis) computes g_a."""
    start, halo, factor = analysis_split(model.g_a)
    assert halo % factor == 0
    torch.manual_seed(3)
    x = torch.rand(1, 3, *shape)
    g_a = model.g_a.float()
    striped = StripedAnalysis(g_a[:start], g_a[start:], halo, factor,
                              strip_pixels=4 * halo * shape[1])
    plan = striped.strips(*shape)
    assert len(plan) > 1 and all(first % factor == 0 for first, _ in plan)
    with torch.no_grad():
        assert torch.allclose(striped(x), g_a(x), atol=1e-5, rtol=0)
