"""Compression: a raster file to a ``.grsc`` archive, tile by tile."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from georsic import __version__, pyramid
from georsic.archive import (
    _ENTRY,
    _RECORD,
    EXACT_VERSION,
    VERSION,
    ArchiveWriter,
    WrittenArchive,
    check_output,
    pack_sections,
)
from georsic.bandmap import BandMapping
from georsic.blockcache import sized_block_cache
from georsic.bounded import BoundedSummary, compress_bounded
from georsic.codec import resolve_device, thread_invariant
from georsic.control import Cancel, Progress
from georsic.errors import InputError
from georsic.exactarchive import ExactSpec, make_spec, tile_digest
from georsic.masks import encode_mask
from georsic.parallel import (
    blocks,
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
from georsic.ratecontrol import QualityFit
from georsic.sampling import checked_quality, fit_quality, targeted
from georsic.source import band_mapping, encode_raw, open_raster, validity
from georsic.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, TileGrid
from georsic.weights import find_model

if TYPE_CHECKING:
    from rasterio.windows import Window

#: Most steps of encoder-side latent refinement per tile (``refine``).
MAX_REFINE = 200


@dataclass(frozen=True)
class ArchiveSummary(WrittenArchive):
    """What :func:`compress` produced."""

    quality: float
    model_id: str
    seconds: float
    #: How the quality was fitted to a target PSNR or bit rate (None: it was given).
    fit: QualityFit | None = None
    #: Factors of the overview pyramid stored in the archive (:mod:`georsic.pyramid`).
    pyramid_factors: tuple[int, ...] = ()
    #: Bytes of the pyramid's tile records and index entries.
    pyramid_bytes: int = 0

    @property
    def pyramid_share(self) -> float:
        """The pyramid's share of the archive's bytes."""
        return self.pyramid_bytes / self.bytes if self.bytes else 0.0


def archive_header(info: RasterInfo, mapping, grid: TileGrid, planes: int, entry, quality: float,
                   codec) -> dict:
    """The header of an archive of this raster (its ``codec.fit`` added by the caller)."""
    return {
        "format": "georsic-archive", "software": f"georsic {__version__}",
        "raster": info.to_dict(), "band_mapping": mapping.to_dict(),
        "tiling": {"size": grid.size, "overlap": grid.overlap, "rows": grid.rows,
                   "cols": grid.cols},
        "mask": {"planes": planes},
        "codec": {"model_id": entry.id, "architecture": entry.architecture,
                  "weights_sha256": entry.sha256, "quality": float(quality),
                  "streams_per_image": codec.streams_per_image, "entropy": codec.entropy},
    }


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
    overwrite: bool = False,
    client=None,
    threads: int | None = None,
    tiles_per_task: int | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    pyramid_levels: str | tuple[int, ...] | None = "auto",
    max_error: float | Sequence[float] | None = None,
    lossless: bool = False,
    target_ratio: float | None = None,
    exact: bool = False,
) -> ArchiveSummary | BoundedSummary:
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
    overwrite:
        Replace an existing ``dst``; without it an existing output is an
        :class:`~georsic.errors.OutputError`.  The output may never be the input itself (also
        through a link or another spelling of its path), nor a device or pipe.
    client:
        A ``distributed.Client``: the tiles are coded on its workers (which read ``src`` by
        path, so it must be on a file system they share) and this process, the only writer,
        appends them in tile order.  The archive is byte-identical to one made without.
    threads:
        Without a client, how many tiles are coded at once in this process, each on one
        torch thread (default: one per core; 1 codes them one after the other).
    tiles_per_task:
        Consecutive tiles coded in one task (default: one in-process; on a cluster up to
        :data:`~georsic.parallel.DEFAULT_TILES_PER_TASK`, fewer on a small raster so every
        worker gets several tasks).  The archive is the same bytes whatever it is.
    pyramid_levels:
        The overview pyramid stored with the archive (:mod:`georsic.pyramid`): ``"auto"``
        (factors 4, 16, 64 ... until the coarsest level is at most 512 pixels across),
        ``"none``, or a list of factors.  Each level is the source averaged over blocks of
        its factor, coded as extra tiles, so a zoomed-out view decodes only small tiles.
    progress, cancel:
        ``progress(done, total)`` after each tile (every level's); ``cancel()`` returning
        True stops the run, raising :class:`~georsic.errors.Cancelled` and leaving no file behind.
    max_error, lossless:
        A bounded-error archive (:mod:`georsic.bounded`): every valid pixel of every band
        within ``max_error`` of the source, in the band's units (one value, or one per band);
        ``lossless`` is ``max_error=0`` (bit-exact).  ``quality`` then fixes the learned base
        (``"none"``: no base); by default the smallest of a few is kept.  Tiles do not overlap;
        targets, refinement, a client and threads do not apply (one-line errors).  Returns a
        :class:`~georsic.bounded.BoundedSummary`.
    target_ratio:
        A bounded archive whose bound (one for all bands) is the smallest that compresses the
        raster's sample tiles at least this many times; the summary's ``max_error`` says which.
    exact:
        An exact archive (format version 8, :mod:`georsic.exactarchive`): the same tiles,
        decoded through the exact synthesis, so every machine (any CPU, thread count, runtime,
        CUDA) decodes the same pixels; each tile carries a digest of its decoded pixels, which
        ``Archive.verify(decode=True)`` (``georsic verify --decode``) checks.  Decoding is
        slower (``docs/exact_synthesis.md``), and so is compression: the encoder decodes every
        tile to compute its digest.  Bounded and lossless archives are exact already (the
        option changes nothing for them).
    """
    if target_ratio is not None:
        if lossless or max_error is not None:
            raise InputError("give a target ratio or a max error (or lossless), not both")
        return _compress_bounded(src, dst, max_error=0, lossless=False, quality=quality,
                                 target_psnr=target_psnr, target_bpp=target_bpp, refine=refine,
                                 client=client, tile_size=tile_size, model=model,
                                 overwrite=overwrite, progress=progress, cancel=cancel,
                                 target_ratio=target_ratio, threads=threads,
                                 tiles_per_task=tiles_per_task)
    if lossless or max_error is not None:
        return _compress_bounded(src, dst, max_error=0 if lossless else max_error,
                                 lossless=lossless, quality=quality, target_psnr=target_psnr,
                                 target_bpp=target_bpp, refine=refine, client=client,
                                 tile_size=tile_size, model=model, overwrite=overwrite,
                                 progress=progress, cancel=cancel, threads=threads,
                                 tiles_per_task=tiles_per_task)
    started = time.perf_counter()
    if tiles_per_task is not None:
        check_tiles_per_task(tiles_per_task)
    check_output(Path(dst), overwrite, src)
    TileGrid.check(tile_size, overlap)
    fit = None
    if targeted(quality, target_psnr, target_bpp):
        fit = fit_quality(src, target_psnr=target_psnr, target_bpp=target_bpp,
                          device=device, model=model, cancel=cancel)
        quality = fit.quality
    quality = checked_quality(quality)
    if not 0 <= refine <= MAX_REFINE:
        raise InputError(f"refine must be between 0 and {MAX_REFINE} steps, not {refine}")
    entry = find_model(model)
    # the workers resolve the device themselves; this codec only describes the streams
    codec = thread_codec(entry.id, entry.sha256, "cpu" if client else resolve_device(device))
    if exact:
        from georsic.models import exact as exact_entropy

        if codec.entropy not in exact_entropy.NAMES:
            raise InputError(f"weights {entry.id} have no exact entropy path: an exact archive "
                             "needs one")
    spec = None
    with open_raster(src) as raster:
        info = RasterInfo.from_dataset(raster)
        grid = TileGrid(info.width, info.height, tile_size, overlap)
        mapping = band_mapping(raster, info, cancel)
        planes = 1 if info.mask_kind == "dataset" else info.count
        factors = pyramid.resolve(pyramid_levels, info.width, info.height)
        header = archive_header(info, mapping, grid, planes, entry, quality, codec)
        header["pyramid"] = {"factors": list(factors)}
        if fit is not None:
            header["codec"]["fit"] = fit.to_dict()
        if exact:
            from georsic.codec import get_codec

            cpu = codec if codec.device == "cpu" else get_codec(entry, "cpu")
            spec = make_spec(raster, info, mapping, planes, quality, grid, cpu)
            header["exact"] = spec.to_dict()
    job = EncodeJob(str(Path(src).resolve()), info, mapping, grid, planes, entry.id,
                    entry.sha256, device, float(quality), refine, codec.entropy,
                    pyramid=factors, exact=spec)
    total, coarse = job.records, 0
    with sized_block_cache(info.width, tile_size + 2 * overlap, info.count,
                           np.dtype(info.dtype).itemsize), \
            ArchiveWriter(dst, header, overwrite=overwrite, inputs=(src,),
                          version=EXACT_VERSION if exact else VERSION) as writer:
        for done, payload in enumerate(_encoded(job, client, threads, tiles_per_task, cancel),
                                       start=1):
            writer.add_tile(payload)
            if done > len(grid):
                coarse += len(payload) + _RECORD.size + _ENTRY.size
            if progress:
                progress(done, total)
        path = writer.close()
    return ArchiveSummary(path, info.width, info.height, info.count, len(grid),
                          path.stat().st_size, float(quality), entry.id,
                          time.perf_counter() - started, fit, factors, coarse)


