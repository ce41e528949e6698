"""Tile grid with overlap, and blending of overlapping tiles into seamless mosaics.

Tiles of ``size`` pixels start every ``size - overlap`` pixels; the last row and column are
clipped to the raster.  In an overlap, neighbouring tiles are cross-faded with linear ramps that
sum to one, so coding errors of the two tiles average out instead of meeting at a hard seam.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window


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
    size: int = 512
    overlap: int = 32

    def __post_init__(self) -> None:
        if self.size < 64 or self.size % 64:
            raise ValueError(f"tile size must be a multiple of 64 and at least 64, not {self.size}")
        if not 0 <= self.overlap <= self.size // 4:
            raise ValueError(f"overlap must be between 0 and a quarter of the tile size "
                             f"({self.size // 4}), not {self.overlap}")

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


class Mosaic:
    """Accumulates weighted tiles over a target window and yields the blended result."""

    def __init__(self, grid: TileGrid, window: Window, bands: int) -> None:
        self.grid = grid
        self.window = window
        self.sum = np.zeros((bands, int(window.height), int(window.width)), dtype=np.float64)
        self.weight = np.zeros((int(window.height), int(window.width)), dtype=np.float64)

    def add(self, tile: Tile, values: np.ndarray) -> None:
        """Add a decoded tile (bands, h, w), clipped to the target window."""
        t, w = tile.window, self.window
        x0, y0 = max(t.col_off, w.col_off), max(t.row_off, w.row_off)
        x1 = min(t.col_off + t.width, w.col_off + w.width)
        y1 = min(t.row_off + t.height, w.row_off + w.height)
        if x0 >= x1 or y0 >= y1:
            return
        weights = self.grid.weights(tile)
        src = (slice(y0 - t.row_off, y1 - t.row_off), slice(x0 - t.col_off, x1 - t.col_off))
        dst = (slice(y0 - w.row_off, y1 - w.row_off), slice(x0 - w.col_off, x1 - w.col_off))
        self.sum[(slice(None), *dst)] += values[(slice(None), *src)] * weights[src]
        self.weight[dst] += weights[src]

    def result(self) -> np.ndarray:
        return self.sum / np.maximum(self.weight, 1e-12)
