"""The ``.grsc`` archive container (see ``docs/format.md``).

Layout, all integers little-endian::

    magic "GRSC\\r\\n\\x1a\\n" | u16 version | u32 header length | header | u32 crc32
    tile records, one after the other (version 4: "GRTL" | u32 tile | u32 length | u32 crc32 |
    payload; before: the payload alone)
    index: per tile  u64 offset | u32 length | u32 crc32
    footer: "GRSCIDX\\0" | u64 index offset | u32 tile count | u32 index crc32

The header is written first and the index last, so a writer streams tiles straight to disk and
a reader seeks to any tile through the footer.  Writing goes to a temporary file beside the
target, renamed into place only when complete.  The header is UTF-8 JSON, deflated (zlib) since
version 2, with a preset dictionary (``HEADER_DICTIONARY``): georeferencing and tags are a large
share of a small archive at low rates.  Since version 3 a tile's section lengths are varints,
each codec image is one rANS stream (``streams_per_image`` 1), about 110 bytes less per tile,
and the no-data mask may be context-coded (:mod:`georsic.masks`).  Since version 4 each tile
record describes itself (number, length, a CRC over both and the payload), so a reader asked to
``recover`` finds the intact tiles of an archive whose index is lost (cut short, junk appended)
by scanning for them.  Since version 5 the header may name an overview pyramid
(``"pyramid": {"factors": [...]}``, :mod:`georsic.pyramid`): its levels' tile records follow
the full-resolution ones, in the same record layout and index.  Version 8 is version 5 with an
``"exact"`` header object: the tiles decode through the exact synthesis, the same pixels on
every machine, and each tile's last section is a digest of its decoded pixels
(:mod:`georsic.exactarchive`).
"""

from __future__ import annotations

import json
import os
import stat
import struct
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from georsic.errors import ArchiveError, OutputError, TileError
from georsic.remote import (
    HEAD_BYTES,
    TAIL_BYTES,
    RemoteLocation,
    merge_runs,
    open_source,
    tail_bytes,
)

