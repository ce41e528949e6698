"""Reading an archive in place: any window at any output size, served from the coarsest
pyramid level that is fine enough, through one bounded cache of decoded tiles per process.

Every band, every caller (the VRT pixel function, :meth:`Archive.read` with ``out_shape``,
:meth:`Archive.to_xarray` with a ``level``) shares :data:`CACHE`: an RGB read through GDAL,
which asks for each band separately, decodes each tile once.  The cache holds decoded tiles as
blending pieces and is bounded in bytes (``GEORSIC_TILE_CACHE_MB``, default 512).

At full resolution the pixels are those of ``georsic decompress``: a pixel is blended from
the same tiles in the same order (tile order, as :meth:`Archive.blocks` does), each decoded on
one torch thread (or several, where the archive's tiles decode to the same bits on any number).
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from rasterio.windows import Window

from georsic.pyramid import Level
from georsic.tiling import Piece, blend

#: Environment variable: the cache's bound in MiB.
CACHE_ENV = "GEORSIC_TILE_CACHE_MB"
DEFAULT_CACHE_MB = 512


class TileCache:
    """Decoded tiles (:class:`~georsic.tiling.Piece`), least recently used dropped first once
    their bytes pass ``max_bytes``; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.hits = self.misses = 0
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def size_of(piece: Piece) -> int:
        extra = 0 if piece.invalid is None else piece.invalid.nbytes
        return piece.weighted.nbytes + piece.weight.nbytes + extra

    def get(self, key) -> Piece | None:
        with self._lock:
            piece = self._items.get(key)
            if piece is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return piece

    def put(self, key, piece: Piece) -> None:
        size = self.size_of(piece)
        with self._lock:
            if key in self._items:
                return
            self._items[key] = piece
            self.bytes += size
            while self.bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self.bytes -= self.size_of(old)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)


def _cache_bytes() -> int:
    try:
        megabytes = float(os.environ.get(CACHE_ENV, DEFAULT_CACHE_MB))
    except ValueError:
        megabytes = DEFAULT_CACHE_MB
    return int(max(megabytes, 1) * 2**20)


#: The process's cache of decoded tiles.
CACHE = TileCache(_cache_bytes())


def _identity(archive) -> tuple:
    """The archive's path (or URL and options) and version (size, time or ETag)."""
    location = archive._location()
    return (location.key if archive.remote else location, archive._reader.identity)


def _prior_key(prior) -> tuple | None:
    if prior is None:
        return None
    return (prior.sha256, prior.fidelity, prior.window, prior.overlap, prior.mode)


def _decode(archive, level: Level, index: int, prior, threads: int) -> Piece:
    """Decode one tile of ``level`` (on this thread, ``threads`` torch threads)."""
    from georsic.parallel import set_tile_threads, thread_codec

    set_tile_threads(threads)
    codec = thread_codec(archive.model_id, archive.codec_info["weights_sha256"], "cpu",
                         threads)
    tile = level.grid.tile(index)
    number = None if level.factor == 1 else level.first + index
    values, invalid = archive._decode_tile(tile, codec, prior, number)
    return Piece.from_tile(level.grid, tile, values, invalid)


def _decode_task(path, recover: bool, level: Level, index: int, prior,
                 threads: int) -> Piece:
    from georsic.reader import _thread_archive

    return _decode(_thread_archive(path, recover), level, index, prior, threads)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            from georsic.parallel import cores

            _POOL = ThreadPoolExecutor(max(cores(), 1), thread_name_prefix="georsic-inplace")
        return _POOL


