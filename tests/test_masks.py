"""No-data masks: lossless whichever coding a tile picks, and smaller than zlib where it counts."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import rasterio

from georsic.masks import CONTEXT, ZLIB, _encode_contexts, decode_mask, encode_mask


@pytest.mark.parametrize(("shape", "share"), [
    ((1, 37, 53), 0.3), ((4, 64, 64), 0.01), ((3, 1, 1), 1.0), ((2, 5, 300), 0.5),
    ((5, 40, 7), 0.02),
])
def test_both_codings_round_trip(shape, share):
    mask = np.random.default_rng(sum(shape)).random(shape) < share
    chosen = encode_mask(mask)
    assert chosen[0] in (ZLIB, CONTEXT)
    assert np.array_equal(decode_mask(chosen, *shape, version=3), mask)
    assert np.array_equal(decode_mask(_encode_contexts(mask), *shape, version=3), mask)


def test_nothing_invalid_is_an_empty_section():
    assert encode_mask(None) == b""
    assert encode_mask(np.zeros((3, 8, 8), dtype=bool)) == b""
    assert decode_mask(b"", 3, 8, 8, version=3) is None


def test_scattered_nodata_codes_in_about_half_of_zlib(aerial):
    """NEON OSBS declares nodata 255: saturated values, scattered, differ between bands."""
    with rasterio.open(aerial) as src:
        invalid = src.read() == src.nodata
    plain = zlib.compress(np.packbits(invalid.reshape(-1)).tobytes(), 9)
    coded = encode_mask(invalid)
    assert coded[0] == CONTEXT
    assert len(coded) < 0.6 * len(plain)
    assert np.array_equal(decode_mask(coded, *invalid.shape, version=3), invalid)


def test_version_2_masks_have_no_method_byte():
    mask = np.random.default_rng(1).random((2, 9, 11)) < 0.2
    section = zlib.compress(np.packbits(mask.reshape(-1)).tobytes(), 9)
    assert np.array_equal(decode_mask(section, 2, 9, 11, version=2), mask)


@pytest.mark.parametrize("section", [b"\x07abc", b"\x01\x00", b"\x00not zlib"])
def test_damaged_masks_are_errors(section):
    with pytest.raises((ValueError, zlib.error)):
        decode_mask(section, 3, 4, 4, version=3)
