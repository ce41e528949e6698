"""Everything about a raster except its pixels, as an immutable value that round-trips to JSON."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.transform import Affine

from georsic.errors import GeorsicWarning

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


#: The most cells (rows x columns) of a raster attribute table kept in an archive header.
MAX_TABLE_CELLS = 2**20

Cell = int | float | str


@dataclass(frozen=True)
class AttributeTable:
    """A GDAL raster attribute table (RAT): columns as (name, GDAL field type, GDAL usage),
    rows of values (int, float or str per column type), thematic or athematic, and the linear
    binning (first row's minimum, bin size) of a table whose rows are value ranges."""

    columns: tuple[tuple[str, int, int], ...]
    rows: tuple[tuple[Cell, ...], ...]
    thematic: bool = True
    binning: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        return {"columns": [list(c) for c in self.columns],
                "rows": [[_json_cell(v) for v in row] for row in self.rows],
                "thematic": self.thematic,
                "binning": None if self.binning is None else list(self.binning)}

    @classmethod
    def from_dict(cls, data: dict) -> AttributeTable:
        columns = tuple((str(n), int(t), int(u)) for n, t, u in data["columns"])
        kinds = [_CELL_TYPES.get(t, str) for _, t, _ in columns]  # cell strings: "nan"
        rows = tuple(tuple(kind(v) for kind, v in zip(kinds, row, strict=True))
                     for row in data["rows"])
        binning = data.get("binning")
        return cls(columns, rows, bool(data.get("thematic", True)),
                   None if binning is None else (float(binning[0]), float(binning[1])))


#: GDAL's field types GFT_Integer and GFT_Real (anything else is kept as a string).
_CELL_TYPES = {0: int, 1: float}


def _json_cell(value: Cell) -> Cell:
    return _json_number(value) if isinstance(value, float) else value


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
    #: Per band, GDAL's category names (class index -> name), or () for every band when none
    #: has them.
    categories: tuple[tuple[str, ...], ...] = ()
    #: Per band, the raster attribute table of a categorical band, or () when none has one.
    tables: tuple[AttributeTable | None, ...] = ()

    @classmethod
    def from_dataset(cls, src: rasterio.io.DatasetReader) -> RasterInfo:
        """The metadata of ``src``; category names and attribute tables (which rasterio does
        not expose) are read with GDAL's Python bindings when they are installed."""
        info = cls._from_rasterio(src)
        return info._with_categories(*read_categories(src.name, src.count))

    @classmethod
    def _from_rasterio(cls, src: rasterio.io.DatasetReader) -> RasterInfo:
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
        for key in ("categories", "tables"):  # absent when empty: older readers see no change
            if not getattr(self, key):
                del data[key]
        if self.tables:
            data["tables"] = [None if t is None else t.to_dict() for t in self.tables]
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
            categories=tuple(tuple(str(n) for n in names)
                             for names in data.get("categories", ())),
            tables=tuple(None if t is None else AttributeTable.from_dict(t)
                         for t in data.get("tables", ())),
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
        """Bands whose values are class indices, never to be coded lossily: palette bands,
        bands with category names or a thematic attribute table, and bands whose metadata
        says ``LAYER_TYPE=thematic`` (as HFA/ERDAS and land-cover products write it)."""
        return tuple(i for i in range(self.count) if self._categorical(i))

    def _categorical(self, band: int) -> bool:
        layer_type = self.layer_type(band)
        table = self.tables[band] if self.tables else None
        return (self.colorinterp[band] == "palette" or layer_type == "thematic"
                or bool(self.categories and self.categories[band])
                or (table is not None and table.thematic and layer_type != "athematic"))

    def layer_type(self, band: int) -> str | None:
        """The band's ``LAYER_TYPE`` metadata item, lower case (``thematic``, ``athematic``)."""
        for key, value in self.band_tags[band]:
            if key.upper() == "LAYER_TYPE":
                return value.strip().lower()
        return None

    def _with_categories(self, categories: tuple[tuple[str, ...], ...],
                         tables: tuple[AttributeTable | None, ...],
                         too_large: tuple[int, ...] = ()) -> RasterInfo:
        """This value with the category names and attribute tables GDAL reported; a table is
        kept only where the band is kept exactly and the table is not ``too_large`` (else a
        warning says it was left out)."""
        info = replace(self, categories=categories if any(categories) else (), tables=tables)
        kept = list(tables)
        for band, table in enumerate(tables):
            if table is None:
                continue
            if band not in info.categorical:
                reason = "the band is athematic and coded lossily"
            elif band in too_large:
                reason = f"more than {MAX_TABLE_CELLS:,} cells; the values are exact"
            else:
                continue
            kept[band] = None
            warnings.warn(GeorsicWarning(
                f"the raster attribute table of band {band + 1} is not kept ({reason})"),
                stacklevel=3)
        return replace(info, tables=tuple(kept) if any(t is not None for t in kept) else ())


def _colormap(src) -> tuple[tuple[int, int, int, int, int], ...] | None:
    """The colour table of band 1 of a one-band palette raster, else None."""
    if src.count != 1 or src.colorinterp[0] != ColorInterp.palette:
        return None
    try:
        table = src.colormap(1)
    except ValueError:  # "NULL color table"
        return None
    return tuple((int(k), *(int(c) for c in v)) for k, v in sorted(table.items()))


Categories = tuple[tuple[tuple[str, ...], ...], tuple[AttributeTable | None, ...], tuple[int, ...]]


def _gdal():
    """GDAL's Python bindings (``osgeo.gdal``), or None where they are not installed."""
    try:
        from osgeo import gdal
    except ImportError:
        return None
    return gdal


@contextlib.contextmanager
def _quiet(gdal) -> Iterator[None]:
    """GDAL's messages kept off stderr (its failures show as None or RuntimeError)."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        yield
    finally:
        gdal.PopErrorHandler()


def _open(gdal, path: str):
    try:
        return gdal.Open(path)
    except RuntimeError:  # the host application turned GDAL's exceptions on
        return None


def read_categories(path: str, count: int) -> Categories:
    """Per band of the raster at ``path``: its category names and raster attribute table
    (None where it has none), and the bands whose table has more than
    :data:`MAX_TABLE_CELLS` cells (returned without rows). Nothing where GDAL's Python
    bindings are missing or cannot open ``path`` (a rasterio in-memory file, say)."""
    gdal = _gdal()
    if gdal is None:
        return (), (), ()
    with _quiet(gdal):
        dataset = _open(gdal, str(path))
        if dataset is None or dataset.RasterCount != count:
            return (), (), ()
        dataset.GetMetadata()  # loads the PAM sidecar: GTiff's GetCategoryNames does not
        bands = [dataset.GetRasterBand(b) for b in range(1, count + 1)]
        names = tuple(tuple(band.GetCategoryNames() or ()) for band in bands)
        read = [_read_table(gdal, band.GetDefaultRAT()) for band in bands]
    return names, tuple(t for t, _ in read), tuple(b for b, (_, big) in enumerate(read) if big)


def _read_table(gdal, rat) -> tuple[AttributeTable | None, bool]:
    """A GDAL RAT as a value, and whether it has more than MAX_TABLE_CELLS cells (then its
    rows are left out)."""
    if rat is None or rat.GetColumnCount() == 0:
        return None, False
    ncols, nrows = rat.GetColumnCount(), rat.GetRowCount()
    columns = tuple((rat.GetNameOfCol(c), rat.GetTypeOfCol(c), rat.GetUsageOfCol(c))
                    for c in range(ncols))
    getters = [{gdal.GFT_Integer: rat.GetValueAsInt, gdal.GFT_Real: rat.GetValueAsDouble}.get(
        t, rat.GetValueAsString) for _, t, _ in columns]
    too_large = nrows * ncols > MAX_TABLE_CELLS
    rows = () if too_large else tuple(
        tuple(get(r, c) for c, get in enumerate(getters)) for r in range(nrows))
    linear, first, size = rat.GetLinearBinning()
    table = AttributeTable(columns, rows, rat.GetTableType() == gdal.GRTT_THEMATIC,
                           (float(first), float(size)) if linear else None)
    return table, too_large


def write_categories(path: Path, info: RasterInfo) -> None:
    """Give the GeoTIFF at ``path`` the category names and attribute tables of ``info``.

    GDAL's GTiff driver keeps both in its PAM sidecar (``path`` + ``.aux.xml``), which
    GDAL, QGIS and rasterio read with the file; the TIFF itself is not touched. Where GDAL's
    Python bindings are missing or fail, a :class:`~georsic.errors.GeorsicWarning` says what
    was not kept."""
    bands = [b for b in range(info.count) if (info.categories and info.categories[b])
             or (info.tables and info.tables[b] is not None)]
    if not bands:
        return
    gdal = _gdal()
    failed = bands if gdal is None else _write(gdal, path, info, bands)
    reason = ("GDAL's Python bindings are not installed" if gdal is None
              else "GDAL could not write them")
    for band in failed:
        warnings.warn(GeorsicWarning(
            f"the category names and raster attribute table of band {band + 1} are not kept "
            f"({reason}); its values are exact"), stacklevel=2)


def _write(gdal, path: Path, info: RasterInfo, bands: list[int]) -> list[int]:
    """Write the names and tables of ``bands``; the bands that failed."""
    failed = []
    with _quiet(gdal):
        dataset = _open(gdal, str(path))  # read-only: GDAL writes the PAM sidecar on close
        if dataset is None:
            return bands
        for b in bands:
            band = dataset.GetRasterBand(b + 1)
            ok = True
            if info.categories and info.categories[b]:
                ok = band.SetCategoryNames(list(info.categories[b])) == 0
            if info.tables and info.tables[b] is not None:
                ok = band.SetDefaultRAT(_gdal_table(gdal, info.tables[b])) == 0 and ok
            if not ok:
                failed.append(b)
        dataset = None  # noqa: F841 - closing writes the sidecar
    return failed


def _gdal_table(gdal, table: AttributeTable):
    rat = gdal.RasterAttributeTable()
    for name, kind, usage in table.columns:
        rat.CreateColumn(name, kind, usage)
    rat.SetRowCount(len(table.rows))
    setters = [{gdal.GFT_Integer: rat.SetValueAsInt, gdal.GFT_Real: rat.SetValueAsDouble}.get(
        k, rat.SetValueAsString) for _, k, _ in table.columns]
    for r, row in enumerate(table.rows):
        for c, value in enumerate(row):
            setters[c](r, c, value)
    rat.SetTableType(gdal.GRTT_THEMATIC if table.thematic else gdal.GRTT_ATHEMATIC)
    if table.binning is not None:
        rat.SetLinearBinning(*table.binning)
    return rat
