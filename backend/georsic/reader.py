"""Reading an archive: :class:`Archive` (metadata, verification, decoding of any region)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from georsic.archive import ArchiveReader, unpack_sections
from georsic.bandmap import BandMapping
from georsic.codec import get_codec, resolve_device
from georsic.control import Cancel, Progress, check_cancel
from georsic.errors import ArchiveError, GeorsicError, TileError, WeightsError
from georsic.masks import decode_mask
from georsic.rasterinfo import RasterInfo
from georsic.tiling import Piece, Tile, TileGrid, blend, intersect
from georsic.weights import find_model


def _fit_note(fit: dict | None) -> str:
    """How the quality was chosen, for :meth:`Archive.describe` (empty when it was given)."""
    if not fit:
        return ""
    target = (f"PSNR {fit['target_psnr']:g} dB" if fit.get("target_psnr") is not None
              else f"{fit['target_bpp']:g} bpp")
    reached = "" if fit.get("reached", True) else ", out of reach"
    psnr = "no error" if fit.get("psnr") is None else f"{fit['psnr']:.2f} dB"
    return f" (fitted to {target}{reached}: measured {psnr} at {fit['bpp']:.4f} bpp)"


class Archive:
    """An open ``.grsc`` archive: metadata, and decoding of any region.

    Use :func:`georsic.open` to get one.
    """

    def __init__(self, path: str | Path) -> None:
        self._reader = ArchiveReader(path)
        try:
            header = self._reader.header
            self.header = header
            self.info = RasterInfo.from_dict(header["raster"])
            self.mapping = BandMapping.from_dict(header["band_mapping"])
            tiling = header["tiling"]
            self.grid = TileGrid(self.info.width, self.info.height, tiling["size"],
                                 tiling["overlap"])
            self.codec_info = header["codec"]
            self.planes = int(header["mask"]["planes"])
        except (KeyError, TypeError, ValueError) as exc:
            self._reader.close()
            raise ArchiveError(f"{Path(path).name}: archive header is incomplete ({exc})") from None
        if len(self.grid) != self._reader.tile_count:
            self._reader.close()
            raise ArchiveError(f"{Path(path).name}: archive holds {self._reader.tile_count} "
                               f"tiles, its header describes {len(self.grid)}")

    # ---- metadata
    path = property(lambda self: self._reader.path)
    width = property(lambda self: self.info.width)
    height = property(lambda self: self.info.height)
    count = property(lambda self: self.info.count)
    dtype = property(lambda self: self.info.dtype)
    crs = property(lambda self: self.info.crs_wkt)
    transform = property(lambda self: self.info.affine)
    tile_count = property(lambda self: len(self.grid))
    model_id = property(lambda self: self.codec_info["model_id"])
    quality = property(lambda self: self.codec_info["quality"])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return rasterio.transform.array_bounds(self.height, self.width, self.transform)[::1]

    @property
    def bpp(self) -> float:
        return self._reader.size * 8 / (self.width * self.height)

    def describe(self) -> str:
        """A human-readable report, as ``georsic info`` prints it."""
        info, crs = self.info, self.info.crs
        crs_name = (crs.to_string() if crs and crs.to_epsg() else
                    (crs.to_wkt()[:60] + "..." if crs else "none"))
        left, bottom, right, top = self.bounds
        lines = [
            f"archive:   {self.path} ({self._reader.size:,} bytes, {self.bpp:.4f} bpp)",
            f"raster:    {info.width} x {info.height}, {info.count} band(s) of {info.dtype}",
            f"crs:       {crs_name}",
            f"bounds:    {left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g}",
            f"pixel:     {info.transform[0]:.6g} x {-info.transform[4]:.6g}",
            f"nodata:    {info.nodata} (mask: {info.mask_kind})",
            f"tiles:     {self.grid.cols} x {self.grid.rows} of {self.grid.size} px, "
            f"overlap {self.grid.overlap}",
            f"model:     {self.model_id} (weights {self.codec_info['weights_sha256'][:12]}), "
            f"quality {self.quality:g}{_fit_note(self.codec_info.get('fit'))}",
            f"software:  {self.header.get('software', '?')}",
        ]
        if any(info.descriptions):
            lines.append("bands:     " + ", ".join(d or "-" for d in info.descriptions))
        if info.overviews:
            lines.append("overviews: " + ", ".join(map(str, info.overviews))
                         + " (rebuilt on decompression)")
        return "\n".join(lines)

    # ---- decoding
    def window_for(self, bounds: tuple[float, float, float, float],
                   bounds_crs: str | None = None) -> Window:
        """Pixel window covering ``bounds`` (in ``bounds_crs``, default the archive's CRS)."""
        from rasterio.windows import from_bounds

        if bounds_crs and self.info.crs and rasterio.crs.CRS.from_user_input(bounds_crs) != \
                self.info.crs:
            from rasterio.warp import transform_bounds

            bounds = transform_bounds(bounds_crs, self.info.crs, *bounds, densify_pts=21)
        window = from_bounds(*bounds, transform=self.transform)
        x0, y0 = math.floor(window.col_off + 1e-6), math.floor(window.row_off + 1e-6)
        x1 = math.ceil(window.col_off + window.width - 1e-6)
        y1 = math.ceil(window.row_off + window.height - 1e-6)
        return self._clip(Window(x0, y0, x1 - x0, y1 - y0))

    def _clip(self, window: Window) -> Window:
        x0 = max(int(window.col_off), 0)
        y0 = max(int(window.row_off), 0)
        x1 = min(int(window.col_off + window.width), self.width)
        y1 = min(int(window.row_off + window.height), self.height)
        if x1 <= x0 or y1 <= y0:
            raise GeorsicError("the requested region does not overlap the archive's raster")
        return Window(x0, y0, x1 - x0, y1 - y0)

    def _tile_error(self, tile: Tile, exc: Exception) -> TileError:
        return TileError(f"{self.path.name}: tile {tile.index} (row {tile.row}, col "
                         f"{tile.col}) cannot be decoded: {exc}", tile.index)

    def _tile_sections(self, tile: Tile) -> list[bytes]:
        """The tile's sections (mask, lossless bands, streams), checksum and count checked."""
        payload = self._reader.read_tile(tile.index)
        try:
            sections = unpack_sections(payload, self._reader.version)
            per_image = int(self.codec_info["streams_per_image"])
            if len(sections) != 2 + per_image * len(self.mapping.groups):
                raise ValueError("wrong number of streams")
        except ValueError as exc:
            raise self._tile_error(tile, exc) from None
        return sections

    def _decode_tile(self, tile: Tile, codec) -> tuple[np.ndarray, np.ndarray | None]:
        sections = self._tile_sections(tile)
        h, w = int(tile.window.height), int(tile.window.width)
        per_image = int(self.codec_info["streams_per_image"])
        try:
            images = [codec.decode(sections[2 + i * per_image: 2 + (i + 1) * per_image], h, w,
                                   self.quality) for i in range(len(self.mapping.groups))]
            invalid = decode_mask(sections[0], self.planes, h, w, self._reader.version)
        except (ValueError, zlib.error, RuntimeError) as exc:
            raise self._tile_error(tile, exc) from None
        values = self.mapping.decode(images, h, w).astype(np.float32)
        if self.mapping.lossless:
            raw = np.frombuffer(zlib.decompress(sections[1]), dtype=self.dtype)
            values[list(self.mapping.lossless)] = raw.reshape(-1, h, w)
        return values, invalid

    def blocks(self, window: Window | None = None, *, device: str = "auto",
               progress: Progress | None = None, cancel: Cancel | None = None,
               ignore_errors: bool = False, errors: list | None = None,
               ) -> Iterator[tuple[Window, np.ndarray, np.ndarray | None]]:
        """Decode ``window`` as blocks ``(window, values, invalid)``, one per tile, row-major.

        Each tile is decoded once. Between tiles only the tile to the left and the bottom
        overlap strips of the tile row above are kept, so memory depends on the tile size (and
        on the raster's width times the overlap), not on the size of the raster.
        """
        window = self._clip(window or Window(0, 0, self.width, self.height))
        codec = get_codec(self._weights(), resolve_device(device))
        needed = self.grid.tiles_in(window)
        above: dict[int, Piece] = {}   # column -> bottom strip of the tile above
        below: dict[int, Piece] = {}   # the same, being filled for the next tile row
        left: Piece | None = None
        row = -1
        for done, tile in enumerate(needed, start=1):
            check_cancel(cancel)
            if tile.row != row:
                above, below, left, row = below, {}, None, tile.row
            piece = self._decode_piece(tile, codec, ignore_errors, errors)
            if progress:
                progress(done, len(needed))
            cell = self.grid.cell(tile)
            target = intersect(cell, window)
            if target is not None:
                pieces = [above.get(tile.col - 1), above.get(tile.col),
                          left if left is not None and left.window.col_off < cell.col_off
                          else None, piece]
                values, invalid = blend(target, [p for p in pieces if p is not None],
                                        self.count, self.planes)
                yield target, values, invalid
            if piece is not None:
                rest = Window(tile.window.col_off, cell.row_off + cell.height,
                              tile.window.width, tile.window.height)
                strip = piece.crop(rest)
                if strip is not None:
                    below[tile.col] = strip
            left = piece

    def _decode_piece(self, tile: Tile, codec, ignore_errors: bool,
                      errors: list | None) -> Piece | None:
        try:
            values, invalid = self._decode_tile(tile, codec)
        except TileError as exc:
            if not ignore_errors:
                raise
            if errors is not None:
                errors.append(str(exc))
            return None
        return Piece.from_tile(self.grid, tile, values, invalid)

    def _weights(self):
        return find_model(self.model_id, self.codec_info["weights_sha256"])

    def verify(self, decode: bool = False, device: str = "auto",
               progress: Progress | None = None,
               cancel: Cancel | None = None) -> list[GeorsicError]:
        """The problems of this archive, one error each (its message names the tile or the
        weights); empty when the archive is intact.

        Checks every tile's checksum and stream layout and that the exact weights it needs are
        installed; with ``decode`` also decodes every tile (as long as decompressing). The
        header and index were checked when the archive was opened.
        """
        problems: list[GeorsicError] = []
        codec = None
        try:
            entry = self._weights()
            if decode:
                codec = get_codec(entry, resolve_device(device))
        except WeightsError as exc:
            problems.append(exc)
        for done, tile in enumerate(self.grid, start=1):
            check_cancel(cancel)
            try:
                if codec is not None:
                    self._decode_tile(tile, codec)
                else:
                    self._tile_sections(tile)
            except ArchiveError as exc:  # a TileError names the tile
                problems.append(exc)
            if progress:
                progress(done, len(self.grid))
        return problems

    def finalize(self, values: np.ndarray, invalid: np.ndarray | None) -> np.ndarray:
        """Decoded float values to the raster's dtype with no-data pixels restored exactly."""
        out = self.mapping.cast(values)
        nodata = self.info.nodata
        if self.info.mask_kind != "nodata" or nodata is None:
            if invalid is not None and out.dtype.kind == "f":
                out[np.broadcast_to(invalid, out.shape)] = np.nan
            return out
        dtype = out.dtype
        nodata_value = dtype.type(nodata)
        if not np.isnan(nodata):
            # a valid pixel that decodes to the no-data value would vanish: move it one step
            clash = out == nodata_value
            if clash.any():
                if dtype.kind == "f":
                    step = np.nextafter(nodata_value, dtype.type(np.inf))
                else:
                    step = nodata_value + 1 if nodata < np.iinfo(dtype).max else nodata_value - 1
                out[clash] = step
        if invalid is not None:
            out[np.broadcast_to(invalid, out.shape)] = nodata_value
        return out

    def read(self, window: Window | None = None, *, bounds=None, bounds_crs=None,
             device: str = "auto") -> np.ndarray:
        """Decode a region (default: everything) to (bands, h, w) in the raster's dtype."""
        if bounds is not None:
            window = self.window_for(bounds, bounds_crs)
        window = self._clip(window or Window(0, 0, self.width, self.height))
        out = np.empty((self.count, int(window.height), int(window.width)), dtype=self.dtype)
        for block, values, invalid in self.blocks(window, device=device):
            y0, x0 = int(block.row_off - window.row_off), int(block.col_off - window.col_off)
            out[:, y0:y0 + int(block.height), x0:x0 + int(block.width)] = \
                self.finalize(values, invalid)
        return out

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open(path: str | Path) -> Archive:  # noqa: A001 - mirrors rasterio.open
    """Open an archive for inspection and region reads."""
    return Archive(path)
