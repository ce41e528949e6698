"""Lossless coding of a tile's no-data mask (section 0 of a tile payload).

A mask is ``planes x height x width`` booleans (True: invalid).  Scattered no-data pixels, such
as saturated values of an 8-bit image that declares nodata 255, cost zlib nearly their
independent entropy.  They are far from independent: a pixel is likely invalid where the one
above is, and where the same pixel of the previous bands is.  Since archive version 3 the mask
is coded either way, whichever is smaller, behind a method byte:

``0`` + zlib(packbits(mask))
    as in versions 1 and 2 (which have no method byte);
``1`` + a varint per context + one rANS string
    each bit coded with the probability of its context (the bit above in the same plane, and
    the same pixel in up to two previous planes), estimated by the encoder from the tile and
    sent as a 16-bit frequency; planes, then rows, in order.  The decoder rebuilds the
    contexts one row at a time.  CompressAI's rANS coder (16-bit precision) does the coding.
"""

from __future__ import annotations

import zlib

import numpy as np
from compressai.ans import BufferedRansEncoder, RansDecoder

from georsic.archive import decode_varint, encode_varint

ZLIB, CONTEXT = 0, 1
#: rANS precision of CompressAI's coder: frequencies add up to 2**16; each CDF keeps one unit
#: for the coder's escape symbol, so the two bits share 2**16 - 1.
_TOTAL = (1 << 16) - 1


def _context_sizes(planes: int) -> list[int]:
    """Contexts of each plane: the bit above, and the same bit of up to two previous planes."""
    return [2 << min(k, 2) for k in range(planes)]


def _plane_contexts(mask: np.ndarray, k: int, start: int = 0, stop: int | None = None
                    ) -> np.ndarray:
    """Context of every bit of plane ``k`` in rows ``start:stop`` (from the row above and the
    same rows of the previous planes, all decoded before)."""
    plane = mask[k]
    stop = plane.shape[0] if stop is None else stop
    context = np.zeros((stop - start, plane.shape[1]), dtype=np.int32)
    first = max(start, 1)
    if stop > first:
        context[first - start:] = plane[first - 1:stop - 1]
    for back in (1, 2):
        if k >= back:
            context += mask[k - back, start:stop].astype(np.int32) << back
    return context


def _cdfs(frequencies: list[int]) -> list[list[int]]:
    return [[0, _TOTAL - f1, _TOTAL, 1 << 16] for f1 in frequencies]


def _frequencies(mask: np.ndarray) -> list[int]:
    """16-bit frequency of a set bit in each context, from the counts in ``mask``."""
    out = []
    for k, size in enumerate(_context_sizes(mask.shape[0])):
        context = _plane_contexts(mask, k).ravel()
        ones = np.bincount(context, weights=mask[k].ravel(), minlength=size)
        total = np.bincount(context, minlength=size)
        share = np.divide(ones, total, out=np.zeros(size), where=total > 0)
        out.extend(np.clip(np.rint(share * _TOTAL), 1, _TOTAL - 1).astype(int).tolist())
    return out


def _encode_contexts(mask: np.ndarray) -> bytes:
    frequencies = _frequencies(mask)
    cdfs = _cdfs(frequencies)
    offsets = np.cumsum([0, *_context_sizes(mask.shape[0])])
    encoder = BufferedRansEncoder()
    for k in range(mask.shape[0]):
        indexes = (_plane_contexts(mask, k) + offsets[k]).ravel().tolist()
        encoder.encode_with_indexes(mask[k].ravel().astype(np.int32).tolist(), indexes, cdfs,
                                    [4] * len(cdfs), [0] * len(cdfs))
    table = b"".join(encode_varint(f) for f in frequencies)
    return bytes([CONTEXT]) + table + encoder.flush()


def _decode_contexts(blob: bytes, planes: int, height: int, width: int) -> np.ndarray:
    sizes = _context_sizes(planes)
    frequencies, pos = [], 1
    for _ in range(sum(sizes)):
        value, pos = decode_varint(blob, pos)
        if not 1 <= value < _TOTAL:
            raise ValueError("mask context table is damaged")
        frequencies.append(value)
    cdfs = _cdfs(frequencies)
    lengths, zeros = [4] * len(cdfs), [0] * len(cdfs)
    offsets = np.cumsum([0, *sizes])
    decoder = RansDecoder()
    decoder.set_stream(blob[pos:])
    mask = np.zeros((planes, height, width), dtype=bool)
    for k in range(planes):
        for row in range(height):
            indexes = _plane_contexts(mask, k, row, row + 1)[0] + offsets[k]
            bits = decoder.decode_stream(indexes.tolist(), cdfs, lengths, zeros)
            mask[k, row] = np.asarray(bits) == 1
    return mask


def encode_mask(invalid: np.ndarray | None) -> bytes:
    """Section 0 of a version-3 tile: empty when nothing is invalid, else the smaller coding."""
    if invalid is None or not invalid.any():
        return b""
    invalid = np.ascontiguousarray(invalid, dtype=bool)
    packed = bytes([ZLIB]) + zlib.compress(np.packbits(invalid.reshape(-1)).tobytes(), 9)
    contexts = _encode_contexts(invalid)
    return contexts if len(contexts) < len(packed) else packed


def decode_mask(section: bytes, planes: int, height: int, width: int,
                version: int) -> np.ndarray | None:
    """The invalid mask of a tile, (planes, height, width) bool, or None when all are valid."""
    if not section:
        return None
    if version < 3:
        method, body = ZLIB, section
    else:
        method, body = section[0], section[1:]
    if method == ZLIB:
        bits = np.frombuffer(zlib.decompress(body), dtype=np.uint8)
        if bits.size * 8 < planes * height * width:
            raise ValueError("mask is shorter than the tile")
        mask = np.unpackbits(bits, count=planes * height * width).astype(bool)
        return mask.reshape(planes, height, width)
    if method == CONTEXT:
        return _decode_contexts(section, planes, height, width)
    raise ValueError(f"unknown mask coding {method}")
