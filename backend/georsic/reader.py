"""Reading an archive: :class:`Archive` (metadata, verification, decoding of any region)."""

from __future__ import annotations

import contextlib
import math
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.errors import CRSError
from rasterio.windows import Window

from georsic import headercheck, pyramid
from georsic.archive import BOUNDED_VERSIONS, EXACT_VERSION, ArchiveReader, unpack_sections
from georsic.bandmap import BandMapping
from georsic.control import Cancel, Progress, check_cancel
from georsic.defaults import DEFAULT_FIDELITY
from georsic.errors import (
    ArchiveError,
    DigestError,
    GeorsicError,
    InputError,
    TileError,
    WeightsError,
)
from georsic.exactarchive import DIGEST_BYTES, ExactSpec, pixel_digest, tile_values
from georsic.parallel import (
    blocks as tile_blocks,
)
from georsic.parallel import (
    check_tiles_per_task,
    client_executor,
    cores,
    in_flight,
    local_executor,
    ordered,
    parallelism,
    set_tile_threads,
    thread_codec,
    tile_threads,
    tiles_per_task,
    torch_threads,
)
from georsic.rasterinfo import RasterInfo
from georsic.remote import RemoteLocation, is_url
from georsic.tiling import Piece, Tile, TileGrid, blend, intersect
from georsic.weights import find_model, installed_models

if TYPE_CHECKING:
    from georsic.prior.restore import TilePrior