def _compress_bounded(src, dst, *, max_error, lossless: bool, quality, target_psnr, target_bpp,
                      refine: int, client, **kwargs) -> BoundedSummary:
    """:func:`compress` with a bound: the options that do not apply refused in one line."""
    if lossless and max_error not in (None, 0):
        raise InputError("give either lossless or a max error, not both")
    for name, value in (("a target PSNR", target_psnr), ("a target bit rate", target_bpp),
                        ("refine", refine)):
        if value:
            raise InputError(f"{name} cannot be combined with a max error or lossless "
                             "(not supported for bounded archives yet)")
    return compress_bounded(src, dst, max_error=max_error, quality=quality, client=client,
                            **kwargs)


@dataclass(frozen=True)
class EncodeJob:
    """What coding a tile of one raster needs, small enough to send to every task: the raster
    is opened by path (workers share the file system) and the band mapping's statistics were
    computed once, before any task started."""

    src: str
    info: RasterInfo
    mapping: BandMapping
    grid: TileGrid
    planes: int
    model_id: str
    weights_sha256: str
    device: str
    quality: float
    refine: int
    #: The archive's entropy path (``codec.entropy``).
    entropy: str = "float64"
    #: Threads each tile is coded on (:func:`~georsic.parallel.tile_threads`).
    tile_threads: int = 1
    #: Factors of the overview pyramid, coded after the full-resolution tiles.
    pyramid: tuple[int, ...] = ()
    #: An exact archive's synthesis (each tile then ends with its pixel digest), else None.
    exact: ExactSpec | None = None

    @property
    def levels(self) -> list[pyramid.Level]:
        """Every level, full resolution first (record numbers as the archive's)."""
        out, first = [], 0
        for factor in (1, *self.pyramid):
            grid = pyramid.level_grid(self.info.width, self.info.height, factor,
                                      self.grid.size, self.grid.overlap)
            out.append(pyramid.Level(factor, grid, first))
            first += len(grid)
        return out

    @property
    def records(self) -> int:
        """Tile records of the archive, every level's."""
        last = self.levels[-1]
        return last.first + len(last.grid)


