"""The Python API: :func:`compress`, :func:`decompress` and :func:`open`.

The plugin, the command line and the tests all go through these three functions.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.windows import Window

from georsic import __version__
from georsic.archive import ArchiveReader, ArchiveWriter, pack_sections, unpack_sections
from georsic.bandmap import SUPPORTED_DTYPES, BandMapping, band_groups, full_range
from georsic.codec import get_codec, resolve_device
from georsic.defaults import DEFAULT_QUALITY, QUALITY_LEVELS
from georsic.errors import (
    ArchiveError,
    Cancelled,
    GeorsicError,
    InputError,
    OutputError,
    TileError,
    WeightsError,
)
from georsic.masks import decode_mask, encode_mask
from georsic.overviews import OverviewSpec
from georsic.overviews import resolve as resolve_overviews
from georsic.rasterinfo import RasterInfo
from georsic.ratecontrol import Probe, QualityFit, sample_windows, search_quality
from georsic.tiling import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE_SIZE,
    Piece,
    Tile,
    TileGrid,
    blend,
    intersect,
)
from georsic.weights import find_model

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]

#: Most steps of encoder-side latent refinement per tile (``refine``).
MAX_REFINE = 200
#: Bytes of header, index and footer that :func:`estimate` adds: a UTM-projected aerial
#: GeoTIFF's archive holds about 300 (the NEON sample: header 295, one tile's index and footer
#: 40); a longer CRS or many tags add more.
HEADER_ESTIMATE = 340
_STATS_ROWS = 256


@dataclass(frozen=True)
class ArchiveSummary:
    """What :func:`compress` produced."""

    path: Path
    width: int
    height: int
    count: int
    tiles: int
    bytes: int
    quality: float
    model_id: str
    seconds: float
    #: How the quality was fitted to a target PSNR or bit rate (None: it was given).
    fit: QualityFit | None = None

    @property
    def bpp(self) -> float:
        """Bits per pixel (over width x height, all bands together) of the whole archive."""
        return self.bytes * 8 / (self.width * self.height)


# ----------------------------------------------------------------------------------- input


@contextlib.contextmanager
def _open_raster(path: str | Path) -> Iterator[rasterio.io.DatasetReader]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if path.is_dir():
        raise InputError(f"input {path} is a folder, not a raster file")
    try:
        src = rasterio.open(path)
    except RasterioIOError:
        raise InputError(f"{path} is not a raster that GDAL can read") from None
    with src:
        if src.width == 0 or src.height == 0 or src.count == 0:
            raise InputError(f"{path} is an empty raster ({src.width}x{src.height}, "
                             f"{src.count} bands)")
        if len(set(src.dtypes)) > 1:
            raise InputError(f"{path} mixes data types across bands ({', '.join(src.dtypes)}); "
                             "GeoRSIC needs one data type for all bands")
        if src.dtypes[0] not in SUPPORTED_DTYPES:
            raise InputError(f"{path} holds {src.dtypes[0]} data, which GeoRSIC cannot compress "
                             f"(supported: {', '.join(SUPPORTED_DTYPES)})")
        yield src


def _validity(src, data: np.ndarray, info: RasterInfo, window: Window) -> np.ndarray | None:
    """Per-band validity (bands, h, w) or None when every pixel is valid."""
    if info.mask_kind == "nodata":
        nodata = info.nodata
        valid = ~np.isnan(data) if nodata is not None and np.isnan(nodata) else data != nodata
    elif info.mask_kind == "dataset":
        valid = np.broadcast_to(src.dataset_mask(window=window) > 0, data.shape)
    else:
        valid = np.ones(data.shape, dtype=bool)
    if data.dtype.kind == "f":
        valid = valid & np.isfinite(data)
    return None if valid.all() else np.ascontiguousarray(valid)


def _band_mapping(src, info: RasterInfo, cancel: Cancel | None) -> BandMapping:
    lossless = tuple(i for i, name in enumerate(info.colorinterp) if name == "alpha")
    groups = band_groups([i for i in range(info.count) if i not in lossless])
    fixed = full_range(info.dtype)
    if fixed:
        return BandMapping(groups, (fixed[0],) * info.count, (fixed[1],) * info.count,
                           info.dtype, lossless)
    low = np.full(info.count, np.inf)
    high = np.full(info.count, -np.inf)
    for row in range(0, info.height, _STATS_ROWS):
        _check(cancel)
        window = Window(0, row, info.width, min(_STATS_ROWS, info.height - row))
        data = src.read(window=window)
        valid = _validity(src, data, info, window)
        for band in range(info.count):
            values = data[band] if valid is None else data[band][valid[band]]
            if values.size:
                low[band] = min(low[band], float(values.min()))
                high[band] = max(high[band], float(values.max()))
    empty = ~np.isfinite(low)
    low[empty], high[empty] = 0.0, 1.0
    high = np.where(high > low, high, low + 1.0)
    return BandMapping(groups, tuple(low.tolist()), tuple(high.tolist()), info.dtype, lossless)


def _check(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("cancelled; no output was written")


# -------------------------------------------------------------------------------- compress


def _encode_raw(data: np.ndarray, bands: tuple[int, ...]) -> bytes:
    if not bands:
        return b""
    return zlib.compress(np.ascontiguousarray(data[list(bands)]).tobytes(), 6)


def compress(
    src: str | Path,
    dst: str | Path,
    *,
    quality: float | None = None,
    target_psnr: float | None = None,
    target_bpp: float | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    device: str = "auto",
    model: str | None = None,
    refine: int = 0,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> ArchiveSummary:
    """Compress a raster file into a ``.grsc`` archive.

    Parameters
    ----------
    src, dst:
        Input raster (anything GDAL reads) and output archive path.
    quality:
        0 (smallest file) to ``QUALITY_LEVELS - 1`` (best quality); fractional values
        interpolate between trained levels.  ``DEFAULT_QUALITY`` when neither it nor a
        target is given.
    target_psnr, target_bpp:
        Instead of ``quality``: the lowest quality whose PSNR reaches ``target_psnr`` dB, or
        the highest whose codec streams stay within ``target_bpp`` bits per pixel, as
        :func:`fit_quality` measures them on the raster (or sample windows of it).  The
        summary's ``quality`` is the one chosen and its ``fit`` what was measured; the
        archive's header records both (``codec.fit``).
    tile_size, overlap:
        Tile edge in pixels (multiple of 64) and the overlap between neighbouring tiles.
    device:
        ``auto``, ``cpu`` or ``cuda``.
    model:
        Model id from ``resources/weights/manifest.json``; the default codec when None.
    refine:
        Steps of encoder-side latent refinement per tile (0: off).  Encoding gets slower, the
        archive smaller at the same quality, and it decodes as any other (see
        :mod:`georsic.models.refine`; ``benchmarks/refine.py`` measures both).
    progress, cancel:
        ``progress(done, total)`` after each tile; ``cancel()`` returning True stops the run,
        raising :class:`~georsic.errors.Cancelled` and leaving no file behind.
    """
    started = time.perf_counter()
    fit = None
    if _targeted(quality, target_psnr, target_bpp):
        fit = fit_quality(src, target_psnr=target_psnr, target_bpp=target_bpp,
                          device=device, model=model, cancel=cancel)
        quality = fit.quality
    quality = _checked_quality(quality)
    if not 0 <= refine <= MAX_REFINE:
        raise InputError(f"refine must be between 0 and {MAX_REFINE} steps, not {refine}")
    entry = find_model(model)
    codec = get_codec(entry, resolve_device(device))
    with _open_raster(src) as raster:
        info = RasterInfo.from_dataset(raster)
        try:
            grid = TileGrid(info.width, info.height, tile_size, overlap)
        except ValueError as exc:
            raise GeorsicError(str(exc)) from None
        mapping = _band_mapping(raster, info, cancel)
        planes = 1 if info.mask_kind == "dataset" else info.count
        header = {
            "format": "georsic-archive", "software": f"georsic {__version__}",
            "raster": info.to_dict(), "band_mapping": mapping.to_dict(),
            "tiling": {"size": grid.size, "overlap": grid.overlap, "rows": grid.rows,
                       "cols": grid.cols},
            "mask": {"planes": planes},
            "codec": {"model_id": entry.id, "architecture": entry.architecture,
                      "weights_sha256": entry.sha256, "quality": float(quality),
                      "streams_per_image": codec.streams_per_image},
        }
        if fit is not None:
            header["codec"]["fit"] = fit.to_dict()
        with ArchiveWriter(dst, header) as writer:
            for tile in grid:
                _check(cancel)
                data = raster.read(window=tile.window)
                valid = _validity(raster, data, info, tile.window)
                invalid = None if valid is None else ~valid[:planes]
                sections = [encode_mask(invalid), _encode_raw(data, mapping.lossless)]
                for image in mapping.encode(data, valid):
                    sections.extend(codec.encode(image, quality, refine=refine))
                writer.add_tile(pack_sections(sections))
                if progress:
                    progress(tile.index + 1, len(grid))
            path = writer.close()
    return ArchiveSummary(path, info.width, info.height, info.count, len(grid),
                          path.stat().st_size, float(quality), entry.id,
                          time.perf_counter() - started, fit)


def _targeted(quality: float | None, target_psnr: float | None,
              target_bpp: float | None) -> bool:
    """Whether a target replaces the quality (checked: positive, one of them, no quality)."""
    if target_psnr is None and target_bpp is None:
        return False
    if quality is not None:
        raise InputError("give a quality or a target (PSNR or bpp), not both")
    for name, value in (("target_psnr", target_psnr), ("target_bpp", target_bpp)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a positive number, not {value}")
    if target_psnr is not None and target_bpp is not None:
        raise InputError("give one target: a PSNR or a bit rate")
    return True


def _checked_quality(quality: float | None) -> float:
    """``quality``, or ``DEFAULT_QUALITY`` for None, within the trained range."""
    quality = DEFAULT_QUALITY if quality is None else quality
    if not 0 <= quality <= QUALITY_LEVELS - 1:
        raise InputError(f"quality must be between 0 and {QUALITY_LEVELS - 1}, not {quality}")
    return quality


def _sampler(src: str | Path, device: str, model: str | None, cancel: Cancel | None
             ) -> tuple[Callable[[float], Probe], RasterInfo]:
    """``measure(quality)`` for :func:`fit_quality` and :func:`estimate`: codes and decodes the
    raster, or windows spread over a large one (:func:`georsic.ratecontrol.sample_windows`)."""
    codec = get_codec(find_model(model), resolve_device(device))
    with _open_raster(src) as raster:
        info = RasterInfo.from_dataset(raster)
        mapping = _band_mapping(raster, info, cancel)
        planes = 1 if info.mask_kind == "dataset" else info.count
        samples, fixed_bits = [], 0
        for col, row, width, height in sample_windows(info.width, info.height):
            window = Window(col, row, width, height)
            data = raster.read(window=window)
            valid = _validity(raster, data, info, window)
            samples.append((data, valid, mapping.encode(data, valid)))
            invalid = None if valid is None else ~valid[:planes]
            fixed_bits += 8 * (len(encode_mask(invalid)) + len(_encode_raw(data, mapping.lossless)))
    peak = 255.0 if info.dtype == "uint8" else max(mapping.high) - min(mapping.low)

    def measure(quality: float) -> Probe:
        bits, pixels = fixed_bits, 0
        squared, counted = 0.0, 0
        for data, valid, images in samples:
            _check(cancel)
            height, width = data.shape[1:]
            decoded = []
            for image in images:
                streams = codec.encode(image, quality)
                bits += 8 * sum(map(len, streams))
                decoded.append(codec.decode(streams, height, width, quality))
            values = mapping.cast(mapping.decode(decoded, height, width))
            error = values.astype(np.float64) - data.astype(np.float64)
            keep = np.ones(data.shape, dtype=bool) if valid is None else valid.copy()
            keep[list(mapping.lossless)] = False
            squared += float(np.sum(error[keep] ** 2))
            counted += int(keep.sum())
            pixels += height * width
        mse = squared / max(counted, 1)
        psnr = math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)
        return Probe(quality, bits / pixels, psnr)

    return measure, info


def fit_quality(
    src: str | Path,
    *,
    target_psnr: float | None = None,
    target_bpp: float | None = None,
    device: str = "auto",
    model: str | None = None,
    cancel: Cancel | None = None,
) -> QualityFit:
    """The quality that meets a target PSNR (dB) or rate (bits per pixel) on this raster.

    The raster, or up to ``ratecontrol.SAMPLE_PIXELS`` of it in windows spread over it, is
    coded and decoded at each quality the search tries (eight at most).  PSNR is over the
    valid pixels, in the raster's units, with the peak :func:`georsic.metrics.compare_rasters`
    uses (255 for 8-bit data, else the valid range), leaving out bands stored losslessly
    (alpha), which that function counts with no error; the rate counts the sample's codec
    streams, no-data masks and lossless bands, not the archive's header and index (a few
    hundred bytes).  A target out of reach gives the nearest end of the quality
    range, with ``reached`` False.
    """
    if not _targeted(None, target_psnr, target_bpp):
        raise InputError("give one target: a PSNR or a bit rate")
    measure, _ = _sampler(src, device, model, cancel)
    return search_quality(measure, target_psnr=target_psnr, target_bpp=target_bpp,
                          top=float(QUALITY_LEVELS - 1))


@dataclass(frozen=True)
class Estimate:
    """What :func:`estimate` expects of compressing a raster at one quality."""

    quality: float
    bpp: float
    psnr: float
    bytes: int
    pixels: int


def estimate(
    src: str | Path,
    *,
    quality: float | None = None,
    target_psnr: float | None = None,
    target_bpp: float | None = None,
    device: str = "auto",
    model: str | None = None,
    cancel: Cancel | None = None,
) -> Estimate:
    """The archive size and PSNR to expect, without writing anything.

    At ``quality`` (default ``DEFAULT_QUALITY``), or at the quality a target gives
    (:func:`fit_quality`); measured on the same sample, and ``bytes`` adds a header's usual
    size (:data:`HEADER_ESTIMATE`) to the rate times the raster's pixels.
    """
    targeted = _targeted(quality, target_psnr, target_bpp)
    quality = None if targeted else _checked_quality(quality)
    measure, info = _sampler(src, device, model, cancel)
    probe = (search_quality(measure, target_psnr=target_psnr, target_bpp=target_bpp,
                            top=float(QUALITY_LEVELS - 1)) if targeted else measure(quality))
    pixels = info.width * info.height
    size = round(probe.bpp * pixels / 8) + HEADER_ESTIMATE
    return Estimate(probe.quality, probe.bpp, probe.psnr, size, pixels)


def _fit_note(fit: dict | None) -> str:
    """How the quality was chosen, for :meth:`Archive.describe` (empty when it was given)."""
    if not fit:
        return ""
    target = (f"PSNR {fit['target_psnr']:g} dB" if fit.get("target_psnr") is not None
              else f"{fit['target_bpp']:g} bpp")
    reached = "" if fit.get("reached", True) else ", out of reach"
    psnr = "no error" if fit.get("psnr") is None else f"{fit['psnr']:.2f} dB"
    return f" (fitted to {target}{reached}: measured {psnr} at {fit['bpp']:.4f} bpp)"


# ------------------------------------------------------------------------------ decompress


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
            _check(cancel)
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
            _check(cancel)
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


def decompress(
    src: str | Path,
    dst: str | Path,
    *,
    window: Window | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    bounds_crs: str | None = None,
    prior: bool = False,
    fidelity: float = 0.5,
    device: str = "auto",
    ignore_errors: bool = False,
    overviews: OverviewSpec | None = "source",
    cog: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Path:
    """Decode an archive (or a region of it) to a GeoTIFF with the source's georeferencing.

    ``bounds`` are in ``bounds_crs`` (default the archive's CRS); ``window`` is in pixels.
    With ``ignore_errors`` a corrupt tile is written as no-data (or zeros) instead of
    stopping the run. ``overviews``: ``"source"`` rebuilds the compressed raster's overview
    levels (none if it had none), ``"auto"`` adds levels down to 256 pixels, ``"none"`` none,
    or a list of factors such as ``[2, 4, 8]`` (see :mod:`georsic.overviews`); they are built
    from the decoded pixels with average resampling. ``cog`` writes a Cloud Optimized GeoTIFF
    (GDAL's COG layout: tiles, then overviews, in the order a range reader needs them).
    """
    if prior:
        raise WeightsError("the Code-RSIC codebook prior is not installed in this GeoRSIC "
                           "(no 'prior' model in resources/weights); decode without --prior")
    dst = Path(dst)
    with open(src) as archive:
        if bounds is not None:
            window = archive.window_for(bounds, bounds_crs)
        window = archive._clip(window or Window(0, 0, archive.width, archive.height))
        transform = rasterio.windows.transform(window, archive.transform)
        profile = archive.info.geotiff_profile(int(window.width), int(window.height), transform)
        factors = resolve_overviews(overviews, archive.info.overviews, int(window.width),
                                    int(window.height))
        with _atomic_output(dst) as tmp:
            try:
                # GDAL writes a COG as a copy of a finished GeoTIFF (removed as a sidecar)
                staging = tmp.with_name(tmp.name + ".staging.tif") if cog else tmp
                _write_decoded(archive, window, staging, profile, factors, device=device,
                               progress=progress, cancel=cancel, ignore_errors=ignore_errors)
                if cog:
                    _check(cancel)
                    rasterio.shutil.copy(staging, tmp, driver="COG",
                                         **_cog_options(profile, factors))
            except RasterioError as exc:
                raise OutputError(f"cannot write {dst}: {exc}") from None
    return dst


def _write_decoded(archive: Archive, window: Window, path: Path, profile: dict,
                   factors: tuple[int, ...], *, device: str, progress: Progress | None,
                   cancel: Cancel | None, ignore_errors: bool) -> None:
    """Decode ``window`` of ``archive`` into a new GeoTIFF at ``path``, overviews included."""
    with rasterio.open(path, "w", **profile) as out:
        archive.info.apply_metadata(out)
        for block, values, invalid in archive.blocks(
                window, device=device, progress=progress, cancel=cancel,
                ignore_errors=ignore_errors):
            target = Window(block.col_off - window.col_off, block.row_off - window.row_off,
                            block.width, block.height)
            out.write(archive.finalize(values, invalid), window=target)
            if archive.info.mask_kind == "dataset":
                mask = 255 * ~(invalid[0] if invalid is not None else
                               np.zeros((int(block.height), int(block.width)), bool))
                out.write_mask(mask.astype(np.uint8), window=target)
        if factors:
            _check(cancel)
            out.build_overviews(list(factors), Resampling.average)
            out.update_tags(ns="rio_overview", resampling="average")


def _cog_options(profile: dict, factors: tuple[int, ...]) -> dict:
    """GDAL COG driver options matching the GeoTIFF profile: deflate, the same predictor, the
    overviews already built (or none)."""
    return {"compress": "DEFLATE", "predictor": "YES" if "predictor" in profile else "NO",
            "overviews": "FORCE_USE_EXISTING" if factors else "NONE",
            "bigtiff": "IF_SAFER"}


@contextlib.contextmanager
def _atomic_output(dst: Path) -> Iterator[Path]:
    directory = dst.parent if str(dst.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"output folder {directory} does not exist")
    if dst.is_dir():
        raise OutputError(f"output {dst} is a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=".tmp.tif", dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write to {directory}: {exc.strerror}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, dst)
    finally:
        tmp_path.unlink(missing_ok=True)
        for sidecar in directory.glob(tmp_path.name + ".*"):
            sidecar.unlink(missing_ok=True)