# torch, CompressAI and the codebook prior (georsic.codec, georsic.masks, georsic.prior) are
# imported where a tile is decoded: opening an archive, its header and checksums need none.


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

    def __init__(self, path: str | Path | RemoteLocation, *, recover: bool = False,
                 storage_options: dict | None = None) -> None:
        self._reader = ArchiveReader(path, recover=recover, storage_options=storage_options)
        try:
            self._parse_header(self._reader.name)
            if isinstance(path, RemoteLocation) and path.identity and \
                    path.identity != self._reader.identity:
                raise ArchiveError(f"{self._reader.name}: the archive changed while it was "
                                   "read (its size or ETag differs from the client's)")
        except BaseException:
            self._reader.close()
            raise

    def _parse_header(self, name: str) -> None:
        header = self._reader.header
        self.header = header
        try:
            self.info = RasterInfo.from_dict(header["raster"])
            self.mapping = BandMapping.from_dict(header["band_mapping"])
            found = headercheck.problems(self.info, self.mapping, header)
            if found:
                raise ArchiveError(f"{name}: archive header is inconsistent ({found[0]})")
            tiling = header["tiling"]
            self.grid = TileGrid(self.info.width, self.info.height, int(tiling["size"]),
                                 int(tiling["overlap"]))
            self.codec_info = header["codec"]
            self.planes = int(header["mask"]["planes"])
            #: Every level, full resolution first (:mod:`georsic.pyramid`).
            self.levels = pyramid.levels(header) \
                if self._reader.version in (5, EXACT_VERSION) else [pyramid.Level(1, self.grid, 0)]
            self.bounded = header.get("bounded")
            if (self.bounded is not None) != (self._reader.version in BOUNDED_VERSIONS):
                raise ValueError(f"a version-{self._reader.version} archive "
                                 f"{'with' if self.bounded else 'without'} a correction layer")
            if self.bounded is not None:
                from georsic import bounded  # imports torch: only for bounded archives

                bounded.check_header(self.bounded, self.info, self._reader.version)
                self.base_spec = bounded.BaseSpec.from_dict(self.bounded)
            exact = header.get("exact")
            if (exact is not None) != (self._reader.version == EXACT_VERSION):
                raise ValueError(f"a version-{self._reader.version} archive "
                                 f"{'with' if exact else 'without'} an exact synthesis")
            #: How the tiles of an exact archive (version 8) are synthesised, else None.
            self.exact_spec = None if exact is None else \
                ExactSpec.from_dict(exact, len(self.mapping.groups),
                                    float(self.codec_info.get("quality", 0.0)))
            if exact is not None and (self.codec_info.get("entropy", "float64") == "float64"
                                      or int(self.codec_info["streams_per_image"]) != 1):
                raise ValueError("an exact archive needs an exact entropy path and one stream "
                                 "per image")
            self.info.crs  # noqa: B018 - a WKT that does not parse fails here, not mid-decode
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError,
                CRSError) as exc:
            raise ArchiveError(f"{name}: archive header is incomplete or damaged "
                               f"({' '.join(str(exc).split())[:200]})") from None
        records = self.levels[-1].first + len(self.levels[-1].grid)
        if records != self._reader.tile_count:
            raise ArchiveError(f"{name}: archive holds {self._reader.tile_count} "
                               f"tiles, its header describes {records}")

    # ---- metadata
    #: The archive's file, or its URL (a string) for a remote archive.
    path = property(lambda self: self._reader.path)
    #: Its file name (the last component of a URL).
    name = property(lambda self: self._reader.name)
    #: Whether it is read from a URL (:mod:`georsic.remote`).
    remote = property(lambda self: self._reader.remote)
    width = property(lambda self: self.info.width)
    height = property(lambda self: self.info.height)
    count = property(lambda self: self.info.count)
    dtype = property(lambda self: self.info.dtype)
    crs = property(lambda self: self.info.crs_wkt)
    transform = property(lambda self: self.info.affine)
    tile_count = property(lambda self: len(self.grid))
    model_id = property(lambda self: self.codec_info["model_id"])
    quality = property(lambda self: self.codec_info["quality"])
    #: The entropy path the tiles were coded with (:data:`georsic.codec.ENTROPY_PATHS`).
    entropy = property(lambda self: self.codec_info.get("entropy", "float64"))

    @property
    def exact(self) -> bool:
        """Whether the archive decodes to the same pixels on every machine and holds a digest
        of each tile's pixels (format version 8, ``--exact``; :mod:`georsic.exactarchive`)."""
        return self.exact_spec is not None

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
            # 12 significant digits: whole to the millimetre on any projected coordinate, as
            # --bounds takes them back (6 were 3 m off on a northing)
            f"bounds:    {left:.12g}, {bottom:.12g}, {right:.12g}, {top:.12g}",
            f"pixel:     {info.transform[0]:.12g} x {-info.transform[4]:.12g}",
            f"nodata:    {info.nodata} (mask: {info.mask_kind})",
            f"tiles:     {self.grid.cols} x {self.grid.rows} of {self.grid.size} px, "
            f"overlap {self.grid.overlap}",
            f"model:     {self.model_id} (weights {self.codec_info['weights_sha256'][:12]}), "
            f"quality {self.quality:g}{_fit_note(self.codec_info.get('fit'))}, "
            f"entropy path {self.entropy}",
            f"software:  {self.header.get('software', '?')}",
        ]
        if self.bounded is not None:
            from georsic import bounded

            lines.append(bounded.describe(self.bounded))
        if self.exact:
            lines.append("exact:     the same decoded pixels on every machine (exact synthesis "
                         f"{self.exact_spec.synthesis}), a pixel digest per tile "
                         "(georsic verify --decode)")
        if any(info.descriptions):
            lines.append("bands:     " + ", ".join(d or "-" for d in info.descriptions))
        if self.overviews():
            lines.append("pyramid:   " + ", ".join(
                f"{lv.factor} ({lv.width}x{lv.height})" for lv in self.levels[1:])
                + f", {self.pyramid_bytes:,} bytes "
                f"({100 * self.pyramid_bytes / self._reader.size:.2f} %); read in place "
                "(georsic vrt)")
        if info.overviews:
            lines.append("overviews: " + ", ".join(map(str, info.overviews))
                         + " (rebuilt on decompression)")
        return "\n".join(lines)

    # ---- decoding
    def window_for(self, bounds: tuple[float, float, float, float],
                   bounds_crs: str | None = None) -> Window:
        """Pixel window covering ``bounds`` (in ``bounds_crs``, default the archive's CRS)."""
        from rasterio.windows import from_bounds

        bounds = _checked_bounds(bounds)
        if bounds_crs:
            try:
                crs = rasterio.crs.CRS.from_user_input(bounds_crs)
            except CRSError as exc:
                raise InputError(f"bounds CRS {bounds_crs!r} is not a CRS: "
                                 f"{' '.join(str(exc).split())}") from None
            if self.info.crs is None:
                raise InputError(f"the archive's raster has no CRS; give its bounds without "
                                 f"a bounds CRS ({bounds_crs})")
            if crs != self.info.crs:
                from rasterio.warp import transform_bounds

                try:
                    bounds = _checked_bounds(transform_bounds(crs, self.info.crs, *bounds,
                                                              densify_pts=21))
                except (CRSError, rasterio.errors.RasterioError, ValueError) as exc:
                    raise InputError(f"cannot transform the bounds from {bounds_crs} to the "
                                     f"archive's CRS: {' '.join(str(exc).split())}") from None
        window = from_bounds(*bounds, transform=self.transform)
        x0, y0 = math.floor(window.col_off + 1e-6), math.floor(window.row_off + 1e-6)
        x1 = math.ceil(window.col_off + window.width - 1e-6)
        y1 = math.ceil(window.row_off + window.height - 1e-6)
        return self._clip(Window(x0, y0, x1 - x0, y1 - y0))

    def _clip(self, window: Window) -> Window:
        if not all(math.isfinite(v) for v in (window.col_off, window.row_off, window.width,
                                              window.height)):
            raise InputError(f"the region {_window_text(window)} is not finite")
        if window.width <= 0 or window.height <= 0:
            raise InputError(f"the region {_window_text(window)} has no positive width and "
                             "height")
        x0 = max(int(window.col_off), 0)
        y0 = max(int(window.row_off), 0)
        x1 = min(int(window.col_off + window.width), self.width)
        y1 = min(int(window.row_off + window.height), self.height)
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"the requested region {_window_text(window)} does not overlap the "
                             f"archive's raster ({self.width}x{self.height} pixels)")
        return Window(x0, y0, x1 - x0, y1 - y0)

    def _location(self) -> str | RemoteLocation:
        """The archive as a task opens it: the resolved path, or a :class:`RemoteLocation`
        (URL, storage options, the identity seen here)."""
        if self.remote:
            return RemoteLocation(self.path, self._reader._source.options,
                                  self._reader.identity)
        return str(self.path.resolve())

    def _tile_error(self, tile: Tile, exc: Exception) -> TileError:
        return TileError(f"{self.name}: tile {tile.index} (row {tile.row}, col "
                         f"{tile.col}) cannot be decoded: {exc}", tile.index)

    def overviews(self) -> list[int]:
        """Decimation factors of the pyramid stored in the archive (rasterio's convention:
        ``[4, 16]``; empty for an archive without one, every version before 5 included)."""
        return [level.factor for level in self.levels[1:]]

    @property
    def pyramid_bytes(self) -> int:
        """Bytes of the pyramid's tile records and index entries."""
        from georsic.archive import _ENTRY, _RECORD

        sizes = self._reader.tile_sizes()[len(self.grid):]
        return sum(sizes) + len(sizes) * (_RECORD.size + _ENTRY.size)

    def _tile_sections(self, tile: Tile, number: int | None = None) -> list[bytes]:
        """The tile's sections (mask, lossless bands, streams), checksum and count checked;
        ``number``: its record number, when it is a pyramid tile."""
        record = tile.index if number is None else number
        try:
            payload = self._reader.read_tile(record)
        except TileError as exc:  # say where the tile is, as a decoding error does
            where = f"tile {tile.index} (row {tile.row}, col {tile.col})"
            if number is not None:
                factor = max(lv.factor for lv in self.levels if lv.first <= number)
                where = f"{where} of pyramid level {factor}"
            raise TileError(str(exc).replace(f"tile {record}", where, 1), record) from None
        try:
            sections = unpack_sections(payload, self._reader.version)
            per_image = int(self.codec_info["streams_per_image"])
            expected = (2 + per_image * len(self.mapping.groups) + self.exact
                        if self.bounded is None else
                        _bounded().section_count(self.mapping, self.base_spec))
            if self.exact and len(sections) == expected and len(sections[-1]) != DIGEST_BYTES:
                raise ValueError("the pixel digest is not 16 bytes")
            if len(sections) != expected:
                raise ValueError("wrong number of streams")
        except ValueError as exc:
            raise self._tile_error(tile, exc) from None
        return sections

    def _decode_tile(self, tile: Tile, codec, prior: TilePrior | None = None,
                     number: int | None = None, digest: list | None = None,
                     ) -> tuple[np.ndarray, np.ndarray | None]:
        """Decode one tile; with ``prior`` each codec image goes through the codebook prior
        before the inverse band mapping (any band count, the codec's band mapping).
        ``number``: the tile's record number, when it is a tile of a pyramid level.
        ``digest``: a list to which the pixel digest stored with the tile of an exact archive
        is appended (:func:`~georsic.exactarchive.pixel_digest`)."""
        sections = self._tile_sections(tile, number)
        h, w = int(tile.window.height), int(tile.window.width)
        if self.bounded is not None:
            return self._decode_bounded(tile, sections, codec, h, w)
        if digest is not None and self.exact:
            digest.append(sections[-1])
        per_image = int(self.codec_info["streams_per_image"])
        try:
            if self.exact:  # one stream per image (version 8 is newer than 3)
                from georsic.exactarchive import decode_images

                images = decode_images(codec, self.exact_spec,
                                       sections[2:2 + len(self.mapping.groups)], h, w,
                                       self.entropy)
            else:
                images = [codec.decode(sections[2 + i * per_image: 2 + (i + 1) * per_image],
                                       h, w, self.quality, self.entropy)
                          for i in range(len(self.mapping.groups))]
        except GeorsicError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever damaged streams make the decoder do
            raise self._tile_error(tile, exc) from None
        if prior is not None:  # outside the tile-error net: a failing prior is not a bad tile
            images = [prior(image) for image in images]
        from georsic.masks import decode_mask

        try:
            invalid = decode_mask(sections[0], self.planes, h, w, self._reader.version)
            values = tile_values(self.mapping, images, sections[1], self.dtype, h, w)
        except GeorsicError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever damaged streams make the decoder do
            raise self._tile_error(tile, exc) from None
        return values, invalid

    def _decode_bounded(self, tile: Tile, sections: list[bytes], codec, h: int, w: int
                        ) -> tuple[np.ndarray, np.ndarray | None]:
        """A tile of a bounded archive: its base and correction layer (no prior, no blend)."""
        from georsic import bounded
        from georsic.masks import decode_mask

        try:
            derived = sections[0] == bounded.DERIVED_MASK and self._reader.version >= 7
            invalid = None if derived else \
                decode_mask(sections[0], self.planes, h, w, self._reader.version)
            nudge = (invalid, self.info.nodata) \
                if self.bounded.get("nodata_nudge") and not derived else None
            values = bounded.decode_tile(sections, self.mapping, self.base_spec, codec, h, w,
                                         self.entropy, self.dtype, self.bounded["residual"],
                                         self.bounded.get("correction_model"), nudge)
            if derived:
                if self.info.mask_kind != "nodata" or self.planes != self.count:
                    raise ValueError("a derived mask in a raster without a per-band no-data "
                                     "mask")
                invalid = bounded.derived_mask(values, self.info.nodata)
        except GeorsicError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever damaged streams make the decoder do
            raise self._tile_error(tile, exc) from None
        return values, invalid

    def check_prior(self, prior) -> None:
        """An :class:`InputError` for a prior on a bounded archive (it would break the bound)."""
        if prior and self.bounded is not None:
            raise InputError(f"{self.path.name} is a bounded-error archive: its pixels are "
                             "within a stated error of the source, and the codebook prior "
                             "(--prior) would change them; decode it without --prior")

    def blocks(self, window: Window | None = None, *, device: str = "auto",
               progress: Progress | None = None, cancel: Cancel | None = None,
               ignore_errors: bool = False, errors: list | None = None,
               lost: list[int] | None = None, prior: bool | TilePrior = False,
               fidelity: float = DEFAULT_FIDELITY, client=None, threads: int | None = None,
               tiles_per_task: int | None = None,
               ) -> Iterator[tuple[Window, np.ndarray, np.ndarray | None]]:
        """Decode ``window`` as blocks ``(window, values, invalid)``, one per tile, row-major.

        Each tile is decoded once. Between tiles only the tile to the left and the bottom
        overlap strips of the tile row above are kept, so memory depends on the tile size (and
        on the raster's width times the overlap), not on the size of the raster.

        With ``ignore_errors`` a tile that cannot be read or decoded is left out (its pixels
        invalid): its message goes to ``errors`` and its number to ``lost``, when given.

        With ``prior`` (True, or a :class:`~georsic.prior.restore.TilePrior`) every tile is
        decoded through the Code-RSIC codebook prior at fidelity ``fidelity`` (``w`` in [0, 1]).

        Tiles are decoded as tasks, a bounded number ahead of the blending: on the workers of
        ``client`` (a ``distributed.Client``; they open the archive by path), else on
        ``threads`` threads of this process (default one per core), each with one torch
        thread, so the pixels are the same wherever they were decoded.  A task decodes
        ``tiles_per_task`` consecutive tiles (default: one in-process, a block on a cluster,
        as :func:`~georsic.parallel.tiles_per_task` chooses).  On a cluster the workers load
        the prior themselves, the weights found and checked by the sha256 of the one given.
        """
        from georsic.codec import resolve_device

        if tiles_per_task is not None:
            check_tiles_per_task(tiles_per_task)
        self.check_prior(prior)
        window = self._clip(window or Window(0, 0, self.width, self.height))
        self._weights()  # missing weights fail here, before any task starts
        if client is None:
            resolve_device(device)
        needed = self.grid.tiles_in(window)
        pieces = self._pieces(needed, device, ignore_errors, errors, lost, prior, fidelity,
                              client, threads, tiles_per_task, cancel)
        above: dict[int, Piece] = {}   # column -> bottom strip of the tile above
        below: dict[int, Piece] = {}   # the same, being filled for the next tile row
        left: Piece | None = None
        row = -1
        for done, (tile, piece) in enumerate(zip(needed, pieces, strict=True), start=1):
            check_cancel(cancel)
            if tile.row != row:
                above, below, left, row = below, {}, None, tile.row
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

    def _pieces(self, tiles: list[Tile], device: str, ignore_errors: bool,
                errors: list | None, lost: list[int] | None, prior: bool | str | TilePrior,
                fidelity: float, client, threads: int | None, per_task: int | None,
                cancel: Cancel | None) -> Iterator[Piece | None]:
        """The decoded piece of each tile in order (None for a tile lost with
        ``ignore_errors``), decoded as tasks of a block of tiles where the caller asked."""
        from georsic.codec import resolve_device

        if client is None and threads is None:
            threads = 1 if resolve_device(device) != "cpu" else cores()
        per_tile = 1
        if client is None:
            threads, per_tile = tile_threads(threads, len(tiles),
                                             self._thread_invariant(device, prior))
        if client is None and threads <= 1:
            executor, source = None, self  # inline: this archive, this thread
        else:
            executor = local_executor(threads) if client is None else client_executor(client)
            # a remote reader holds no file position: this process's threads share it
            source = self if client is None and self.remote else self._location()
        task_prior = self._task_prior(prior, fidelity, device, client)
        recover = bool(getattr(self._reader, "recovered", False))
        slots = parallelism(client, threads or 1)
        size = tiles_per_task(len(tiles), slots, per_task, cluster=client is not None)
        tasks = ((source, block, device, task_prior, fidelity, ignore_errors, recover, per_tile)
                 for block in self._fetched_ahead(
                     tile_blocks((tile.index for tile in tiles), size), source))
        with torch_threads(1) if client is None else contextlib.nullcontext():
            for results in ordered(executor, decode_tiles, tasks, in_flight(slots), cancel):
                for index, piece, problem in results:
                    if problem is not None:
                        if errors is not None:
                            errors.append(problem)
                        if lost is not None:
                            lost.append(index)
                    yield piece

    def _fetched_ahead(self, blocks: Iterator[tuple[int, ...]], source,
                       ) -> Iterator[tuple[int, ...]]:
        """``blocks`` as they are; when this process decodes a remote archive's tiles, they
        are fetched before their tasks start, :data:`PREFETCH_BYTES` of tiles at a time, one
        request per run of adjacent tiles (a cluster's workers fetch their own)."""
        if source is not self or not self.remote:
            yield from blocks
            return
        sizes = self._reader.tile_sizes()
        fetched: set[int] = set()
        pending = list(blocks)
        for i, block in enumerate(pending):
            if block and block[0] not in fetched:
                batch, total = [], 0
                for later in pending[i:]:
                    if batch and total + sum(sizes[n] for n in later) > PREFETCH_BYTES:
                        break
                    batch.extend(later)
                    total += sum(sizes[n] for n in later)
                self._reader.prefetch(batch)
                fetched.update(batch)
            yield block

    def _thread_invariant(self, device: str, prior) -> bool:
        """Whether this archive's tiles decode to the same bits on any number of threads
        (no prior, a CPU codec in ONNX Runtime, an exact entropy path)."""
        # no codec is loaded here: this may be a thread that only waits on the tasks (a
        # QGIS task's), and a codec left in its thread-local storage crashed QGIS at its end
        from georsic.codec import resolve_device, thread_invariant

        if prior:
            return False
        device = resolve_device(device)
        # an exact archive's synthesis is the same bits on any number of threads (on a CPU)
        return (self.exact and device == "cpu") or thread_invariant(self.entropy, device)

    def _task_prior(self, prior: bool | str | TilePrior, fidelity: float, device: str,
                    client) -> TilePrior | PriorSpec | None:
        """The prior as tasks get it: in-process loaded here, before any task (a missing prior
        fails first; the threads share it and its lock), a :class:`PriorSpec` for a
        cluster's workers."""
        from georsic.prior.restore import TilePrior, check_fidelity

        if client is None:
            return self.tile_prior(prior, fidelity, device)
        if isinstance(prior, PriorSpec):
            return prior
        if isinstance(prior, TilePrior) or prior:
            return PriorSpec.of(self.tile_prior(prior, fidelity, "cpu"))
        check_fidelity(fidelity)
        return None

    def _decode_piece(self, tile: Tile, codec, ignore_errors: bool,
                      errors: list | None, lost: list[int] | None = None,
                      prior: TilePrior | None = None) -> Piece | None:
        try:
            values, invalid = self._decode_tile(tile, codec, prior)
        except TileError as exc:
            if not ignore_errors:
                raise
            if errors is not None:
                errors.append(str(exc))
            if lost is not None:
                lost.append(tile.index)
            return None
        return Piece.from_tile(self.grid, tile, values, invalid)

    @staticmethod
    def tile_prior(prior: bool | str | TilePrior | PriorSpec,
                   fidelity: float = DEFAULT_FIDELITY, device: str = "auto",
                   ) -> TilePrior | None:
        """The prior to decode with: ``None`` for ``prior=False``; the installed default prior
        on ``device`` for ``True``, or the prior of that model id for a string (a one-line
        error when none is installed or ``fidelity`` is outside [0, 1]); a given
        :class:`TilePrior` as it is; a :class:`PriorSpec` loaded here."""
        from georsic.codec import resolve_device
        from georsic.prior.restore import TilePrior, check_fidelity, load_tile_prior

        if isinstance(prior, TilePrior):
            return prior
        if isinstance(prior, PriorSpec):
            return prior.load(device)
        fidelity = check_fidelity(fidelity)  # a wrong w is an error even without the prior
        if not prior:
            return None
        model_id = prior if isinstance(prior, str) else None
        return load_tile_prior(fidelity, resolve_device(device), model_id=model_id)

    def _weights(self):
        return find_model(self.model_id, self.codec_info["weights_sha256"])

    def verify(self, decode: bool = False, device: str = "auto",
               progress: Progress | None = None,
               cancel: Cancel | None = None) -> list[GeorsicError]:
        """The problems of this archive, one error each (its message names the tile or the
        weights); empty when the archive is intact.

        Checks every tile's checksum and stream layout (the pyramid's tiles too) and that the
        exact weights it needs are installed; with ``decode`` also decodes every tile (as long
        as decompressing) and, in an exact archive (:attr:`exact`), compares each tile's
        decoded pixels with the digest stored at compression: a tile that differs is a
        :class:`~georsic.errors.DigestError` naming it.  An archive of another version holds
        no digests: its tiles are decoded, which proves that their streams decode, no more.
        The header and index were checked when the archive was opened.
        """
        problems: list[GeorsicError] = []
        try:
            self._weights()
        except WeightsError as exc:
            problems.append(exc)
        model = (self.bounded or {}).get("correction_model")
        if model is not None:
            from georsic.correction import load_table

            try:
                load_table(model["id"], model["sha256"])
            except WeightsError as exc:
                problems.append(exc)
            decode = False  # nothing to decode with: the checksums and layout alone
        count = self._reader.tile_count
        if decode:
            from georsic.codec import resolve_device

            device = resolve_device(device)
            threads, per_tile = tile_threads(1 if device != "cpu" else cores(), count,
                                             self._thread_invariant(device, False))
        else:
            threads, per_tile = 1, 1
        executor = local_executor(threads)
        # a remote reader holds no file position: this process's threads share it
        source = self if executor is None or self.remote else self._location()
        recover = bool(getattr(self._reader, "recovered", False))

        def tasks():
            for number in range(count):
                if self.remote and number % VERIFY_BATCH == 0:
                    self._reader.prefetch(range(number, min(number + VERIFY_BATCH, count)))
                yield source, number, decode, device, recover, per_tile

        # each tile on its own thread(s), as a read decodes them (no torch without decoding)
        with torch_threads(1) if decode else contextlib.nullcontext():
            for done, problem in enumerate(ordered(executor, check_record, tasks(),
                                                   in_flight(threads), cancel), start=1):
                if problem is not None:
                    problems.append(problem)
                if progress:
                    progress(done, count)
        return problems

    def _check_record(self, number: int, codec) -> ArchiveError | None:
        """The problem of tile record ``number`` (None: none): its checksum and layout, and
        with ``codec`` its decoding and, in an exact archive, its pixel digest."""
        level = next(lv for lv in reversed(self.levels) if lv.first <= number)
        tile = level.grid.tile(number - level.first)
        at = None if level.factor == 1 else number
        try:
            if codec is None:
                self._tile_sections(tile, at)
                return None
            stored: list[bytes] = []
            values, _ = self._decode_tile(tile, codec, None, at, stored)
            if stored:
                decoded = pixel_digest(values, self.mapping)
                if decoded != stored[0]:
                    return self._digest_error(tile, at, stored[0], decoded)
        except ArchiveError as exc:  # a TileError names the tile
            return exc
        return None

    def _digest_error(self, tile: Tile, number: int | None, stored: bytes,
                      decoded: bytes) -> DigestError:
        where = f"tile {tile.index} (row {tile.row}, col {tile.col})"
        if number is not None:
            factor = max(lv.factor for lv in self.levels if lv.first <= number)
            where = f"{where} of pyramid level {factor}"
        return DigestError(f"{self.name}: {where}: decoded pixels differ from the digest stored "
                           f"at compression (stored {stored.hex()}, decoded {decoded.hex()})",
                           tile.index if number is None else number)

    def finalize(self, values: np.ndarray, invalid: np.ndarray | None) -> np.ndarray:
        """Decoded float values to the raster's dtype with no-data pixels restored exactly."""
        if self.bounded is not None:  # final values already: no clip, no no-data clash
            out = values.astype(self.dtype)
            if invalid is not None and self.info.mask_kind == "nodata" and \
                    self.info.nodata is not None:
                out[np.broadcast_to(invalid, out.shape)] = out.dtype.type(self.info.nodata)
            return out
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
             device: str = "auto", prior: bool | TilePrior = False,
             fidelity: float = DEFAULT_FIDELITY, client=None,
             threads: int | None = None, tiles_per_task: int | None = None,
             ignore_errors: bool = False,
             out_shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Decode a region (default: everything) to (bands, h, w) in the raster's dtype,
        through the codebook prior at fidelity ``fidelity`` with ``prior``; with
        ``ignore_errors`` a tile that cannot be read or decoded reads as no-data (see
        :meth:`blocks`).

        ``out_shape`` ((h, w) or (bands, h, w), rasterio's convention): the region resampled
        to that shape, read from the coarsest pyramid level at least as fine as it (nearest
        pixel from there; :func:`georsic.inplace.read_window`), through the process's shared
        cache of decoded tiles.  At the region's own shape this is the full-resolution read.
        """
        if bounds is not None:
            window = self.window_for(bounds, bounds_crs)
        window = self._clip(window or Window(0, 0, self.width, self.height))
        if out_shape is not None:
            from georsic.inplace import read_window

            return read_window(self, window, _shape(out_shape, self.count), prior=prior,
                               fidelity=fidelity)
        out = np.empty((self.count, int(window.height), int(window.width)), dtype=self.dtype)
        for block, values, invalid in self.blocks(window, device=device, prior=prior,
                                                  fidelity=fidelity, client=client,
                                                  threads=threads,
                                                  tiles_per_task=tiles_per_task,
                                                  ignore_errors=ignore_errors):
            y0, x0 = int(block.row_off - window.row_off), int(block.col_off - window.col_off)
            out[:, y0:y0 + int(block.height), x0:x0 + int(block.width)] = \
                self.finalize(values, invalid)
        return out

    def to_xarray(self, *, device: str = "auto", prior: bool | str = False,
                  fidelity: float = DEFAULT_FIDELITY, name: str | None = None,
                  ignore_errors: bool = False, level: int = 1):
        """A lazy ``xarray.DataArray`` (band, y, x) of the decoded raster, backed by dask.

        One chunk per tile cell (:meth:`TileGrid.cell`); computing a chunk decodes the tiles
        that cover it (its own and the overlaps of its upper and left neighbours), each tile
        once per computation, so a statistic over a window decodes only the tiles it touches.
        Coordinates are pixel centres; CRS, transform and no-data follow rioxarray
        (``.rio.crs``, ``.rio.transform()``, ``.rio.nodata``).  Runs on any dask scheduler,
        a ``distributed.Client`` included (its workers open the archive by path, or by URL
        for a remote archive, and fetch the tiles their chunks need themselves).
        ``ignore_errors``: a tile that fails its checksum or cannot be decoded (or that an
        archive opened with ``recover=True`` lost) reads as no-data, as with
        :meth:`read`, instead of failing the computation.

        ``level``: a pyramid factor (:meth:`overviews`) for that coarse level instead, one
        chunk per tile cell of the level, its transform scaled by the factor.
        """
        if level != 1:
            return self._level_xarray(level, prior, fidelity, name)
        import dask.array as da
        from dask.base import tokenize

        from georsic.prior.restore import check_fidelity

        check_fidelity(fidelity)
        self.check_prior(prior)
        if prior:  # tasks carry which weights (by sha256); each worker loads them itself
            prior = PriorSpec.of(self.tile_prior(prior, fidelity, "cpu"))
        path = self._location()
        recover = bool(getattr(self._reader, "recovered", False))
        token = tokenize(path.key if self.remote else path, self._reader.identity, device,
                         prior, fidelity, bool(ignore_errors))
        name = name or f"georsic-{token}"
        tile_name = f"georsic-tile-{token}"
        graph: dict = {}
        for tile in self.grid:
            graph[(tile_name, tile.index)] = (decode_tiles, path, (tile.index,), device, prior,
                                              fidelity, bool(ignore_errors), recover)
        grid = self.grid
        for tile in grid:
            cell = grid.cell(tile)
            covering = [(tile_name, t.index) for t in _neighbours(grid, tile)
                        if intersect(t.window, cell) is not None]
            graph[(name, 0, tile.row, tile.col)] = (_cell_values, path, recover, cell.col_off,
                                                    cell.row_off, cell.width, cell.height,
                                                    *covering)
        first_row = [grid.cell(grid.tile(c)) for c in range(grid.cols)]
        first_col = [grid.cell(grid.tile(r * grid.cols)) for r in range(grid.rows)]
        chunks = ((self.count,), tuple(int(c.height) for c in first_col),
                  tuple(int(c.width) for c in first_row))
        data = da.Array(graph, name, chunks, dtype=self.dtype)
        return self._data_array(data, self.transform)

    def _level_xarray(self, factor: int, prior, fidelity: float, name: str | None):
        """:meth:`to_xarray` of the pyramid level of ``factor``."""
        import dask.array as da
        from dask.base import tokenize

        from georsic.prior.restore import check_fidelity

        found = [lv for lv in self.levels if lv.factor == factor]
        if not found:
            raise InputError(f"{self.name} has no pyramid level {factor!r} (levels: "
                             f"{', '.join(map(str, [1, *self.overviews()]))})")
        lv = found[0]
        check_fidelity(fidelity)
        path = self._location()
        recover = bool(getattr(self._reader, "recovered", False))
        token = tokenize(path.key if self.remote else path, self._reader.identity, factor,
                         prior, fidelity)
        name = name or f"georsic-{factor}-{token}"
        cells = [lv.grid.cell(tile) for tile in lv.grid]
        graph = {(name, 0, tile.row, tile.col): (_level_cell, path, recover, factor, prior,
                                                 fidelity, cell.col_off, cell.row_off,
                                                 cell.width, cell.height)
                 for tile, cell in zip(lv.grid, cells, strict=True)}
        chunks = ((self.count,),
                  tuple(int(cells[r * lv.grid.cols].height) for r in range(lv.grid.rows)),
                  tuple(int(cells[c].width) for c in range(lv.grid.cols)))
        data = da.Array(graph, name, chunks, dtype=self.dtype)
        return self._data_array(data, self.transform @ rasterio.Affine.scale(factor))

    def _data_array(self, data, transform):
        """``data`` (a dask array, bands x rows x columns) as a DataArray with pixel-centre
        coordinates of ``transform`` and the archive's CRS and no-data (rioxarray's way)."""
        import rioxarray  # noqa: F401 - registers the .rio accessor
        import xarray as xr

        height, width = data.shape[1:]
        x = transform.c + transform.a * (np.arange(width) + 0.5)
        y = transform.f + transform.e * (np.arange(height) + 0.5)
        array = xr.DataArray(data, dims=("band", "y", "x"),
                             coords={"band": np.arange(1, self.count + 1), "y": y, "x": x},
                             name=Path(self.name).stem)
        if self.info.crs is not None:
            array = array.rio.write_crs(self.info.crs)
        array = array.rio.write_transform(transform)
        if self.info.nodata is not None:
            array = array.rio.write_nodata(self.info.nodata)
        return array

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open(path: str | Path, *, recover: bool = False,  # noqa: A001 - as rasterio
         storage_options: dict | None = None) -> Archive:
    """Open an archive for inspection and region reads.

    ``path``: a local file, or a URL (``https://``, ``s3://``, ``gs://``, ``az://``, any
    fsspec URL) read with range requests, with fsspec's usual credentials or
    ``storage_options`` (passed to the fsspec file system; see :mod:`georsic.remote`).

    ``recover``: open an archive whose tile index is lost (cut short, bytes appended) by
    scanning for its tile records; tiles not found raise a :class:`TileError` when read.
    """
    return Archive(path, recover=recover, storage_options=storage_options)


def _shape(out_shape, count: int) -> tuple[int, int]:
    """(h, w) of a rasterio-style ``out_shape`` ((h, w) or (bands, h, w))."""
    try:
        shape = tuple(int(v) for v in out_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) == 3 and shape[0] == count:
        shape = shape[1:]
    if len(shape) != 2 or min(shape) <= 0:
        raise InputError(f"out_shape must be (height, width) or ({count}, height, width) with "
                         f"positive sizes, not {out_shape!r}")
    return shape


def _checked_bounds(bounds) -> tuple[float, float, float, float]:
    try:
        left, bottom, right, top = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise InputError(f"bounds must be four numbers LEFT, BOTTOM, RIGHT, TOP, not "
                         f"{bounds!r}") from None
    if not all(math.isfinite(v) for v in (left, bottom, right, top)):
        raise InputError(f"bounds {left:g}, {bottom:g}, {right:g}, {top:g} are not finite")
    if left >= right or bottom >= top:
        raise InputError(f"bounds {left:g}, {bottom:g}, {right:g}, {top:g} are empty or "
                         "reversed: give LEFT < RIGHT and BOTTOM < TOP")
    return left, bottom, right, top


def _window_text(window: Window) -> str:
    return (f"{window.col_off:g},{window.row_off:g},{window.width:g},{window.height:g} "
            "(COL,ROW,WIDTH,HEIGHT)")


@dataclass(frozen=True)
class PriorSpec:
    """A codebook prior as a cluster task carries it: which weights (id and sha256) and how
    to run them; each worker loads the model itself (a loaded prior holds a lock and 7 MB of
    tensors, neither worth sending with every task)."""

    model_id: str
    sha256: str
    fidelity: float
    window: int
    overlap: int
    mode: str

    @classmethod
    def of(cls, prior: TilePrior) -> PriorSpec:
        return cls(prior.model_id, prior.sha256, prior.fidelity, prior.window, prior.overlap,
                   prior.mode)

    def load(self, device: str = "auto") -> TilePrior:
        """The prior on this process, its weights those of :attr:`sha256` (the file checked
        against it); a one-line :class:`WeightsError` when this machine lacks them."""
        from georsic.codec import resolve_device
        from georsic.prior.restore import load_tile_prior

        ids = [e.id for e in installed_models() if e.sha256 == self.sha256 and e.kind == "prior"]
        if not ids:
            raise WeightsError(f"prior {self.model_id!r} with weights sha256 {self.sha256[:16]}"
                               "... is not installed here; every worker needs the same prior "
                               "weights as the client")
        prior = load_tile_prior(self.fidelity, resolve_device(device), model_id=ids[0],
                                window=self.window, overlap=self.overlap, mode=self.mode)
        if prior.sha256 != self.sha256:  # another manifest names other weights so
            raise WeightsError(f"prior {ids[0]!r} resolves to weights {prior.sha256[:16]}..., "
                               f"not {self.sha256[:16]}...; remove the other copy")
        return prior


#: Tiles decoded so far by :func:`decode_tiles` in this process, per archive path or URL
#: (what a lazy read touched can be checked against it).
DECODED: Counter = Counter()
_DECODED_LOCK = threading.Lock()
_local = threading.local()
#: Remote archives open in this process, shared by its threads (:func:`_thread_archive`).
_REMOTE: dict[tuple[str, bool], Archive] = {}
_REMOTE_LOCK = threading.Lock()
#: Compressed tile bytes a process fetches ahead of decoding a remote archive's region.
PREFETCH_BYTES = 32 * 2**20
#: Tiles :meth:`Archive.verify` fetches at once from a remote archive.
VERIFY_BATCH = 64


def _decoded_key(path: str | Path) -> str:
    return str(path) if is_url(str(path)) else str(Path(path).resolve())


def decoded_tiles(path: str | Path) -> int:
    """How many tiles of the archive at ``path`` (or URL) this process has decoded in
    tasks."""
    return DECODED[_decoded_key(path)]


def _remote_archive(location: RemoteLocation, recover: bool) -> Archive:
    """This process's open remote archive (a remote reader has no file position, so its
    threads share one): opened once, not once per thread."""
    key = (location.key, recover)
    with _REMOTE_LOCK:
        if key not in _REMOTE:
            while len(_REMOTE) >= 4:
                _REMOTE.pop(next(iter(_REMOTE))).close()
            _REMOTE[key] = Archive(location, recover=recover)
        return _REMOTE[key]


def _thread_archive(path: str | RemoteLocation, recover: bool) -> Archive:
    """This thread's open archive at ``path`` (reopened when the file changed): a reader's
    file position is its own, so threads never share one; a remote archive is shared."""
    if isinstance(path, RemoteLocation):
        return _remote_archive(path, recover)
    stat = Path(path).stat()
    key = (path, stat.st_ino, stat.st_mtime_ns, stat.st_size, recover)
    archives = getattr(_local, "archives", None)
    if archives is None:
        archives = _local.archives = {}
    if key not in archives:
        while len(archives) >= 4:
            archives.pop(next(iter(archives))).close()
        archives[key] = Archive(path, recover=recover)
    return archives[key]


def decode_tiles(source: Archive | str | RemoteLocation, indices: tuple[int, ...],
                 device: str = "auto",
                 prior: bool | str | TilePrior | PriorSpec = False,
                 fidelity: float = DEFAULT_FIDELITY,
                 ignore_errors: bool = False, recover: bool = False, threads: int = 1,
                 ) -> list[tuple[int, Piece | None, str | None]]:
    """Decode these tiles of an archive (a task: any thread or worker, one torch thread, or
    ``threads`` where :func:`~georsic.parallel.tile_threads` gave a tile more):
    ``(index, piece, None)`` each, or ``(index, None, message)`` for a tile that cannot be
    decoded when ``ignore_errors`` (else its :class:`TileError` is raised)."""
    set_tile_threads(threads)
    archive = source if isinstance(source, Archive) else _thread_archive(source, recover)
    codec = thread_codec(archive.model_id, archive.codec_info["weights_sha256"], device,
                         threads)
    tile_prior = Archive.tile_prior(prior, fidelity, device)
    archive._reader.prefetch(indices)  # a remote archive's: one request per run of tiles
    out: list[tuple[int, Piece | None, str | None]] = []
    for index in indices:
        tile = archive.grid.tile(index)
        try:
            values, invalid = archive._decode_tile(tile, codec, tile_prior)
        except TileError as exc:
            if not ignore_errors:
                raise
            out.append((index, None, str(exc)))
            continue
        finally:
            with _DECODED_LOCK:
                DECODED[_decoded_key(archive.path)] += 1
        out.append((index, Piece.from_tile(archive.grid, tile, values, invalid), None))
    return out


def check_record(source: Archive | str | RemoteLocation, number: int, decode: bool,
                 device: str, recover: bool = False, threads: int = 1) -> ArchiveError | None:
    """A task of :meth:`Archive.verify`: the problem of one tile record (None: none), on this
    thread's codec with ``threads`` torch threads when ``decode``."""
    archive = source if isinstance(source, Archive) else _thread_archive(source, recover)
    codec = None
    if decode:
        set_tile_threads(threads)
        codec = thread_codec(archive.model_id, archive.codec_info["weights_sha256"], device,
                             threads)
    return archive._check_record(number, codec)