MAGIC = b"GRSC\r\n\x1a\n"
FOOTER_MAGIC = b"GRSCIDX\x00"
TILE_MAGIC = b"GRTL"
VERSION = 5
#: Versions this reader understands: 1 (plain JSON header), 2 (zlib-deflated JSON header),
#: 3 (section lengths of a tile as varints; codec images as one rANS stream; masks with a
#: method byte), 4 (self-describing tile records, found by a scan when the index is lost),
#: 5 (the tile records of an overview pyramid after the full-resolution ones), 6 (version 4's
#: layout, tiles with a correction layer: a bounded-error or lossless archive,
#: :mod:`georsic.bounded`), 7 (as 6, corrections may also be lossless JPEG XL images), 8
#: (version 5's layout, tiles synthesised by the exact synthesis, each record ending with a
#: digest of its decoded pixels: :mod:`georsic.exactarchive`), 9 (as 7, the base a classical
#: AVIF image of YCoCg planes: :mod:`georsic.bounded`), 10 (as 9, corrections may also be
#: coded by the shipped context model, :mod:`georsic.correction`).
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
#: The version of bounded-error and lossless archives (:mod:`georsic.bounded`).
BOUNDED_VERSION = 7
#: Every version of bounded archives read (6: JPEG-LS or rANS corrections; 7: JPEG XL too;
#: 9: an AVIF base; 10: context-coded corrections).
BOUNDED_VERSIONS = (6, 7, 9, 10)
#: The version of bounded archives whose base is AVIF (``bounded.base_codec``).
AVIF_BASE_VERSION = 9
#: The version of bounded archives made with a correction model (``bounded.correction_model``).
CONTEXT_VERSION = 10
#: The version of exact lossy archives (``--exact``, :mod:`georsic.exactarchive`).
EXACT_VERSION = 8
#: zlib preset dictionary of version-2 and version-3 headers: the strings most headers share
#: (keys, a WGS 84 / UTM WKT, usual band and tag values).  Part of the format: never change it
#: within a version.
HEADER_DICTIONARY = (
    b'["",[["TIFFTAG_DATETIME",""],["TIFFTAG_SOFTWARE",""],["TIFFTAG_IMAGEDESCRIPTION",""]]]'
    b'"gray","undefined","alpha","palette","nan","dataset","int16","uint16","float32"'
    b'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG",'
    b'"7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT['
    b'"degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AUTHORITY["EPSG","4326"]]'
    b'{"format":"georsic-archive","software":"georsic 0.1.0","raster":{"width":512,"height":512,'
    b'"count":3,"dtype":"uint8","crs_wkt":"PROJCS[\\"WGS 84 / UTM zone 32N\\",GEOGCS[\\"WGS '
    b'84\\",DATUM[\\"WGS_1984\\",SPHEROID[\\"WGS 84\\",6378137,298.257223563,AUTHORITY['
    b'\\"EPSG\\",\\"7030\\"]],AUTHORITY[\\"EPSG\\",\\"6326\\"]],PRIMEM[\\"Greenwich'
    b'\\",0,AUTHORITY[\\"EPSG\\",\\"8901\\"]],UNIT[\\"degree\\",0.0174532925199433,'
    b'AUTHORITY[\\"EPSG\\",\\"9122\\"]],AUTHORITY[\\"EPSG\\",\\"4326\\"]],PROJECTION['
    b'\\"Transverse_Mercator\\"],PARAMETER[\\"latitude_of_origin\\",0],PARAMETER['
    b'\\"central_meridian\\",9],PARAMETER[\\"scale_factor\\",0.9996],PARAMETER['
    b'\\"false_easting\\",500000],PARAMETER[\\"false_northing\\",0],UNIT[\\"metre\\",1,'
    b'AUTHORITY[\\"EPSG\\",\\"9001\\"]],AXIS[\\"Easting\\",EAST],AXIS[\\"Northing\\",'
    b'NORTH],AUTHORITY[\\"EPSG\\",\\"32632\\"]]","transform":[0.1,0.0,500000.0,0.0,-0.1,'
    b'0.0],"nodata":null,"mask_kind":"none","descriptions":[null,null,null],"colorinterp":["red",'
    b'"green","blue"],"units":[null,null,null],"scales":[1.0,1.0,1.0],"offsets":[0.0,0.0,0.0],'
    b'"tags":[["",[["AREA_OR_POINT","Area"]]]],"band_tags":[[],[],[]]},"band_mapping":{"groups":'
    b'[[0,1,2]],"low":[0.0,0.0,0.0],"high":[255.0,255.0,255.0],"dtype":"uint8","lossless":[]},'
    b'"tiling":{"size":512,"overlap":32,"rows":1,"cols":1},"mask":{"planes":3},"codec":{'
    b'"model_id":"elic-vr-s","architecture":"elic-vr","weights_sha256":"","quality":5.0,'
    b'"streams_per_image":11}}'
)
_PREFIX = struct.Struct("<8sHI")
_ENTRY = struct.Struct("<QII")
_FOOTER = struct.Struct("<8sQII")
_U32 = struct.Struct("<I")
#: Version 4: the head of a tile record, "GRTL" | u32 tile number | u32 payload length |
#: u32 crc32 of (tile number, length, payload): the CRC covers the number, so a damaged number
#: cannot put an intact payload in another tile's place.
_RECORD = struct.Struct("<4sIII")
#: Largest header a reader accepts (the header is read into memory before its CRC is checked).
MAX_HEADER_BYTES = 64 * 2**20


def record_crc(number: int, payload: bytes) -> int:
    """CRC-32 of a version-4 tile record: its number and length, then its payload."""
    return zlib.crc32(payload, zlib.crc32(struct.pack("<II", number, len(payload))))


def check_output(path: Path, overwrite: bool, *inputs: str | Path) -> None:
    """Refuse an output that is one of ``inputs`` (also through links or another spelling),
    that is not a regular file (a device, a pipe, a folder), or that exists without
    ``overwrite``; each with an :class:`OutputError` naming it."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"output folder {directory} does not exist")
    for source in inputs:
        try:
            same = os.path.samefile(source, path)
        except OSError:  # one of them does not exist
            same = False
        if same:
            raise OutputError(f"output {path} is the input {source}: writing it would destroy "
                              "the input; choose another output path")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise OutputError(f"output {path} is a folder")
    if not stat.S_ISREG(mode):
        raise OutputError(f"output {path} is not a regular file (a device or a pipe); "
                          "GeoRSIC writes only regular files")
    if not overwrite:
        raise OutputError(f"output {path} exists; pass --overwrite (overwrite=True) to "
                          "replace it")


def deflate_header(header: dict) -> bytes:
    """A version-2/3 header as stored: compact JSON, deflated with the preset dictionary."""
    compressor = zlib.compressobj(9, zdict=HEADER_DICTIONARY)
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    return compressor.compress(text) + compressor.flush()


def container_bytes(header: dict, tiles: int) -> int:
    """Bytes of an archive of the current version around its tile payloads: prefix, deflated
    ``header``, its CRC, each of ``tiles`` records' head and index entry, and the footer."""
    return (_PREFIX.size + len(deflate_header(header)) + _U32.size
            + tiles * (_RECORD.size + _ENTRY.size) + _FOOTER.size)


