"""The exact integer entropy path: same bits however it is computed, and archives of both paths
decode."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from testdata import DATA

import georsic
from georsic.codec import TileCodec, get_codec, pad_to_align
from georsic.models import exact
from georsic.weights import find_model

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


@pytest.fixture(scope="module")
def codec() -> TileCodec:
    entry = find_model(None)
    codec = get_codec(entry, "cpu")
    if codec.entropy != exact.NAME:
        pytest.fail(f"the default model {entry.id} has no exact entropy path")
    return codec


@pytest.fixture(scope="module")
def latent(codec) -> torch.Tensor:
    with rasterio.open(DATA / "osbs_aerial_rgb.tif") as src:
        image = src.read(window=((0, 192), (0, 192))).astype(np.float32) / 255
    model = codec.model
    with torch.no_grad():
        return model.g_a(pad_to_align(torch.from_numpy(image)[None])) * model._gain(
            model.log_gain, 2.0)


@pytest.mark.parametrize("path", exact.NAMES)
def test_every_layer_is_proven_exact(codec, path):
    coder = codec.model.exact_coder(path)
    rows = exact.describe(coder)
    assert len(rows) == 3 + 5 * 4 + 4 * 3  # h_s, per group: spatial + 3 aggregation, 4 channel
    for name, dtype, blocks, share in rows:
        assert 0 < share < 1, name   # the largest sum a block can reach, as a share of 2**24
        assert dtype == ("float64" if name.startswith("hs") else "float32"), name
        assert blocks >= 1
        if path == exact.NAME_V2:  # one float32 sum per convolution, fewer levels where needed
            assert blocks == 1, name
            assert 2**8 <= coder.layers[name].limit <= exact.TARGET_LEVELS, name
        else:
            assert coder.layers[name].limit == exact.TARGET_LEVELS
    if path == exact.NAME_V1:
        assert max(blocks for _, _, blocks, _ in rows) > 1


def test_new_archives_use_v2(codec):
    assert exact.NAME == exact.NAME_V2 and codec.entropy == exact.NAME_V2
    assert codec.model.exact is codec.model.exact_coder(exact.NAME_V2)


@pytest.mark.parametrize("path", exact.NAMES)
def test_parameters_identical_however_the_sums_are_ordered(codec, latent, path):
    coder = codec.model.exact_coder(path)
    native = coder.parameters_of(latent, "native")
    for other in ("blocks", "float64", "reversed"):
        params = coder.parameters_of(latent, other)
        for (scales, means), (scales2, means2) in zip(native, params, strict=True):
            assert torch.equal(scales, scales2) and torch.equal(means, means2), other


def test_the_same_reorderings_change_float_results(codec, latent):
    """What the test above guards against: a float convolution gives other bits when its sums
    are ordered otherwise, so agreement above is not a property of the inputs."""
    layer = codec.model.exact.layers["cc4_1"]
    spec = layer.spec
    x = torch.randn(1, spec.weight.shape[1], 16, 16, dtype=torch.float64)
    whole = torch.nn.functional.conv2d(x.float(), spec.weight.float(), None, 1, spec.padding)
    halves = sum(torch.nn.functional.conv2d(x[:, i:i + 7].float(), spec.weight[:, i:i + 7].float(),
                                            None, 1, spec.padding)
                 for i in reversed(range(0, x.shape[1], 7)))
    assert not torch.equal(whole, halves)


def test_fast_indexes_match_compressai(codec):
    conditional = codec.model.exact.conditionals[2]
    scales = torch.rand(1, 8, 32, 32, dtype=torch.float64) * 30
    scales[0, 0, 0, :8] = conditional.scale_table[:8].double()  # exactly on table entries
    expected = conditional.build_indexes(scales)
    assert torch.equal(exact._indexes(conditional, scales), expected.int())


@pytest.mark.parametrize("path", exact.NAMES)
def test_round_trip_through_one_stream(codec, latent, path):
    coder = codec.model.exact_coder(path)
    data, y_hat = coder.compress(latent)
    decoded = coder.decompress(data, tuple(latent.shape[-2:]))
    assert torch.equal(decoded, y_hat)
    assert (y_hat - latent.double()).abs().max() <= 0.5 + exact.MEAN_GRID


def test_new_archives_name_the_exact_path_and_old_ones_decode(tmp_path):
    src = DATA / "osbs_aerial_rgb.tif"
    new = georsic.compress(src, tmp_path / "new.grsc", quality=3)
    old = georsic.compress(src, tmp_path / "old.grsc", quality=3, model="elic-vr-s-v4")
    with georsic.open(new.path) as archive:
        assert archive.entropy == exact.NAME and archive.model_id == new.model_id
        exact_pixels = archive.read()
    with georsic.open(old.path) as archive:
        assert archive.entropy == "float64" and archive.model_id == "elic-vr-s-v4"
        float_pixels = archive.read()
    with rasterio.open(src) as raster:
        original = raster.read().astype(np.float64)
    # the same transforms, entropy parameters within rounding: where a mean moved, a latent
    # near a rounding boundary takes the other symbol, so pixels differ, the quality does not
    psnr = [10 * np.log10(255**2 / np.mean((pixels.astype(np.float64) - original) ** 2))
            for pixels in (exact_pixels, float_pixels)]
    assert abs(psnr[0] - psnr[1]) < 0.05, psnr
    assert abs(new.bytes - old.bytes) < 0.02 * old.bytes


#: Written at commit 46eb78a (format version 4, ``codec.entropy`` int-exact-v1) from a 256x192
#: crop of osbs_aerial_rgb.tif: quality 3, 128-pixel tiles, overlap 16 (6 tiles); the JSON
#: beside it holds the sha256 of each tile's decoded latent (float64) as decoded then, and the
#: PSNR of the decoded crop (19.707 dB).
LEGACY_EXACT_V1 = DATA / "legacy_exact_v1_osbs_crop.grsc"


def test_int_exact_v1_archive_decodes_to_the_same_latents():
    import hashlib
    import json

    from georsic.codec import ALIGN

    expected = json.loads(LEGACY_EXACT_V1.with_suffix(".json").read_text())["latent_sha256"]
    with georsic.open(LEGACY_EXACT_V1) as archive:
        assert archive.entropy == "int-exact-v1"
        codec = get_codec(find_model(archive.model_id), "cpu")
        coder = codec.model.exact_coder(archive.entropy)
        hashes = []
        for tile in archive.grid:
            streams = archive._tile_sections(tile)
            h, w = (-(-int(n) // ALIGN) * ALIGN // 16
                    for n in (tile.window.height, tile.window.width))
            with torch.inference_mode():
                hashes.append(hashlib.sha256(coder.decompress(streams[2], (h, w)).numpy()
                                             .tobytes()).hexdigest())
        assert hashes == expected
        pixels = archive.read()
    assert pixels.shape == (3, 192, 256)


@pytest.mark.skipif(not exact.int8_sums_pay(), reason="CPU without VNNI")
def test_int8_sums_serve_the_channel_context_and_are_exact_at_the_bounds(codec):
    """On a CPU with VNNI the channel context's layers sum in int8 (the parameter tests above
    then compare them with three other orders); here each against float64 at its extremes:
    every input at the limit where the weights are positive (the largest sum) or negative."""
    layers = codec.model.exact_coder(exact.NAME_V2).layers
    served = sorted(name for name, layer in layers.items() if layer._int8 is not None)
    assert served == [f"cc{k}_{i}" for k in range(1, 5) for i in (1, 2)]
    torch.manual_seed(4)
    for name in served:
        layer = layers[name]
        weight = layer.weight.double()
        cin = weight.shape[1]
        for sign in (1, -1):
            # inputs at the limit on channels whose centre weight to output 0 has this sign
            peak = (sign * weight[0, :, 2, 2] > 0).double() * layer.limit
            a = peak.reshape(1, cin, 1, 1).expand(1, cin, 12, 12).clone()
            spots = a[..., ::3, ::2]
            a[..., ::3, ::2] = torch.randint(0, int(layer.limit) + 1, spots.shape).double()
            expected = torch.nn.functional.conv2d(a, weight, None, 1, layer.spec.padding)
            assert torch.equal(layer._int8(a), expected), (name, sign)


def test_int8_sums_are_not_used_where_onednn_is_capped_to_avx2():
    """The CPU may have VNNI while oneDNN runs AVX2's saturating kernels (how the AVX2 class
    is measured on any machine): the int8 route then stays off, by a probe, not the flag."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2")
    out = subprocess.run([sys.executable, "-c", "from georsic.models import exact\n"
                          "print(exact.int8_sums_pay())"], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


def test_encode_exact_gives_the_latent_every_decoder_decodes(codec):
    """``TileCodec.encode_exact``: the same stream as ``encode``, and the latent the exact
    entropy path decodes from it (an exact archive's encoder synthesises its digests from it)."""
    with rasterio.open(DATA / "osbs_aerial_rgb.tif") as src:
        image = src.read(window=((0, 96), (0, 130))).astype(np.float32) / 255
    streams, y_hat = codec.encode_exact(image, 3.0)
    assert streams == codec.encode(image, 3.0)
    shape = codec._shape(96, 130)["y"][0][1:]
    decoded = codec.model.exact_coder(codec.entropy).decompress(streams[0], tuple(shape))
    assert torch.equal(decoded.cpu(), y_hat)