def _bounded():
    """:mod:`georsic.bounded` (imported where a bounded archive needs it: it imports torch)."""
    from georsic import bounded

    return bounded


def _neighbours(grid: TileGrid, tile: Tile) -> list[Tile]:
    """The tile and those above and to the left of it, whose overlaps may reach its cell."""
    return [grid.tile(r * grid.cols + c) for r in (tile.row - 1, tile.row) if r >= 0
            for c in (tile.col - 1, tile.col) if c >= 0]


def _level_cell(path: str | RemoteLocation, recover: bool, factor: int, prior,
                fidelity: float, col: int, row: int, width: int, height: int) -> np.ndarray:
    """A chunk of a pyramid level's :meth:`Archive.to_xarray`: its pixels, in place."""
    from georsic.inplace import read_level

    archive = _thread_archive(path, recover)
    level = next(lv for lv in archive.levels if lv.factor == factor)
    tile_prior = archive.tile_prior(prior, fidelity, "cpu")
    return read_level(archive, level, Window(col, row, width, height), tile_prior)


def _cell_values(path: str | RemoteLocation, recover: bool, col: int, row: int, width: int,
                 height: int, *decoded: list) -> np.ndarray:
    """A chunk of :meth:`Archive.to_xarray`: the cell blended from its tiles' pieces."""
    archive = _thread_archive(path, recover)
    pieces = [piece for results in decoded for _, piece, _ in results if piece is not None]
    values, invalid = blend(Window(col, row, width, height), pieces, archive.count,
                            archive.planes)
    return archive.finalize(values, invalid)