def pieces(archive, level: Level, window: Window, prior=None) -> list[Piece]:
    """The decoded tiles of ``level`` under ``window`` (level pixels), in tile order: from
    :data:`CACHE`, the missing ones decoded at once on a pool of one thread per core (a tile
    alone gets every core where its bits do not depend on the thread count)."""
    identity, key = _identity(archive), _prior_key(prior)
    tiles = level.grid.tiles_in(window)
    keys = [(identity, level.factor, tile.index, key) for tile in tiles]
    found = [CACHE.get(k) for k in keys]
    missing = [i for i, piece in enumerate(found) if piece is None]
    if missing:
        from georsic.parallel import cores, tile_threads

        # always on the pool's threads, whose codecs stay loaded between reads
        invariant = archive._thread_invariant("cpu", prior)
        _, per_tile = tile_threads(cores(), len(missing), invariant)
        path = archive._location()
        recover = bool(getattr(archive._reader, "recovered", False))
        futures = [_pool().submit(_decode_task, path, recover, level, tiles[i].index,
                                  prior, per_tile) for i in missing]
        decoded = [future.result() for future in futures]
        for i, piece in zip(missing, decoded, strict=True):
            CACHE.put(keys[i], piece)
            found[i] = piece
    return found


def read_level(archive, level: Level, window: Window, prior=None, with_mask: bool = False):
    """``window`` (pixels of ``level``) decoded to (bands, h, w) in the raster's dtype; with
    ``with_mask`` also its validity (h, w), 255 where any band is valid, else 0."""
    from georsic.parallel import torch_threads

    with torch_threads(1):
        found = pieces(archive, level, window, prior)
    values, invalid = blend(window, found, archive.count, archive.planes)
    data = archive.finalize(values, invalid)
    if not with_mask:
        return data
    mask = np.full(data.shape[1:], 255, np.uint8)
    if invalid is not None:
        mask[invalid.all(axis=0)] = 0
    return data, mask


def choose_level(levels: list[Level], window: Window, shape: tuple[int, int]) -> Level:
    """The coarsest level whose pixels under ``window`` are at least ``shape`` (h, w)."""
    best = levels[0]
    for level in levels[1:]:
        cover = level_window(level, window)
        if cover.height >= shape[0] and cover.width >= shape[1]:
            best = level
    return best


def level_window(level: Level, window: Window) -> Window:
    """The pixels of ``level`` that cover ``window`` (full-resolution pixels)."""
    f = level.factor
    x0, y0 = math.floor(window.col_off / f), math.floor(window.row_off / f)
    x1 = min(math.ceil((window.col_off + window.width) / f), level.width)
    y1 = min(math.ceil((window.row_off + window.height) / f), level.height)
    return Window(x0, y0, max(x1 - x0, 1), max(y1 - y0, 1))


def _sample(length: float, offset: float, out: int, factor: int, start: int,
            size: int) -> np.ndarray:
    """Indices into a level's window (``start``, ``size`` level pixels) of the pixel under
    the centre of each of ``out`` output pixels over ``offset``, ``length`` (full res)."""
    centres = offset + (np.arange(out) + 0.5) * (length / out)
    return np.clip(np.floor(centres / factor).astype(np.int64) - start, 0, size - 1)


def read_window(archive, window: Window, shape: tuple[int, int], prior=False,
                fidelity: float | None = None, with_mask: bool = False):
    """``window`` (full-resolution pixels) resampled to ``shape`` (h, w): read from the
    coarsest level at least as fine as the output (nearest pixel from there), or at full
    resolution when ``shape`` is the window's own.  With ``with_mask``: ``(data, mask)``,
    the mask (h, w) 255 where valid, as :func:`read_level`."""
    from georsic.prior.restore import DEFAULT_FIDELITY

    tile_prior = archive.tile_prior(prior, DEFAULT_FIDELITY if fidelity is None else fidelity,
                                    "cpu") if prior is not None else None
    height, width = shape
    level = choose_level(archive.levels, window, shape)
    source = level_window(level, window)
    data, mask = read_level(archive, level, source, tile_prior, with_mask=True)
    if (int(source.height), int(source.width)) != (height, width):
        rows = _sample(window.height, window.row_off, height, level.factor,
                       int(source.row_off), int(source.height))
        cols = _sample(window.width, window.col_off, width, level.factor,
                       int(source.col_off), int(source.width))
        data, mask = data[:, rows[:, None], cols[None, :]], mask[rows[:, None], cols[None, :]]
    return (data, mask) if with_mask else data

