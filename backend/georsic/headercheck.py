"""Consistency checks of an archive header, so that a crafted or damaged header whose checksum
still holds is an :class:`~georsic.errors.ArchiveError` at opening, never an exception (or
wrong pixels) later in decoding."""

from __future__ import annotations

import math

from rasterio.enums import ColorInterp

from georsic.bandmap import SUPPORTED_DTYPES, BandMapping
from georsic.defaults import QUALITY_LEVELS
from georsic.rasterinfo import RasterInfo

#: GDAL's largest raster edge, and the most bands a header may describe.
MAX_EDGE = 2**31 - 1
MAX_BANDS = 65535
MAX_STREAMS = 64
MASK_KINDS = ("none", "nodata", "dataset")


def problems(info: RasterInfo, mapping: BandMapping, header: dict) -> list[str]:
    """What is inconsistent in a parsed header (empty when nothing is)."""
    found = _raster_problems(info)
    if found:
        return found
    found += _mapping_problems(info, mapping)
    planes = header["mask"]["planes"]
    if planes != (1 if info.mask_kind == "dataset" else info.count):
        found.append(f"mask planes {planes!r} do not fit mask kind {info.mask_kind!r} of "
                     f"{info.count} band(s)")
    codec = header["codec"]
    if not isinstance(codec.get("model_id"), str) or \
            not isinstance(codec.get("weights_sha256"), str):
        found.append("codec model id or weights hash is not a string")
    quality = codec.get("quality")
    if not isinstance(quality, (int, float)) or not 0 <= quality <= QUALITY_LEVELS - 1:
        found.append(f"codec quality {quality!r} is outside 0..{QUALITY_LEVELS - 1}")
    streams = codec.get("streams_per_image")
    if not isinstance(streams, int) or not 1 <= streams <= MAX_STREAMS:
        found.append(f"streams per image {streams!r} is not between 1 and {MAX_STREAMS}")
    return found


def _raster_problems(info: RasterInfo) -> list[str]:
    found = []
    if not (0 < info.width <= MAX_EDGE and 0 < info.height <= MAX_EDGE):
        found.append(f"raster size {info.width}x{info.height} is out of range")
    if not 0 < info.count <= MAX_BANDS:
        found.append(f"band count {info.count} is out of range")
        return found
    if info.dtype not in SUPPORTED_DTYPES:
        found.append(f"data type {info.dtype!r} is not one GeoRSIC writes")
    if info.mask_kind not in MASK_KINDS:
        found.append(f"mask kind {info.mask_kind!r} is unknown")
    lists = {"descriptions": info.descriptions, "colorinterp": info.colorinterp,
             "units": info.units, "scales": info.scales, "offsets": info.offsets,
             "band_tags": info.band_tags}
    lists.update((name, values) for name, values in  # optional: () when no band has any
                 (("categories", info.categories), ("tables", info.tables)) if values)
    found += [f"{name} has {len(values)} entries for {info.count} band(s)"
              for name, values in lists.items() if len(values) != info.count]
    unknown = [name for name in info.colorinterp if name not in ColorInterp.__members__]
    if unknown:
        found.append(f"colour interpretation {unknown[0]!r} is unknown")
    if len(info.transform) != 6 or not all(map(math.isfinite, info.transform)):
        found.append("the geotransform is not six finite numbers")
    if info.colormap is not None and info.count != 1:
        found.append("a colour table belongs to a one-band raster")
    return found


def _mapping_problems(info: RasterInfo, mapping: BandMapping) -> list[str]:
    found = []
    if mapping.dtype != info.dtype:
        found.append(f"band mapping dtype {mapping.dtype!r} differs from the raster's "
                     f"{info.dtype!r}")
    if len(mapping.low) != info.count or len(mapping.high) != info.count:
        found.append("band mapping ranges do not match the band count")
    elif not all(math.isfinite(v) for v in mapping.low + mapping.high) or \
            any(h < lo for lo, h in zip(mapping.low, mapping.high, strict=True)):
        found.append("band mapping ranges are not finite, increasing pairs")
    bands = set(range(info.count))
    grouped = {b for group in mapping.groups for b in group}
    if any(len(group) != 3 for group in mapping.groups):
        found.append("a channel group of the band mapping does not have the codec's 3 "
                     "channels")
    if not grouped <= bands or not set(mapping.lossless) <= bands:
        found.append("the band mapping names bands the raster does not have")
    elif grouped | set(mapping.lossless) != bands or grouped & set(mapping.lossless) or \
            len(set(mapping.lossless)) != len(mapping.lossless):
        found.append("the band mapping's channel groups and lossless bands do not cover each "
                     "band once")
    return found
