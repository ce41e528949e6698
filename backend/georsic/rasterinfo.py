"""Everything about a raster except its pixels, as an immutable value that round-trips to JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.transform import Affine

#: Tag domains copied besides the default one (IMAGE_STRUCTURE describes the source file's
#: encoding, not the data, and is left out).
TAG_DOMAINS = ("RPC", "GEOLOCATION", "IMAGERY")


def _json_number(value: float | None) -> float | str | None:
    """NaN and infinities as strings: JSON has no literal for them."""
    if value is None or math.isfinite(value):
        return value
    return repr(float(value))


def _number(value) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class RasterInfo:
    """Georeferencing and metadata of a raster.

    Attributes hold plain values (WKT for the CRS, six numbers for the transform) so that the
    value is hashable and serialises exactly.
    """

    width: int
    height: int
    count: int
    dtype: str
    crs_wkt: str | None
    transform: tuple[float, ...]
    nodata: float | None
    mask_kind: str  # "none", "nodata" or "dataset" (an internal or external mask band)
    descriptions: tuple[str | None, ...]
    colorinterp: tuple[str, ...]
    units: tuple[str | None, ...]
    scales: tuple[float, ...]
    offsets: tuple[float, ...]
    tags: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    band_tags: tuple[tuple[tuple[str, str], ...], ...]
    overviews: tuple[int, ...] = ()  # decimation factors of the source's overviews
    #: The colour table of a one-band palette raster: (index, red, green, blue, alpha) rows.
    colormap: tuple[tuple[int, int, int, int, int], ...] | None = None

    @classmethod
    def from_dataset(cls, src: rasterio.io.DatasetReader) -> RasterInfo:
        flags = src.mask_flag_enums[0] if src.count else []
        if src.nodata is not None:
            mask_kind = "nodata"
        elif MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags:
            mask_kind = "dataset"
        else:
            mask_kind = "none"
        domains = [("", src.tags())] + [(d, src.tags(ns=d)) for d in TAG_DOMAINS]
        return cls(
            width=src.width, height=src.height, count=src.count, dtype=src.dtypes[0],
            crs_wkt=src.crs.to_wkt() if src.crs else None,
            transform=tuple(src.transform)[:6],
            nodata=_number(src.nodata), mask_kind=mask_kind,
            descriptions=tuple(src.descriptions),
            colorinterp=tuple(c.name for c in src.colorinterp),
            units=tuple(src.units), scales=tuple(src.scales), offsets=tuple(src.offsets),
            tags=tuple((d, tuple(sorted(t.items()))) for d, t in domains if t),
            band_tags=tuple(tuple(sorted(src.tags(b).items())) for b in range(1, src.count + 1)),
            overviews=tuple(src.overviews(1)) if src.count else (),
            colormap=_colormap(src),
        )

    @property
    def crs(self) -> CRS | None:
        return CRS.from_wkt(self.crs_wkt) if self.crs_wkt else None

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["nodata"] = _json_number(self.nodata)
        if not self.overviews:  # absent rather than empty: headers stay as small as before
            del data["overviews"]
        if self.colormap is None:
            del data["colormap"]
        else:
            data["colormap"] = [list(row) for row in self.colormap]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RasterInfo:
        def pairs(items) -> tuple[tuple[str, str], ...]:
            return tuple((str(k), str(v)) for k, v in items)

        return cls(
            width=int(data["width"]), height=int(data["height"]), count=int(data["count"]),
            dtype=str(data["dtype"]), crs_wkt=data["crs_wkt"],
            transform=tuple(float(v) for v in data["transform"]),
            nodata=_number(data["nodata"]), mask_kind=str(data["mask_kind"]),
            descriptions=tuple(data["descriptions"]), colorinterp=tuple(data["colorinterp"]),
            units=tuple(data["units"]), scales=tuple(float(v) for v in data["scales"]),
            offsets=tuple(float(v) for v in data["offsets"]),
            tags=tuple((str(d), pairs(t)) for d, t in data["tags"]),
            band_tags=tuple(pairs(t) for t in data["band_tags"]),
            overviews=tuple(int(v) for v in data.get("overviews", ())),
            colormap=None if data.get("colormap") is None else tuple(
                tuple(int(v) for v in row) for row in data["colormap"]),
        )

    def geotiff_profile(self, width: int | None = None, height: int | None = None,
                        transform: Affine | None = None) -> dict:
        """A rasterio profile for a tiled, losslessly compressed GeoTIFF of this raster."""
        width = width or self.width
        height = height or self.height
        profile = {
            "driver": "GTiff", "width": width, "height": height, "count": self.count,
            "dtype": self.dtype, "crs": self.crs, "transform": transform or self.affine,
            "nodata": self.nodata, "compress": "deflate", "bigtiff": "if_safer",
        }
        if width >= 256 and height >= 256:
            profile.update(tiled=True, blockxsize=256, blockysize=256)
        if self.dtype != "uint8":
            profile["predictor"] = 3 if self.dtype.startswith("float") else 2
        if self.count >= 2 and self.colorinterp[:3] != ("red", "green", "blue"):
            profile["photometric"] = "minisblack"
        return profile

    def apply_metadata(self, dst: rasterio.io.DatasetWriter) -> None:
        """Write descriptions, colour interpretation, units, scales/offsets and tags."""
        for band, description in enumerate(self.descriptions, start=1):
            if description:
                dst.set_band_description(band, description)
        dst.colorinterp = [ColorInterp[name] for name in self.colorinterp]
        if any(self.units):
            dst.units = tuple(u or "" for u in self.units)
        dst.scales = self.scales
        dst.offsets = self.offsets
        for domain, items in self.tags:
            if domain:
                dst.update_tags(ns=domain, **dict(items))
            else:
                dst.update_tags(**dict(items))
        for band, items in enumerate(self.band_tags, start=1):
            if items:
                dst.update_tags(band, **dict(items))
        if self.colormap is not None:
            dst.write_colormap(1, {row[0]: tuple(row[1:]) for row in self.colormap})

    @property
    def categorical(self) -> tuple[int, ...]:
        """Bands whose values are class indices, never to be coded lossily: palette bands."""
        return tuple(i for i, name in enumerate(self.colorinterp) if name == "palette")


def _colormap(src) -> tuple[tuple[int, int, int, int, int], ...] | None:
    """The colour table of band 1 of a one-band palette raster, else None."""
    if src.count != 1 or src.colorinterp[0] != ColorInterp.palette:
        return None
    try:
        table = src.colormap(1)
    except ValueError:  # "NULL color table"
        return None
    return tuple((int(k), *(int(c) for c in v)) for k, v in sorted(table.items()))
