"""Archive format versions: 2 deflates the JSON header, 3 stores a tile's section lengths as
varints and each codec image as one rANS stream, 4 gives each tile record a head of its own
(found by a scan when the index is lost), 5 may hold an overview pyramid; archives of versions
1, 2, 3 and 4 still decode."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from testdata import DATA

import georsic
from georsic.archive import (
    _ENTRY,
    _FOOTER,
    _PREFIX,
    _RECORD,
    _U32,
    FOOTER_MAGIC,
    MAGIC,
    VERSION,
    ArchiveReader,
    inflate_header,
    pack_sections,
    unpack_sections,
)
from georsic.codec import get_codec
from georsic.masks import decode_mask
from georsic.metrics import compare_rasters
from georsic.weights import find_model

#: Written by GeoRSIC at commit 2369e64 (format version 2, eleven rANS streams per tile):
#: the 160x96 pixels at the top left of osbs_aerial_rgb.tif, quality 3, 64-pixel tiles with
#: 16 of overlap (6 tiles). It decoded there to 19.64 dB over its 15,329 valid pixels.
LEGACY_V2 = DATA / "legacy_v2_osbs_crop.grsc"


def _v1_tiles(archive) -> list[bytes]:
    """The tiles of a version-3 archive in the layout of versions 1 and 2: u32 section tables,
    and masks as zlib without a method byte."""
    tiles = []
    with georsic.open(archive) as opened, ArchiveReader(archive) as reader:
        planes = reader.header["mask"]["planes"]
        for tile in opened.grid:
            sections = unpack_sections(reader.read_tile(tile.index))
            if sections[0]:
                h, w = int(tile.window.height), int(tile.window.width)
                mask = decode_mask(sections[0], planes, h, w, version=3)
                sections[0] = zlib.compress(np.packbits(mask.reshape(-1)).tobytes(), 9)
            tiles.append(_U32.pack(len(sections))
                         + b"".join(_U32.pack(len(s)) + s for s in sections))
    return tiles


def _as_version_1(archive, target) -> None:
    """Rewrite ``archive`` as format version 1: the header as plain JSON, tiles as above."""
    with ArchiveReader(archive) as reader:
        header = reader.header
    tiles = _v1_tiles(archive)
    blob = json.dumps(header, separators=(",", ":")).encode()
    out = bytearray(_PREFIX.pack(MAGIC, 1, len(blob)) + blob + _U32.pack(zlib.crc32(blob)))
    index = b""
    for tile in tiles:
        index += _ENTRY.pack(len(out), len(tile), zlib.crc32(tile))
        out += tile
    offset = len(out)
    out += index + _FOOTER.pack(FOOTER_MAGIC, offset, len(tiles), zlib.crc32(index))
    target.write_bytes(bytes(out))


def test_header_is_deflated_and_version_1_layout_still_decodes(tmp_path, aerial_archive):
    data = aerial_archive.read_bytes()
    version, length = _PREFIX.unpack(data[:_PREFIX.size])[1:]
    assert version == VERSION == 5
    header = json.loads(inflate_header(data[_PREFIX.size:_PREFIX.size + length]))
    plain = json.dumps(header, separators=(",", ":")).encode()
    assert length < len(zlib.compress(plain, 9)) < len(plain)  # the dictionary helps

    old = tmp_path / "v1.grsc"
    _as_version_1(aerial_archive, old)
    with ArchiveReader(aerial_archive) as reader:
        growth = sum(len(t) for t in _v1_tiles(aerial_archive)) - sum(reader.tile_sizes())
        growth -= _RECORD.size * reader.tile_count  # version 4's record heads
    assert old.stat().st_size == len(data) + len(plain) - length + growth
    with ArchiveReader(old) as reader:
        assert reader.version == 1 and reader.header == header
    georsic.decompress(aerial_archive, tmp_path / "v3.tif")
    georsic.decompress(old, tmp_path / "v1.tif")
    with rasterio.open(tmp_path / "v3.tif") as a, rasterio.open(tmp_path / "v1.tif") as b:
        assert np.array_equal(a.read(), b.read())
        assert a.crs == b.crs and a.transform == b.transform


@pytest.mark.parametrize("lengths", [[], [0], [0, 0, 5], [127, 128, 300, 16_385]])
def test_varint_section_table_round_trips(lengths):
    sections = [bytes([i % 251]) * n for i, n in enumerate(lengths)]
    payload = pack_sections(sections)
    assert unpack_sections(payload) == sections
    assert len(payload) - sum(lengths) <= 1 + 3 * len(lengths)


@pytest.mark.parametrize("payload", [b"", b"\x02\x01", b"\x01\x05abc", b"\x01\x01ab"])
def test_damaged_section_tables_are_errors(payload):
    with pytest.raises(ValueError):
        unpack_sections(payload)


def test_one_rans_stream_decodes_like_elevens(aerial):
    # the float64 entropy path (archives of version 3 and later made before elic-vr-s-v5)
    codec = get_codec(find_model("elic-vr-s-v4"), "cpu")
    with rasterio.open(aerial) as src:
        image = src.read(window=Window(0, 0, 200, 136)).astype(np.float32) / 255.0
    x = codec._pad(image)
    single = codec.model.compress(x, 2.5)["strings"]
    several = codec.model.compress(x, 2.5, single_stream=False)["strings"]
    assert len(single) == 1 and len(several) == 2 * len(codec.groups) + 1
    assert len(single[0][0]) < sum(len(s[0]) for s in several)
    one = codec.decode([single[0][0]], 136, 200, 2.5)
    eleven = codec.decode([s[0] for s in several], 136, 200, 2.5)
    assert np.array_equal(one, eleven)


def test_version_2_archive_of_an_earlier_release_decodes(tmp_path, aerial):
    with ArchiveReader(LEGACY_V2) as reader:
        assert reader.version == 2 and reader.header["codec"]["streams_per_image"] == 11
    window = Window(0, 0, 160, 96)
    with rasterio.open(aerial) as src:
        profile = src.profile | {"width": 160, "height": 96, "tiled": False,
                                 "transform": src.window_transform(window)}
        profile.pop("blockysize", None)
        profile.pop("blockxsize", None)
        with rasterio.open(tmp_path / "crop.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
    georsic.decompress(LEGACY_V2, tmp_path / "out.tif")
    scores = compare_rasters(tmp_path / "crop.tif", tmp_path / "out.tif")
    assert scores["valid_pixels"] == 15_329 and scores["psnr"] >= 19.5
    with rasterio.open(tmp_path / "crop.tif") as a, rasterio.open(tmp_path / "out.tif") as b:
        assert a.crs == b.crs and a.transform == b.transform and a.nodata == b.nodata


#: Written by GeoRSIC at commit 66eb9b9 (format version 3, tile payloads without record heads)
#: from the same 160x96 crop: quality 3, 64-pixel tiles, overlap 16 (6 tiles). It decoded
#: there to 19.70 dB over its 15,329 valid pixels.
LEGACY_V3 = DATA / "legacy_v3_osbs_crop.grsc"


def _as_version_4(legacy, target) -> None:
    """The header and tile payloads of ``legacy`` written by today's writer (version 4's
    record layout; today's version, 5, adds only the optional pyramid)."""
    from georsic.archive import ArchiveWriter

    with ArchiveReader(legacy) as reader:
        header, tiles = reader.header, [reader.read_tile(i) for i in range(reader.tile_count)]
    with ArchiveWriter(target, header) as writer:
        for tile in tiles:
            writer.add_tile(tile)


