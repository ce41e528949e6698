"""The overview pyramid stored inside an archive (format version 5, see ``docs/format.md``).

A coarse level of factor ``f`` is the source averaged over ``f`` x ``f`` blocks (GDAL's
``average`` resampling, which skips no-data pixels), ``ceil(W / f)`` x ``ceil(H / f)`` pixels,
cut into tiles of the archive's tile size and overlap and coded with the archive's codec and
quality as extra tile records after the full-resolution ones.  A zoomed-out view then decodes
a few small tiles instead of the whole raster.

The header names the factors (``"pyramid": {"factors": [4, 16]}``); every level's grid follows
from them, so the record number of any level tile is known without reading anything else.
This module imports only the tiling (no codec, no torch): the archive reader uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from georsic.errors import InputError
from georsic.tiling import TileGrid

#: Each level is this many times coarser than the one before.
STEP = 4
#: Levels are added until the coarsest one's longer side is at most this many pixels.
MAX_COARSE_SIDE = 512
#: Choices of ``--pyramid``: ``auto`` (:func:`auto_factors`) or ``none``.
CHOICES = ("auto", "none")


@dataclass(frozen=True)
class Level:
    """One level of an archive: its factor (1: full resolution), grid, and first record."""

    factor: int
    grid: TileGrid
    first: int

    @property
    def width(self) -> int:
        return self.grid.width

    @property
    def height(self) -> int:
        return self.grid.height


def auto_factors(width: int, height: int, step: int = STEP,
                 max_side: int = MAX_COARSE_SIDE) -> tuple[int, ...]:
    """Factors ``step``, ``step**2`` ... until a level's longer side is at most ``max_side``
    (none for a raster already that small)."""
    factors: list[int] = []
    factor = 1
    while -(-max(width, height) // factor) > max_side:
        factor *= step
        factors.append(factor)
    return tuple(factors)


def resolve(spec: str | Sequence[int] | None, width: int, height: int) -> tuple[int, ...]:
    """The factors to store for ``spec``: ``auto``/None, ``none``, or a list of factors
    (each a whole number of at least 2, whose level is at least one pixel)."""
    if spec is None or spec == "auto":
        return auto_factors(width, height)
    if spec == "none":
        return ()
    if isinstance(spec, str):
        try:
            spec = [int(part) for part in spec.split(",")]
        except ValueError:
            raise InputError(f"pyramid {spec!r}: give auto, none or factors such as "
                             "4,16,64") from None
    try:
        factors = sorted({int(f) for f in spec})
        valid = all(int(f) == f and f >= 2 for f in spec)
    except (TypeError, ValueError):
        valid, factors = False, []
    if not valid:
        raise InputError(f"pyramid factors must be whole numbers of at least 2, got {list(spec)}")
    big = [f for f in factors if f > max(width, height)]
    if big:
        raise InputError(f"pyramid factor {big[0]} is larger than the raster "
                         f"({width}x{height})")
    return tuple(factors)


def level_grid(width: int, height: int, factor: int, size: int, overlap: int) -> TileGrid:
    """The tile grid of the level of ``factor`` of a ``width`` x ``height`` raster."""
    return TileGrid(-(-width // factor), -(-height // factor), size, overlap)


def factors_of(header: dict) -> tuple[int, ...]:
    """The pyramid factors a header records (none before version 5, or when skipped)."""
    pyramid = header.get("pyramid") or {}
    factors = pyramid.get("factors") or []
    if not isinstance(factors, list) or not all(isinstance(f, int) and not isinstance(f, bool)
                                                and f >= 2 for f in factors) or \
            sorted(set(factors)) != factors:
        raise ValueError(f"pyramid factors {factors!r} are not increasing whole numbers >= 2")
    return tuple(factors)


def levels(header: dict) -> list[Level]:
    """Every level of an archive, full resolution first, with the record number of its first
    tile (the full-resolution tiles come first, then each coarse level's)."""
    raster, tiling = header["raster"], header["tiling"]
    width, height = int(raster["width"]), int(raster["height"])
    size, overlap = int(tiling["size"]), int(tiling["overlap"])
    out, first = [], 0
    for factor in (1, *factors_of(header)):
        grid = level_grid(width, height, factor, size, overlap)
        out.append(Level(factor, grid, first))
        first += len(grid)
    return out


def record_count(header: dict) -> int:
    """Tile records an archive with this header holds, every level together."""
    last = levels(header)[-1]
    return last.first + len(last.grid)

