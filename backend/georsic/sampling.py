"""Rate-control sampling: :func:`fit_quality` and :func:`estimate` code and decode the raster,
or windows spread over a large one, at the qualities they try."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from rasterio.windows import Window

from georsic import pyramid
from georsic.codec import get_codec, resolve_device
from georsic.control import Cancel, check_cancel
from georsic.defaults import DEFAULT_QUALITY, QUALITY_LEVELS
from georsic.errors import InputError
from georsic.masks import encode_mask
from georsic.rasterinfo import RasterInfo
from georsic.ratecontrol import Probe, QualityFit, sample_windows, search_quality
from georsic.source import band_mapping, encode_raw, open_raster, validity
from georsic.weights import find_model

#: Bytes of header, index and footer that :func:`estimate` adds: a UTM-projected aerial
#: GeoTIFF's archive holds about 300 (the NEON sample: header 295, one tile's index and footer
#: 40); a longer CRS or many tags add more.
HEADER_ESTIMATE = 340


def targeted(quality: float | None, target_psnr: float | None,
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


def checked_quality(quality: float | None) -> float:
    """``quality``, or ``DEFAULT_QUALITY`` for None, within the trained range."""
    quality = DEFAULT_QUALITY if quality is None else quality
    if not 0 <= quality <= QUALITY_LEVELS - 1:
        raise InputError(f"quality must be between 0 and {QUALITY_LEVELS - 1}, not {quality}")
    return quality


class Sampler(NamedTuple):
    """What :func:`_sampler` measured: ``measure(quality)`` of the full-resolution sample, the
    raster's info, the bytes its archive holds besides tile payloads, and
    ``pyramid_bytes(quality)``, the payload bytes of its overview pyramid's levels."""

    measure: Callable[[float], Probe]
    info: RasterInfo
    overhead: int
    pyramid_bytes: Callable[[float], int]