def encode_tiles(job: EncodeJob, indices: tuple[int, ...]) -> list[bytes]:
    """The archive payloads of these tiles (a task: runs in any thread or on any worker, with
    one torch thread and this thread's codec, and gives the same bytes wherever it runs)."""
    set_tile_threads(job.tile_threads)
    codec = thread_codec(job.model_id, job.weights_sha256, job.device, job.tile_threads)
    levels = job.levels if job.pyramid else None
    with open_raster(job.src) as raster:
        if levels is None:
            return [_encode_tile(raster, job, codec, job.grid.tile(i)) for i in indices]
        return [_encode_record(raster, job, codec, levels, i) for i in indices]


def _encode_record(raster, job: EncodeJob, codec, levels: list[pyramid.Level],
                   number: int) -> bytes:
    """The payload of tile record ``number``: a full-resolution tile or a pyramid tile."""
    level = next(lv for lv in reversed(levels) if lv.first <= number)
    tile = level.grid.tile(number - level.first)
    if level.factor == 1:
        return _encode_tile(raster, job, codec, tile)
    return _encode_level_tile(raster, job, codec, level.factor, tile)


def _encode_level_tile(raster, job: EncodeJob, codec, factor: int, tile) -> bytes:
    """A pyramid tile: the source under it averaged over ``factor`` x ``factor`` blocks
    (:func:`averaged`), coded as any tile."""
    from rasterio.windows import Window

    w = tile.window
    x0, y0 = int(w.col_off) * factor, int(w.row_off) * factor
    source = Window(x0, y0, min(int(w.width) * factor, job.info.width - x0),
                    min(int(w.height) * factor, job.info.height - y0))
    data, valid = averaged(raster, job.info, job.mapping, source, (int(w.height), int(w.width)))
    return _payload(job, codec, data, valid)


