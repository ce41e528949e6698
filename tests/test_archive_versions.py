"""Archive format versions: version 2 deflates the JSON header; version 1 archives still read."""

from __future__ import annotations

import json
import zlib

import numpy as np
import rasterio

import georsic
from georsic.archive import (
    _ENTRY,
    _FOOTER,
    _PREFIX,
    _U32,
    FOOTER_MAGIC,
    MAGIC,
    ArchiveReader,
    inflate_header,
)


def _as_version_1(archive, target) -> None:
    """Rewrite ``archive`` as format version 1: the same header as plain JSON, the same tiles."""
    with ArchiveReader(archive) as reader:
        header = reader.header
        tiles = [reader.read_tile(i) for i in range(reader.tile_count)]
    blob = json.dumps(header, separators=(",", ":")).encode()
    out = bytearray(_PREFIX.pack(MAGIC, 1, len(blob)) + blob + _U32.pack(zlib.crc32(blob)))
    index = b""
    for tile in tiles:
        index += _ENTRY.pack(len(out), len(tile), zlib.crc32(tile))
        out += tile
    offset = len(out)
    out += index + _FOOTER.pack(FOOTER_MAGIC, offset, len(tiles), zlib.crc32(index))
    target.write_bytes(bytes(out))


def test_header_is_deflated_and_version_1_still_decodes(tmp_path, aerial_archive):
    data = aerial_archive.read_bytes()
    version, length = _PREFIX.unpack(data[:_PREFIX.size])[1:]
    assert version == 2
    header = json.loads(inflate_header(data[_PREFIX.size:_PREFIX.size + length]))
    plain = json.dumps(header, separators=(",", ":")).encode()
    assert length < len(zlib.compress(plain, 9)) < len(plain)  # the dictionary helps

    old = tmp_path / "v1.grsc"
    _as_version_1(aerial_archive, old)
    assert old.stat().st_size == len(data) + len(plain) - length
    with ArchiveReader(old) as reader:
        assert reader.version == 1 and reader.header == header
    georsic.decompress(aerial_archive, tmp_path / "v2.tif")
    georsic.decompress(old, tmp_path / "v1.tif")
    with rasterio.open(tmp_path / "v2.tif") as a, rasterio.open(tmp_path / "v1.tif") as b:
        assert np.array_equal(a.read(), b.read())
        assert a.crs == b.crs and a.transform == b.transform