def test_version_3_archive_decodes_as_its_version_4_rewrite(tmp_path, aerial):
    with ArchiveReader(LEGACY_V3) as reader:
        assert reader.version == 3 and reader.tile_count == 6
    _as_version_4(LEGACY_V3, tmp_path / "v4.grsc")
    with ArchiveReader(tmp_path / "v4.grsc") as reader:
        assert reader.version == VERSION
    assert (tmp_path / "v4.grsc").stat().st_size == LEGACY_V3.stat().st_size + 6 * _RECORD.size
    old = georsic.open(LEGACY_V3).read()
    assert np.array_equal(old, georsic.open(tmp_path / "v4.grsc").read())
    window = Window(0, 0, 160, 96)
    with rasterio.open(aerial) as src:
        crop = src.read(window=window)
        valid = src.read_masks(1, window=window) > 0
    assert valid.sum() == 15_329
    mse = np.mean((crop.astype(float) - old.astype(float))[:, valid] ** 2)
    assert 10 * np.log10(255**2 / mse) >= 19.5


def test_a_legacy_archive_without_its_index_is_not_recovered(tmp_path):
    cut = tmp_path / "cut.grsc"
    cut.write_bytes(LEGACY_V3.read_bytes()[:-30])
    with pytest.raises(georsic.errors.ArchiveError, match="footer missing"):
        georsic.open(cut, recover=True)
