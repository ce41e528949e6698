"""A STAC Item describing an archive (``georsic stac``), so catalogues list archives beside
COGs: footprint and bbox in WGS 84, the projection extension's fields, and one asset of media
type :data:`MEDIA_TYPE` whose properties name the model, quality and bits per pixel.

Plain JSON (STAC 1.1.0, projection extension 2.0.0); no STAC library needed.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import rasterio.warp

from georsic.errors import InputError
from georsic.reader import Archive
from georsic.remote import is_url

#: Media type of a GeoRSIC archive (a vendor type of our own: not registered with IANA).
MEDIA_TYPE = "application/vnd.georsic"
STAC_VERSION = "1.1.0"
PROJECTION_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
#: Points along each edge of the raster when its outline is projected to WGS 84.
EDGE_POINTS = 21


def _iso(moment: dt.datetime) -> str:
    """RFC 3339 in UTC, as STAC wants it (``2024-05-01T10:00:00Z``)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def tiff_datetime(archive: Archive) -> str | None:
    """The source's ``TIFFTAG_DATETIME`` (``YYYY:MM:DD HH:MM:SS``, taken as UTC: TIFF gives no
    zone) in RFC 3339, or None when it has none or it does not parse."""
    for _, pairs in archive.info.tags:
        for key, value in pairs:
            if key == "TIFFTAG_DATETIME":
                try:
                    return _iso(dt.datetime.strptime(value.strip(), "%Y:%m:%d %H:%M:%S"))
                except ValueError:
                    return None
    return None


def _outline(archive: Archive) -> tuple[np.ndarray, np.ndarray]:
    """The raster's outline in its CRS, counter-clockwise from the top-left corner,
    :data:`EDGE_POINTS` a side, closed."""
    left, bottom, right, top = archive.bounds
    steps = np.linspace(0.0, 1.0, EDGE_POINTS)[:-1]
    xs = np.concatenate([np.full_like(steps, left), left + (right - left) * steps,
                         np.full_like(steps, right), right - (right - left) * steps, [left]])
    ys = np.concatenate([top - (top - bottom) * steps, np.full_like(steps, bottom),
                         bottom + (top - bottom) * steps, np.full_like(steps, top), [top]])
    return xs, ys


def _footprint(archive: Archive) -> tuple[dict, list[float]]:
    """GeoJSON polygon of the raster in WGS 84 (lon, lat), and its bbox."""
    xs, ys = _outline(archive)
    lons, lats = rasterio.warp.transform(archive.info.crs, "EPSG:4326", xs, ys)
    ring = [[round(lon, 7), round(lat, 7)] for lon, lat in zip(lons, lats, strict=True)]
    bbox = [round(min(lons), 7), round(min(lats), 7), round(max(lons), 7), round(max(lats), 7)]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def _projection(archive: Archive) -> dict:
    """The projection extension's fields (v2.0.0)."""
    crs, t = archive.info.crs, archive.transform
    fields: dict = {"proj:shape": [archive.height, archive.width],
                    "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f]}
    if crs is None:
        return {"proj:code": None, **fields}
    epsg = crs.to_epsg()
    left, bottom, right, top = archive.bounds
    lons, lats = rasterio.warp.transform(crs, "EPSG:4326", [(left + right) / 2],
                                         [(bottom + top) / 2])
    return {"proj:code": f"EPSG:{epsg}" if epsg else None, "proj:wkt2": crs.to_wkt(),
            **fields, "proj:bbox": [left, bottom, right, top],
            "proj:centroid": {"lat": round(lats[0], 7), "lon": round(lons[0], 7)}}


def _georsic_properties(archive: Archive) -> dict:
    """Model, quality, bits per pixel, and the target the quality was fitted to (a PSNR or
    bpp bound) where it was."""
    fields = {"georsic:model": archive.model_id,
              "georsic:quality": archive.quality,
              "georsic:bpp": round(archive.bpp, 6),
              "georsic:bytes": archive._reader.size,
              "georsic:bands": archive.count,
              "georsic:dtype": archive.dtype,
              "georsic:tile_size": archive.grid.size,
              "georsic:format_version": archive._reader.version}
    fit = archive.codec_info.get("fit")
    if fit:
        for key in ("target_psnr", "target_bpp"):
            if fit.get(key) is not None:
                fields[f"georsic:{key}"] = fit[key]
        fields["georsic:fit_reached"] = bool(fit.get("reached", True))
        if fit.get("psnr") is not None:
            fields["georsic:psnr"] = fit["psnr"]
    return fields


def _when(archive: Archive, datetime: str | None) -> tuple[str, str]:
    """The Item's ``datetime`` and where it came from: given, the source's TIFF tag, or the
    archive's modification time (a remote one's Last-Modified), else now."""
    if datetime:
        return check_datetime(datetime), "given"
    tagged = tiff_datetime(archive)
    if tagged:
        return tagged, "TIFFTAG_DATETIME"
    modified = archive._reader._source.modified
    if modified is not None:
        return _iso(modified), "archive modification time"
    return _iso(dt.datetime.now(dt.timezone.utc)), "time the item was made"


def check_datetime(text: str) -> str:
    """An RFC 3339 date and time with a zone, in UTC (``...Z``); else an :class:`InputError`."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InputError(f"--datetime takes an RFC 3339 date and time with a zone, such as "
                         f"2024-05-01T10:00:00Z, not {text!r}")
    return _iso(moment)


def default_href(path: str | Path) -> str:
    """An asset href for an archive: a URL as it is, a local file as its absolute path."""
    return str(path) if is_url(str(path)) else str(Path(path).resolve())


def stac_item(archive: Archive, *, href: str | None = None, item_id: str | None = None,
              datetime: str | None = None) -> dict:
    """A STAC Item (a GeoJSON Feature, as a dict) for ``archive``.

    ``href``: the asset's link (default: the archive's URL or absolute path); ``item_id``
    (default: the file name without suffix); ``datetime`` (RFC 3339; default the source's
    ``TIFFTAG_DATETIME``, else the archive's modification time).  A raster without a CRS has
    a null geometry and no bbox, as STAC requires.
    """
    when, origin = _when(archive, datetime)
    properties = {"datetime": when, "georsic:datetime_from": origin,
                  **_projection(archive), **_georsic_properties(archive)}
    item: dict = {"type": "Feature", "stac_version": STAC_VERSION,
                  "stac_extensions": [PROJECTION_SCHEMA],
                  "id": item_id or Path(archive.name).stem}
    if archive.info.crs is not None:
        geometry, bbox = _footprint(archive)
        if not all(math.isfinite(v) for v in bbox):
            geometry, bbox = None, None
    else:
        geometry, bbox = None, None
    item["geometry"] = geometry
    if bbox is not None:
        item["bbox"] = bbox
    item["properties"] = properties
    item["links"] = []
    item["assets"] = {"data": {"href": href or default_href(archive.path),
                               "type": MEDIA_TYPE,
                               "title": f"GeoRSIC archive ({archive.model_id}, quality "
                                        f"{archive.quality:g})",
                               "roles": ["data"]}}
    return item