def _sampler(src: str | Path, device: str, model: str | None, cancel: Cancel | None,
             pyramid_levels: str | Sequence[int] | None = "none") -> Sampler:
    """The :class:`Sampler` of :func:`fit_quality` and :func:`estimate`: codes and decodes the
    raster, or windows spread over a large one (:func:`georsic.ratecontrol.sample_windows`);
    with the pyramid of ``pyramid_levels`` (:func:`georsic.pyramid.resolve`, as compress
    resolves it) in the container's bytes and each window's level sample (:func:`_level_sample`)."""
    entry = find_model(model)
    codec = get_codec(entry, resolve_device(device))
    with open_raster(src) as raster:
        info = RasterInfo.from_dataset(raster)
        factors = pyramid.resolve(pyramid_levels, info.width, info.height)
        mapping = band_mapping(raster, info, cancel)
        planes = 1 if info.mask_kind == "dataset" else info.count
        overhead = _container_bytes(info, mapping, planes, entry, codec, factors)
        samples, fixed_bits, coarse = [], 0, []
        for col, row, width, height in sample_windows(info.width, info.height):
            window = Window(col, row, width, height)
            data = raster.read(window=window)
            valid = validity(raster, data, info, window)
            samples.append((data, valid, mapping.encode(data, valid)))
            fixed_bits += _fixed_bits(data, valid, planes, mapping)
            if factors:
                coarse.append(_level_sample(raster, info, mapping, window, planes))
    peak = 255.0 if info.dtype == "uint8" else max(mapping.high) - min(mapping.low)

    def measure(quality: float) -> Probe:
        bits, pixels = fixed_bits, 0
        squared, counted = 0.0, 0
        for data, valid, images in samples:
            check_cancel(cancel)
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

    def pyramid_bytes(quality: float) -> int:
        level_pixels = sum(-(-info.width // f) * -(-info.height // f) for f in factors)
        return round(_level_bpp(coarse, codec, quality, cancel) * level_pixels / 8)

    return Sampler(measure, info, overhead, pyramid_bytes)


def _fixed_bits(data: np.ndarray, valid: np.ndarray | None, planes: int, mapping) -> int:
    """Bits of a tile's sections besides the codec's: its no-data mask and lossless bands."""
    invalid = None if valid is None else ~valid[:planes]
    return 8 * (len(encode_mask(invalid)) + len(encode_raw(data, mapping.lossless)))


def _level_sample(raster, info: RasterInfo, mapping, window: Window,
                  planes: int) -> tuple[list[np.ndarray], int, int]:
    """A sample window averaged over :data:`georsic.pyramid.STEP` x ``STEP`` blocks as the
    first pyramid level averages the source (:func:`georsic.compressor.averaged`): the images
    the codec codes, the bits of its mask and lossless bands, and its pixels."""
    from georsic.compressor import averaged

    shape = (-(-int(window.height) // pyramid.STEP), -(-int(window.width) // pyramid.STEP))
    data, valid = averaged(raster, info, mapping, window, shape)
    return mapping.encode(data, valid), _fixed_bits(data, valid, planes, mapping), \
        shape[0] * shape[1]


def _level_bpp(coarse: list[tuple[list[np.ndarray], int, int]], codec, quality: float,
               cancel: Cancel | None) -> float:
    """Bits per pixel of the level samples coded at ``quality`` (0 without samples): the
    rate :func:`estimate` takes for every pyramid level (each 1/16 of the one before)."""
    bits = pixels = 0
    for images, fixed, count in coarse:
        check_cancel(cancel)
        bits += fixed + 8 * sum(len(s) for image in images for s in codec.encode(image, quality))
        pixels += count
    return bits / pixels if pixels else 0.0


def _container_bytes(info: RasterInfo, mapping, planes: int, entry, codec,
                     factors: tuple[int, ...] = ()) -> int:
    """Bytes besides tile payloads of this raster's archive at the default tiling with the
    pyramid of ``factors``: its header is built as compress builds it (a 256-colour palette
    or long tags make it kilobytes, which a flat :data:`HEADER_ESTIMATE` left out), with an
    index entry and record head for every level's tiles."""
    from georsic.archive import container_bytes
    from georsic.compressor import archive_header
    from georsic.defaults import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE
    from georsic.tiling import TileGrid

    grid = TileGrid(info.width, info.height, DEFAULT_TILE_SIZE, DEFAULT_OVERLAP)
    header = archive_header(info, mapping, grid, planes, entry, DEFAULT_QUALITY, codec)
    header["pyramid"] = {"factors": list(factors)}
    return container_bytes(header, pyramid.record_count(header))


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
    if not targeted(None, target_psnr, target_bpp):
        raise InputError("give one target: a PSNR or a bit rate")
    measure = _sampler(src, device, model, cancel).measure
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
    #: Of ``bytes``, the overview pyramid's level payloads (0 without a pyramid).
    pyramid_bytes: int = 0


def estimate(
    src: str | Path,
    *,
    quality: float | None = None,
    target_psnr: float | None = None,
    target_bpp: float | None = None,
    device: str = "auto",
    model: str | None = None,
    cancel: Cancel | None = None,
    pyramid_levels: str | Sequence[int] | None = "auto",
) -> Estimate:
    """The archive size and PSNR to expect, without writing anything.

    At ``quality`` (default ``DEFAULT_QUALITY``), or at the quality a target gives
    (:func:`fit_quality`); measured on the same sample, and ``bytes`` adds to the rate times
    the raster's pixels the header, index and tile records of an archive of this raster at
    the default tiling, built as :func:`georsic.compress` builds them, and the overview
    pyramid of ``pyramid_levels`` (as compress's option; default ``"auto"``): every level
    at the rate of the sample windows averaged over 4 x 4 blocks as the first level is,
    coded once at the chosen quality (1/16 of the sample's pixels).  ``bpp`` and ``psnr``
    are the full-resolution sample's.
    """
    is_targeted = targeted(quality, target_psnr, target_bpp)
    quality = None if is_targeted else checked_quality(quality)
    sampler = _sampler(src, device, model, cancel, pyramid_levels)
    probe = (search_quality(sampler.measure, target_psnr=target_psnr, target_bpp=target_bpp,
                            top=float(QUALITY_LEVELS - 1)) if is_targeted
             else sampler.measure(quality))
    pixels = sampler.info.width * sampler.info.height
    coarse = sampler.pyramid_bytes(probe.quality)
    size = round(probe.bpp * pixels / 8) + coarse + sampler.overhead
    return Estimate(probe.quality, probe.bpp, probe.psnr, size, pixels, coarse)