def inflate_header(blob: bytes) -> bytes:
    """The JSON text of a stored version-2/3 header."""
    decompressor = zlib.decompressobj(zdict=HEADER_DICTIONARY)
    text = decompressor.decompress(blob) + decompressor.flush()
    if not decompressor.eof:
        raise zlib.error("incomplete header stream")
    return text


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128: seven bits a byte, low bits first, high bit set on all but the last."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``data[pos:]`` and the position after it."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("a varint runs past the end of its data")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def pack_sections(sections: list[bytes]) -> bytes:
    """Concatenation of byte strings behind a table of their lengths (varints, version 3)."""
    table = encode_varint(len(sections)) + b"".join(encode_varint(len(s)) for s in sections)
    return table + b"".join(sections)


def unpack_sections(payload: bytes, version: int = VERSION) -> list[bytes]:
    """The sections of a tile payload: a varint table first (version 3), or u32 prefixes."""
    if version < 3:
        return _unpack_sections_u32(payload)
    count, pos = decode_varint(payload, 0)
    lengths = []
    for _ in range(count):
        length, pos = decode_varint(payload, pos)
        lengths.append(length)
    if pos + sum(lengths) != len(payload):
        raise ValueError("section lengths do not add up to the tile's size")
    sections = []
    for length in lengths:
        sections.append(payload[pos:pos + length])
        pos += length
    return sections


def _unpack_sections_u32(payload: bytes) -> list[bytes]:
    if len(payload) < _U32.size:
        raise ValueError("tile is too short")
    (count,), pos = _U32.unpack_from(payload, 0), _U32.size
    sections = []
    for _ in range(count):
        if pos + _U32.size > len(payload):
            raise ValueError("section runs past the end of the tile")
        (length,) = _U32.unpack_from(payload, pos)
        pos += _U32.size
        if pos + length > len(payload):
            raise ValueError("section runs past the end of the tile")
        sections.append(payload[pos:pos + length])
        pos += length
    if pos != len(payload):
        raise ValueError("trailing bytes after the last section")
    return sections


@dataclass(frozen=True)
class WrittenArchive:
    """What every compression's summary says of the archive it wrote (the lossy
    :class:`~georsic.compressor.ArchiveSummary` and the bounded
    :class:`~georsic.bounded.BoundedSummary` add their own fields after these)."""

    path: Path
    width: int
    height: int
    count: int
    tiles: int
    bytes: int

    @property
    def bpp(self) -> float:
        """Bits per pixel (over width x height, all bands together) of the whole archive."""
        return self.bytes * 8 / (self.width * self.height)


class ArchiveWriter:
    """Streams tile payloads into an archive; atomic: the file appears only on :meth:`close`."""

    def __init__(self, path: str | Path, header: dict, *, overwrite: bool = True,
                 inputs: tuple[str | Path, ...] = (), version: int = VERSION) -> None:
        self.path = Path(path)
        directory = self.path.parent if str(self.path.parent) else Path(".")
        if not directory.is_dir():
            raise OutputError(f"output folder {directory} does not exist")
        check_output(self.path, overwrite, *inputs)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise OutputError(f"cannot write to {directory}: {exc.strerror}") from None
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")
        self._index: list[tuple[int, int, int]] = []
        blob = deflate_header(header)
        crc = _U32.pack(zlib.crc32(blob))
        self._file.write(_PREFIX.pack(MAGIC, version, len(blob)) + blob + crc)

    def add_tile(self, payload: bytes) -> None:
        offset, number = self._file.tell(), len(self._index)
        crc = record_crc(number, payload)
        self._file.write(_RECORD.pack(TILE_MAGIC, number, len(payload), crc))
        self._file.write(payload)
        self._index.append((offset, len(payload), crc))

    def close(self) -> Path:
        index_offset = self._file.tell()
        index = b"".join(_ENTRY.pack(*entry) for entry in self._index)
        self._file.write(index)
        self._file.write(_FOOTER.pack(FOOTER_MAGIC, index_offset, len(self._index),
                                      zlib.crc32(index)))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        try:
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self._tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        return self.path

    def abort(self) -> None:
        """Drop the partial file (on error or cancel)."""
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._file.closed:
            self.close()


