"""Compression: a raster file to a ``.grsc`` archive, tile by tile."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from georsic import __version__
from georsic.archive import ArchiveWriter, pack_sections
from georsic.codec import get_codec, resolve_device
from georsic.control import Cancel, Progress, check_cancel
from georsic.errors import GeorsicError, InputError
from georsic.masks import encode_mask
from georsic.rasterinfo import RasterInfo
from georsic.ratecontrol import QualityFit
from georsic.sampling import checked_quality, fit_quality, targeted
from georsic.source import band_mapping, encode_raw, open_raster, validity
from georsic.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, TileGrid
from georsic.weights import find_model

#: Most steps of encoder-side latent refinement per tile (``refine``).
MAX_REFINE = 200


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
    if targeted(quality, target_psnr, target_bpp):
        fit = fit_quality(src, target_psnr=target_psnr, target_bpp=target_bpp,
                          device=device, model=model, cancel=cancel)
        quality = fit.quality
    quality = checked_quality(quality)
    if not 0 <= refine <= MAX_REFINE:
        raise InputError(f"refine must be between 0 and {MAX_REFINE} steps, not {refine}")
    entry = find_model(model)
    codec = get_codec(entry, resolve_device(device))
    with open_raster(src) as raster:
        info = RasterInfo.from_dataset(raster)
        try:
            grid = TileGrid(info.width, info.height, tile_size, overlap)
        except ValueError as exc:
            raise GeorsicError(str(exc)) from None
        mapping = band_mapping(raster, info, cancel)
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
                check_cancel(cancel)
                data = raster.read(window=tile.window)
                valid = validity(raster, data, info, tile.window)
                invalid = None if valid is None else ~valid[:planes]
                sections = [encode_mask(invalid), encode_raw(data, mapping.lossless)]
                for image in mapping.encode(data, valid):
                    sections.extend(codec.encode(image, quality, refine=refine))
                writer.add_tile(pack_sections(sections))
                if progress:
                    progress(tile.index + 1, len(grid))
            path = writer.close()
    return ArchiveSummary(path, info.width, info.height, info.count, len(grid),
                          path.stat().st_size, float(quality), entry.id,
                          time.perf_counter() - started, fit)
