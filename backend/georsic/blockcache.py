"""GDAL's block cache sized to the raster being coded, so that a run's memory does not grow with
the raster (issue 29).

GDAL keeps the blocks it reads and writes in one cache, 5 % of the RAM by default, and frees
none until the cache is full: a run over a large raster grows by that much, whatever it needs.
What a tiled run needs is one row of tiles: the compressor reads each tile's window (tile plus
overlaps) in row order, and a source stored in strips decodes a strip once per row of tiles
only while the row's strips stay cached; the decompressor writes each row of tiles before the
next.  :func:`sized_block_cache` sets the cache to :data:`ROWS_CACHED` rows of tiles, between
:data:`MIN_MB` and :data:`~georsic.defaults.GDAL_CACHE_MB`, for the duration of a run, unless
``GDAL_CACHEMAX`` is set in the environment or in the caller's ``rasterio.Env``.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator

from georsic.defaults import GDAL_CACHE_MB

#: Rows of tiles the cache holds (the row being coded, the overlaps of the next, slack).
ROWS_CACHED = 1.5
#: The smallest cache a run sets, MB.
MIN_MB = 32

_LOCK = threading.Lock()
#: The sizes (MB) of the runs in progress in this process, and the cache before the first.
_ACTIVE: list[int] = []
_BEFORE: list = []


def cache_megabytes(width: int, rows: int, bands: int, itemsize: int) -> int:
    """The block cache (MB) for a run over a raster ``width`` pixels wide whose tiles read or
    write ``rows`` rows of ``bands`` bands of ``itemsize`` bytes."""
    row_of_tiles = width * rows * bands * itemsize / 2**20
    return int(min(GDAL_CACHE_MB, max(MIN_MB, math.ceil(ROWS_CACHED * row_of_tiles))))


def _caller_sets_cache() -> bool:
    if "GDAL_CACHEMAX" in os.environ:
        return True
    import rasterio.env

    try:
        return "GDAL_CACHEMAX" in rasterio.env.getenv()
    except rasterio.errors.EnvError:  # no rasterio.Env is active
        return False


@contextlib.contextmanager
def sized_block_cache(width: int, rows: int, bands: int, itemsize: int) -> Iterator[None]:
    """GDAL's block cache at :func:`cache_megabytes` while the block runs, then as it was.
    Runs at once in one process (threads of a Dask worker, nested calls) share the largest
    size any of them needs; the last to end puts back the cache from before the first."""
    from rasterio.env import get_gdal_config, set_gdal_config

    size = cache_megabytes(width, rows, bands, itemsize)
    with _LOCK:
        sized = bool(_ACTIVE) or not _caller_sets_cache()
        if sized:
            if not _ACTIVE:
                _BEFORE[:] = [get_gdal_config("GDAL_CACHEMAX")]
            _ACTIVE.append(size)
            set_gdal_config("GDAL_CACHEMAX", max(_ACTIVE))
    try:
        yield
    finally:
        if sized:
            with _LOCK:
                _ACTIVE.remove(size)
                set_gdal_config("GDAL_CACHEMAX", max(_ACTIVE) if _ACTIVE else _BEFORE[0])