class ArchiveReader:
    """Random access to the header and tiles of an archive, with every checksum verified.

    With ``recover``, an archive of version 4 whose index is lost (cut short, or with bytes
    appended) is read anyway: its intact tile records are found by a scan, and
    :attr:`missing` lists the tiles that were not found (reading one raises a
    :class:`TileError`).  Without it such an archive is an :class:`ArchiveError`.

    ``path`` is a local file, or a URL read through fsspec with ``storage_options``
    (:mod:`georsic.remote`): the header and index then come with at most two range requests,
    and :meth:`prefetch` fetches tiles one request per run of adjacent records.
    """

    def __init__(self, path: str | Path | RemoteLocation, *, recover: bool = False,
                 storage_options: dict | None = None) -> None:
        self._source = open_source(path, storage_options)
        self.path: Path | str = self._source.location
        self.name = self._source.name
        self.remote = self._source.remote
        self._tiles: dict[int, bytes] = {}  # records fetched ahead by prefetch()
        self._tiles_lock = threading.Lock()
        self.recovered = False
        try:
            size = self._source.size
            self._source.prime([(0, HEAD_BYTES), (size - tail_bytes(size, TAIL_BYTES), size)])
            self.header = self._read_header()
            try:
                self._index: list[tuple[int, int, int] | None] = self._read_index()
            except ArchiveError:
                if not recover or self.version < 4:
                    raise
                self._index = self._scan()
                self.recovered = True
        except BaseException:
            self._source.close()
            raise

    def _fail(self, what: str) -> ArchiveError:
        return ArchiveError(f"{self.name}: {what}")

    def _read_header(self) -> dict:
        prefix = self._source.read(0, _PREFIX.size)
        if len(prefix) < _PREFIX.size or prefix[:8] != MAGIC:
            raise self._fail("not a GeoRSIC archive (bad magic number)")
        _, version, length = _PREFIX.unpack(prefix)
        size = self._source.size
        if length > min(MAX_HEADER_BYTES, size):
            blob, crc = b"", b""
        else:
            blob = self._source.read(_PREFIX.size, length)
            crc = self._source.read(_PREFIX.size + length, _U32.size)
        intact = len(blob) == length and len(crc) == _U32.size and \
            zlib.crc32(blob) == _U32.unpack(crc)[0]
        if version not in READABLE_VERSIONS:
            if not intact:  # random bytes after the magic: damage, not a newer GeoRSIC
                raise self._fail("archive header is corrupt (unknown format version "
                                 f"{version} and a header that fails its checksum)")
            raise self._fail(f"archive format version {version} is not supported by this "
                             f"GeoRSIC (reads versions {', '.join(map(str, READABLE_VERSIONS))});"
                             " upgrade GeoRSIC")
        if len(blob) < length or len(crc) < _U32.size:
            raise self._fail("archive is truncated (header incomplete)")
        if not intact:
            raise self._fail("archive header is corrupt (checksum mismatch)")
        self.data_start = _PREFIX.size + length + _U32.size
        self.version = version
        try:
            header = json.loads(inflate_header(blob) if version >= 2 else blob)
        except (zlib.error, ValueError, UnicodeDecodeError, RecursionError):
            raise self._fail("archive header is corrupt (not a valid header)") from None
        if not isinstance(header, dict):
            raise self._fail("archive header is corrupt (not a JSON object)")
        return header

    def _read_index(self) -> list[tuple[int, int, int]]:
        size = self._source.size
        if size < self.data_start + _FOOTER.size:
            raise self._fail("archive is truncated (no tile index)")
        magic, offset, count, crc = _FOOTER.unpack(self._source.read(size - _FOOTER.size,
                                                                     _FOOTER.size))
        if magic != FOOTER_MAGIC:
            hint = ("; its intact tiles are recovered by `georsic decompress --ignore-errors`, "
                    "georsic.decompress(..., ignore_errors=True) or georsic.open(..., "
                    "recover=True)") if self.version >= 4 else ""
            raise self._fail("archive is truncated, damaged or has bytes appended (tile index "
                             f"footer missing){hint}")
        if offset + count * _ENTRY.size != size - _FOOTER.size or offset < self.data_start:
            raise self._fail("archive tile index is damaged (inconsistent size)")
        index = self._source.read(offset, count * _ENTRY.size)
        if zlib.crc32(index) != crc:
            raise self._fail("archive tile index is corrupt (checksum mismatch)")
        entries = [_ENTRY.unpack_from(index, i * _ENTRY.size) for i in range(count)]
        head = _RECORD.size if self.version >= 4 else 0
        for number, (start, length, _) in enumerate(entries):
            if start < self.data_start or start + head + length > offset:
                raise self._fail(f"tile {number} lies outside the archive's data")
        return entries

    def _expected_tiles(self) -> int | None:
        try:
            if self.version >= 5:
                from georsic.pyramid import record_count

                return record_count(self.header)
            tiling = self.header["tiling"]
            return int(tiling["rows"]) * int(tiling["cols"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def _scan(self) -> list[tuple[int, int, int] | None]:
        """The intact tile records of a version-4 archive, found without its index."""
        expected = self._expected_tiles()
        if expected is None or expected <= 0:
            raise self._fail("archive header does not say how many tiles it holds")
        found: list[tuple[int, int, int] | None] = [None] * expected
        size = self._source.size
        if size <= self.data_start:
            return found
        with self._source.whole() as data:
            pos = data.find(TILE_MAGIC, self.data_start)
            while 0 <= pos <= size - _RECORD.size:
                _, number, length, crc = _RECORD.unpack_from(data, pos)
                end = pos + _RECORD.size + length
                if number < expected and found[number] is None and end <= size and \
                        record_crc(number, data[pos + _RECORD.size:end]) == crc:
                    found[number] = (pos, length, crc)
                    pos = data.find(TILE_MAGIC, end)
                else:
                    pos = data.find(TILE_MAGIC, pos + 1)
        return found

    @property
    def missing(self) -> list[int]:
        """Tiles a recovering reader did not find (empty when the index was intact)."""
        return [number for number, entry in enumerate(self._index) if entry is None]

    @property
    def tile_count(self) -> int:
        return len(self._index)

    @property
    def size(self) -> int:
        return self._source.size

    @property
    def identity(self) -> tuple:
        """What changes when the archive's bytes do (inode and time of a file; size and ETag
        or time of a remote object)."""
        return self._source.identity

    def prefetch(self, numbers) -> None:
        """Fetch these tiles' records of a remote archive ahead of :meth:`read_tile`: one
        request per run of adjacent records, the runs at once (a local file is read as
        :meth:`read_tile` needs it).  Each record is kept until it is read once."""
        if not self.remote:
            return
        head = _RECORD.size if self.version >= 4 else 0
        with self._tiles_lock:
            wanted = sorted({n for n in numbers if 0 <= n < len(self._index)
                             and self._index[n] is not None and n not in self._tiles})
        spans = {n: (self._index[n][0], self._index[n][0] + head + self._index[n][1])
                 for n in wanted}
        runs = merge_runs(list(spans.values()))
        blobs = self._source.read_ranges(runs)
        with self._tiles_lock:
            for n, (start, end) in spans.items():
                run = next(i for i, (a, b) in enumerate(runs) if a <= start and end <= b)
                offset = runs[run][0]
                self._tiles[n] = blobs[run][start - offset:end - offset]

    def tile_sizes(self) -> list[int]:
        """Payload bytes of each tile (0 for a tile a recovering reader did not find)."""
        return [entry[1] if entry else 0 for entry in self._index]

    def read_tile(self, number: int) -> bytes:
        entry = self._index[number]
        if entry is None:
            raise TileError(f"{self.name}: tile {number} is missing (the archive was cut "
                            "short or damaged there)", number)
        offset, length, crc = entry
        head_size = _RECORD.size if self.version >= 4 else 0
        with self._tiles_lock:
            record = self._tiles.pop(number, None)
        if record is None:
            record = self._source.read(offset, head_size + length)
        head, payload = record[:head_size], record[head_size:]
        if self.version < 4:
            if len(payload) != length or zlib.crc32(payload) != crc:
                raise TileError(f"{self.name}: tile {number} is corrupt (checksum "
                                "mismatch)", number)
            return payload
        if len(head) != _RECORD.size or len(payload) != length or \
                _RECORD.unpack(head) != (TILE_MAGIC, number, length, crc) or \
                record_crc(number, payload) != crc:
            raise TileError(f"{self.name}: tile {number} is corrupt (checksum mismatch)",
                            number)
        return payload

    def close(self) -> None:
        with self._tiles_lock:
            self._tiles.clear()
        self._source.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
