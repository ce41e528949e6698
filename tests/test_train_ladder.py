"""Fine-tuning onto a new ladder of lambdas, and half-precision export of trained weights."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from georsic.models.elic import ElicVariableRate, remap_gains
from georsic.train.codec import CodecTrainConfig, _init_state, model_config
from georsic.train.export import export_codec
from georsic.weights import (
    INT8_SCALE_SUFFIX,
    WeightBits,
    dequantize_int8,
    dequantized,
    load_state_dict_file,
    quantize_int8,
)

OLD = (0.001, 0.004, 0.016)


def _state(values: list[float]) -> dict[str, torch.Tensor]:
    table = torch.tensor(values)[:, None].repeat(1, 3)
    return {"log_gain": table, "log_inverse_gain": -table, "other": torch.ones(2)}


def test_same_ladder_keeps_the_gains():
    state = _state([-1.0, 0.0, 2.0])
    remapped = remap_gains(state, OLD, OLD)
    assert torch.equal(remapped["log_gain"], state["log_gain"])
    assert torch.equal(remapped["other"], state["other"])


def test_gains_interpolate_and_extrapolate_in_log_lambda():
    state = _state([-1.0, 0.0, 2.0])
    new = (0.00025, 0.002, 0.008, 0.064)
    remapped = remap_gains(state, OLD, new)["log_gain"][:, 0]
    # 0.002 lies halfway (in log) between 0.001 and 0.004; 0.00025 and 0.064 one segment outside
    assert remapped.tolist() == pytest.approx([-2.0, -0.5, 1.0, 4.0])
    assert remap_gains(state, OLD, new)["log_inverse_gain"][:, 0].tolist() == pytest.approx(
        [2.0, 0.5, -1.0, -4.0])


def test_model_config_records_a_custom_ladder():
    cfg = CodecTrainConfig(data=[], out="x", N=8, M=40, lambdas=[0.0001, 0.001])
    assert model_config(cfg) == {"N": 8, "M": 40, "lambdas": [0.0001, 0.001]}
    assert model_config(CodecTrainConfig(data=[], out="x", N=8, M=40)) == {"N": 8, "M": 40}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[torch.dtype, tuple[dict, Path]]:
    """One small random model exported in int8, half and single precision."""
    folder = tmp_path_factory.mktemp("export")
    return {dtype: _export(folder, dtype) for dtype in (torch.int8, torch.float16, torch.float32)}


def _export(tmp_path, dtype: torch.dtype, bits: str = "8") -> tuple[dict, Path]:
    torch.manual_seed(0)
    cfg = CodecTrainConfig(data=[], out="x", N=8, M=40, lambdas=[0.0001, 0.001])
    checkpoint = tmp_path / "checkpoint.pt"
    if not checkpoint.exists():
        model = ElicVariableRate(**model_config(cfg))
        torch.save({"model": model.state_dict(), "step": 3, "config": asdict(cfg)}, checkpoint)
    folder = tmp_path / f"{dtype}-{bits}"
    entry = export_codec(checkpoint, folder, "tiny", dtype=dtype, quantile_steps=300, bits=bits)
    return entry, folder / "tiny.safetensors"


def _load(path: Path, config: dict) -> ElicVariableRate:
    model = ElicVariableRate(**config)
    model.load_state_dict(load_state_dict_file(path))
    return model.use_float64_entropy_model().eval()


def _assert_decodes_what_it_encodes(model: ElicVariableRate) -> None:
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model.g_a(x) * model._gain(model.log_gain, 1.0)
        encoded = model.latent_codec.compress(y.double())
        expected = model.g_s(encoded["y_hat"].float() * model._gain(model.log_inverse_gain, 1.0))
    decoded = model.decompress(encoded["strings"], encoded["shape"], quality=1.0)["x_hat"]
    assert torch.equal(decoded, expected.clamp(0, 1))


def test_half_precision_export_decodes_what_it_encodes(exports):
    entry, path = exports[torch.float16]
    assert entry["config"] == {"N": 8, "M": 40, "lambdas": [0.0001, 0.001]}
    assert entry["dtype"] == "float16"
    assert entry["training"]["init"] is None and entry["training"]["init_sha256"] is None
    assert entry["training"]["gray_fraction"] == 0.0
    tensors = load_file(str(path))
    assert tensors["log_gain"].dtype == torch.float16
    assert tensors["g_a.0.weight"].dtype == torch.float16
    assert all(t.dtype == torch.int32 for k, t in tensors.items() if "_quantized_cdf" in k)
    _assert_decodes_what_it_encodes(_load(path, entry["config"]))


def test_int8_export_stores_layer_weights_as_int8_and_decodes_what_it_encodes(exports):
    entry, path = exports[torch.int8]
    assert entry["dtype"] == "int8"
    tensors = load_file(str(path))
    assert tensors["g_a.0.weight"].dtype == torch.int8
    assert tensors["g_a.0.weight" + INT8_SCALE_SUFFIX].shape == (8,)
    assert tensors["g_a.0.bias"].dtype == torch.float16
    assert tensors["log_gain"].dtype == torch.float16
    assert not any(k.endswith(".quantiles" + INT8_SCALE_SUFFIX) for k in tensors)
    assert path.stat().st_size < exports[torch.float16][1].stat().st_size
    _assert_decodes_what_it_encodes(_load(path, entry["config"]))


def test_narrow_export_keeps_each_layers_width_and_decodes_what_it_encodes(exports):
    entry, path = _export(exports[torch.int8][1].parents[1], torch.int8, "5,g_s=8")
    assert entry["weight_bits"] == "5,g_s=8"
    integers = {name: int(t.abs().max()) for name, t in load_file(str(path)).items()
                if t.dtype == torch.int8}
    assert {peak for name, peak in integers.items() if name.startswith("g_s.")} == {127}
    others = [peak for name, peak in integers.items() if not name.startswith("g_s.")]
    assert len(others) > 10 and max(others) <= 15
    _assert_decodes_what_it_encodes(_load(path, entry["config"]))


def test_weight_bits_need_integer_storage(exports):
    with pytest.raises(ValueError, match="int8"):
        _export(exports[torch.int8][1].parents[1], torch.float16, "6")


def test_int8_weights_are_within_half_a_step_of_float32(exports):
    int8 = _load(exports[torch.int8][1], exports[torch.int8][0]["config"])
    single = _load(exports[torch.float32][1], exports[torch.float32][0]["config"])
    name = "g_s.0.conv_a.0.conv.0.weight"
    weight = dict(single.named_parameters())[name].detach()
    step = weight.flatten(1).abs().amax(dim=1) / 127
    error = (dict(int8.named_parameters())[name].detach() - weight).flatten(1).abs()
    assert torch.all(error <= step[:, None] / 2 + 1e-6)
    assert error.max() > 0  # rounded, not stored exactly


def test_int8_quantization_round_trip():
    weight = torch.tensor([[[0.5, -1.0]], [[0.0, 0.0]], [[2.0, 1.0]]])
    values, scales = quantize_int8(weight)
    assert values.dtype == torch.int8
    assert values[:, 0].tolist() == [[64, -127], [0, 0], [127, 64]]
    restored = dequantize_int8(values, scales)
    assert torch.allclose(restored, weight, atol=2.0 / 127 / 2)
    assert torch.equal(restored[1], torch.zeros(1, 2))
    state = dequantized({"w": values, "w" + INT8_SCALE_SUFFIX: scales, "b": torch.ones(3)})
    assert set(state) == {"w", "b"} and torch.equal(state["w"], restored)


def test_half_precision_export_is_close_to_float32(exports):
    entry16, path16 = exports[torch.float16]
    entry32, path32 = exports[torch.float32]
    assert path16.stat().st_size < 0.75 * path32.stat().st_size
    half, single = _load(path16, entry16["config"]), _load(path32, entry32["config"])
    for name, value in single.named_parameters():
        if name.endswith(".quantiles"):  # refitted at export: only the range of the z tables
            continue
        assert torch.allclose(dict(half.named_parameters())[name], value, rtol=2e-3, atol=1e-4)


def test_int8_weights_can_start_a_fine_tune(exports):
    entry, path = exports[torch.int8]
    state = _init_state(str(path), tuple(entry["lambdas"]))
    assert not any(name.endswith(INT8_SCALE_SUFFIX) for name in state)
    assert state["g_a.0.weight"].dtype == torch.float32
    model = ElicVariableRate(**entry["config"])
    model.load_state_dict(state, strict=False)
    assert torch.equal(model.g_a[0].weight, state["g_a.0.weight"])


def test_narrow_integer_quantization_clips_outliers_to_cut_error():
    torch.manual_seed(0)
    weight = torch.distributions.StudentT(2.0).sample((4, 8, 3, 3))  # heavy-tailed, as trained
    values, scales = quantize_int8(weight, bits=5)
    assert values.dtype == torch.int8 and int(values.abs().max()) <= 15
    restored = dequantize_int8(values, scales)
    clipped_error = (restored - weight).square().sum()
    peak_scales = weight.flatten(1).abs().amax(dim=1) / 15
    plain = torch.round(weight / peak_scales[:, None, None, None]).clamp(-15, 15)
    peak_error = (plain * peak_scales[:, None, None, None] - weight).square().sum()
    assert clipped_error < peak_error
    assert torch.all(scales <= peak_scales) and torch.any(scales < peak_scales)


def test_quantization_rejects_impossible_widths():
    with pytest.raises(ValueError, match="weight bits"):
        quantize_int8(torch.ones(2, 2), bits=9)


def test_weight_bits_parse_per_layer_exceptions():
    bits = WeightBits.parse("7, channel_context=5")
    assert bits == WeightBits(7, (("channel_context", 5),))
    assert bits.for_name("latent_codec.y.channel_context.y1.2.weight") == 5
    assert bits.for_name("g_s.1.weight") == 7
    assert str(bits) == "7,channel_context=5" and WeightBits.of(8) == WeightBits()
    for bad in ("9", "7,channel_context", "x"):
        with pytest.raises(ValueError, match="weight bits"):
            WeightBits.parse(bad)
