"""Tile grid with overlap, and blending of overlapping tiles into seamless mosaics.

Tiles of ``size`` pixels start every ``size - overlap`` pixels; the last row and column are
clipped to the raster.  In an overlap, neighbouring tiles are cross-faded with linear ramps that
sum to one, so coding errors of the two tiles average out instead of meeting at a hard seam.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from rasterio.windows import Window

from georsic.defaults import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE
from georsic.errors import InputError

#: Largest tile edge: a tile is coded in one piece, so it must fit in memory.
MAX_TILE_SIZE = 8192


@dataclass(frozen=True)
class Tile:
    index: int
    row: int
    col: int
    window: Window


@dataclass(frozen=True)
class TileGrid:
    width: int
    height: int
    size: int = DEFAULT_TILE_SIZE
    overlap: int = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        problem = self.problem(self.size, self.overlap)
        if problem:
            raise ValueError(problem)

    @staticmethod
    def problem(size: int, overlap: int) -> str | None:
        """What is wrong with a tile size and overlap (None: nothing)."""
        if not isinstance(size, Integral) or size < 64 or size % 64 or size > MAX_TILE_SIZE:
            return (f"tile size must be a multiple of 64 from 64 to {MAX_TILE_SIZE}, not "
                    f"{size}")
        if not isinstance(overlap, Integral) or not 0 <= overlap <= size // 4:
            return (f"overlap must be between 0 and a quarter of the tile size "
                    f"({size // 4}), not {overlap}")
        return None

    @classmethod
    def check(cls, size: int, overlap: int) -> None:
        """An :class:`~georsic.errors.InputError` for a tile size or overlap a user gave."""
        problem = cls.problem(size, overlap)
        if problem:
            raise InputError(problem)

    @property
    def stride(self) -> int:
        return self.size - self.overlap

    def _starts(self, length: int) -> list[int]:
        if length <= self.size:
            return [0]
        count = -(-(length - self.overlap) // self.stride)
        return [i * self.stride for i in range(count)]

    @property
    def rows(self) -> int:
        return len(self._starts(self.height))

    @property
    def cols(self) -> int:
        return len(self._starts(self.width))

    def __len__(self) -> int:
        return self.rows * self.cols

    def tile(self, index: int) -> Tile:
        row, col = divmod(index, self.cols)
        y0 = self._starts(self.height)[row]
        x0 = self._starts(self.width)[col]
        window = Window(x0, y0, min(self.size, self.width - x0), min(self.size, self.height - y0))
        return Tile(index, row, col, window)

    def __iter__(self) -> Iterator[Tile]:
        return (self.tile(i) for i in range(len(self)))

    def tiles_in(self, window: Window) -> list[Tile]:
        """Tiles that intersect ``window`` (pixel coordinates)."""
        x0, y0 = window.col_off, window.row_off
        x1, y1 = x0 + window.width, y0 + window.height
        found = []
        for tile in self:
            w = tile.window
            if w.col_off < x1 and w.col_off + w.width > x0 and w.row_off < y1 and \
                    w.row_off + w.height > y0:
                found.append(tile)
        return found

    def weights(self, tile: Tile) -> np.ndarray:
        """Blending weights (H, W) of a tile: ramps across overlaps shared with a neighbour."""
        w = tile.window
        wy = self._ramp(int(w.height), tile.row > 0, tile.row < self.rows - 1)
        wx = self._ramp(int(w.width), tile.col > 0, tile.col < self.cols - 1)
        return np.outer(wy, wx).astype(np.float32)

    def _ramp(self, length: int, before: bool, after: bool) -> np.ndarray:
        ramp = np.ones(length, dtype=np.float32)
        n = min(self.overlap, length)
        if n == 0:
            return ramp
        rise = (np.arange(n, dtype=np.float32) + 0.5) / n
        if before:
            ramp[:n] = np.minimum(ramp[:n], rise)
        if after:
            ramp[length - n:] = np.minimum(ramp[length - n:], rise[::-1])
        return ramp


    def cell(self, tile: Tile) -> Window:
        """The part of the raster that is final once ``tile`` and its upper/left neighbours
        are decoded: from the tile's start to the next tile's start (the raster's edge for the
        last row or column)."""
        stride = self.stride
        x0, y0 = tile.col * stride, tile.row * stride
        x1 = (tile.col + 1) * stride if tile.col < self.cols - 1 else self.width
        y1 = (tile.row + 1) * stride if tile.row < self.rows - 1 else self.height
        return Window(x0, y0, x1 - x0, y1 - y0)


def intersect(a: Window, b: Window) -> Window | None:
    """The overlap of two windows, or None."""
    x0, y0 = max(a.col_off, b.col_off), max(a.row_off, b.row_off)
    x1 = min(a.col_off + a.width, b.col_off + b.width)
    y1 = min(a.row_off + a.height, b.row_off + b.height)
    if x0 >= x1 or y0 >= y1:
        return None
    return Window(x0, y0, x1 - x0, y1 - y0)


def _slices(inner: Window, outer: Window) -> tuple[slice, slice]:
    """Array slices of ``inner`` within an array that covers ``outer``."""
    y, x = int(inner.row_off - outer.row_off), int(inner.col_off - outer.col_off)
    return slice(y, y + int(inner.height)), slice(x, x + int(inner.width))


@dataclass(frozen=True)
class Piece:
    """A decoded tile (or a part of one) ready for blending: values already multiplied by the
    tile's blending weights, the weights, and the tile's invalid-pixel planes (or None)."""

    window: Window
    weighted: np.ndarray
    weight: np.ndarray
    invalid: np.ndarray | None = None

    @classmethod
    def from_tile(cls, grid: TileGrid, tile: Tile, values: np.ndarray,
                  invalid: np.ndarray | None) -> Piece:
        weight = grid.weights(tile)
        return cls(tile.window, values * weight, weight, invalid)

    def crop(self, window: Window) -> Piece | None:
        """The part of this piece inside ``window`` (copied, so the rest can be freed)."""
        part = intersect(self.window, window)
        if part is None:
            return None
        ys, xs = _slices(part, self.window)
        return Piece(part, self.weighted[:, ys, xs].copy(), self.weight[ys, xs].copy(),
                     None if self.invalid is None else self.invalid[:, ys, xs].copy())


def blend(target: Window, pieces: list[Piece], bands: int, planes: int
          ) -> tuple[np.ndarray, np.ndarray | None]:
    """Blend pieces over ``target``: ``(values (bands, h, w), invalid (planes, h, w) or None)``.

    Pixels that no piece covers (a tile lost to damage) are marked invalid.
    """
    h, w = int(target.height), int(target.width)
    total = np.zeros((bands, h, w), dtype=np.float32)
    weight = np.zeros((h, w), dtype=np.float32)
    invalid = np.zeros((planes, h, w), dtype=bool)
    for piece in pieces:
        part = intersect(piece.window, target)
        if part is None:
            continue
        src, dst = _slices(part, piece.window), _slices(part, target)
        total[(slice(None), *dst)] += piece.weighted[(slice(None), *src)]
        weight[dst] += piece.weight[src]
        if piece.invalid is not None:
            invalid[(slice(None), *dst)] |= piece.invalid[(slice(None), *src)]
    lost = weight == 0
    total /= np.where(lost, 1.0, weight)
    invalid |= lost[None]
    return total, (invalid if invalid.any() else None)