def averaged(raster, info: RasterInfo, mapping: BandMapping, source: Window,
             shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """The pixels under the window ``source`` averaged down to ``shape`` (GDAL's ``average``,
    which leaves no-data pixels out; lossless bands, alpha and class indices, by nearest
    neighbour) and their validity (None: all valid), as a pyramid tile holds them
    (:func:`georsic.estimate` codes the same to measure a level's rate)."""
    from rasterio.enums import Resampling

    data = raster.read(window=source, out_shape=(info.count, *shape),
                       resampling=Resampling.average)
    for band in mapping.lossless:  # alpha and class indices: no averages of them
        data[band] = raster.read(band + 1, window=source, out_shape=shape,
                                 resampling=Resampling.nearest)
    if info.mask_kind != "dataset":
        return data, validity(raster, data, info, source)
    mask = raster.dataset_mask(window=source, out_shape=shape) > 0
    valid = np.broadcast_to(mask, data.shape)
    if data.dtype.kind == "f":
        valid = valid & np.isfinite(data)
    return data, None if valid.all() else np.ascontiguousarray(valid)


def _encode_tile(raster, job: EncodeJob, codec, tile) -> bytes:
    data = raster.read(window=tile.window)
    return _payload(job, codec, data, validity(raster, data, job.info, tile.window))


def _payload(job: EncodeJob, codec, data: np.ndarray, valid: np.ndarray | None) -> bytes:
    """A tile's payload: mask, lossless bands, the codec images' streams and, in an exact
    archive, the digest of the pixels every decoder will decode from them."""
    invalid = None if valid is None else ~valid[:job.planes]
    sections = [encode_mask(invalid), encode_raw(data, job.mapping.lossless)]
    if job.exact is None:
        for image in job.mapping.encode(data, valid):
            sections.extend(codec.encode(image, job.quality, refine=job.refine))
        return pack_sections(sections)
    latents = []
    for image in job.mapping.encode(data, valid):
        streams, latent = codec.encode_exact(image, job.quality, refine=job.refine)
        sections.extend(streams)
        latents.append(latent)
    h, w = data.shape[1:]
    sections.append(tile_digest(codec, job.exact, sections, latents, job.mapping, h, w,
                                job.info.dtype))
    return pack_sections(sections)


def _encoded(job: EncodeJob, client, threads: int | None, per_task: int | None,
             cancel: Cancel | None) -> Iterator[bytes]:
    """Every tile's payload in tile order, coded where the caller asked, in tasks of
    ``per_task`` consecutive tiles, a bounded number of tasks in flight."""
    if client is not None:
        slots = parallelism(client)
        executor = client_executor(client)
    else:
        if threads is None:
            threads = 1 if resolve_device(job.device) != "cpu" else cores()
        invariant = job.refine == 0 and thread_invariant(job.entropy, resolve_device(job.device))
        slots, per_tile = tile_threads(threads, job.records, invariant)
        job = dataclasses.replace(job, tile_threads=per_tile)
        executor = local_executor(slots)
    size = tiles_per_task(job.records, slots, per_task, cluster=client is not None)
    tasks = ((job, block) for block in blocks(range(job.records), size))
    with torch_threads(1) if client is None else contextlib.nullcontext():
        for payloads in ordered(executor, encode_tiles, tasks, in_flight(slots), cancel):
            yield from payloads
