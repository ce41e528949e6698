"""Reading a source raster: opening it with a clear error, validity masks, band mapping."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.windows import Window

from georsic.bandmap import SUPPORTED_DTYPES, BandMapping, band_groups, full_range
from georsic.control import Cancel, check_cancel
from georsic.errors import InputError
from georsic.rasterinfo import RasterInfo

_STATS_ROWS = 256


def gdal_message(exc: BaseException) -> str:
    """One line saying what GDAL reported: the cause rasterio chained, when it has one."""
    cause = exc.__cause__ or exc.__context__
    text = str(cause) if isinstance(cause, CPLE_BaseError) and str(cause) else str(exc)
    return " ".join(text.split()) or type(exc).__name__


@contextlib.contextmanager
def open_raster(path: str | Path) -> Iterator[rasterio.io.DatasetReader]:
    """Open a raster to compress; errors reading it (also pixels read later, inside the
    ``with`` block) are :class:`InputError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if path.is_dir():
        raise InputError(f"input {path} is a folder, not a raster file")
    try:
        src = rasterio.open(path)
    except (RasterioIOError, CPLE_BaseError):
        raise InputError(f"{path} is not a raster that GDAL can read") from None
    except (RasterioError, OSError) as exc:
        raise InputError(f"cannot open {path}: {gdal_message(exc)}") from None
    with src, _read_errors(path):
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


@contextlib.contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except (RasterioError, CPLE_BaseError) as exc:
        raise InputError(f"cannot read {path}: {gdal_message(exc)}") from None


def validity(src, data: np.ndarray, info: RasterInfo, window: Window) -> np.ndarray | None:
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


def _refuse_infinities(src, data: np.ndarray, info: RasterInfo, window: Window) -> None:
    """Infinite values (not no-data) cannot be coded; say so rather than turn them to NaN."""
    infinite = np.isinf(data)
    if not infinite.any():
        return
    if info.mask_kind == "nodata" and info.nodata is not None:
        infinite &= data != info.nodata
    elif info.mask_kind == "dataset":
        infinite &= src.dataset_mask(window=window)[None] > 0
    if infinite.any():
        band = int(np.argmax(infinite.any(axis=(1, 2)))) + 1
        raise InputError(f"{src.name}: band {band} holds infinite values (+inf or -inf), which "
                         "GeoRSIC cannot keep; set them to the no-data value first (e.g. with "
                         "gdal_calc.py)")


def band_mapping(src, info: RasterInfo, cancel: Cancel | None) -> BandMapping:
    """How the bands go to the codec; alpha and categorical bands (class indices: palette,
    category names, a thematic attribute table or ``LAYER_TYPE=thematic``, see
    :attr:`RasterInfo.categorical`) are kept losslessly: a lossy mask or class index is
    meaningless."""
    categorical = set(info.categorical)
    lossless = tuple(i for i, name in enumerate(info.colorinterp)
                     if name == "alpha" or i in categorical)
    groups = band_groups([i for i in range(info.count) if i not in lossless])
    fixed = full_range(info.dtype)
    if fixed:
        return BandMapping(groups, (fixed[0],) * info.count, (fixed[1],) * info.count,
                           info.dtype, lossless)
    low = np.full(info.count, np.inf)
    high = np.full(info.count, -np.inf)
    for row in range(0, info.height, _STATS_ROWS):
        check_cancel(cancel)
        window = Window(0, row, info.width, min(_STATS_ROWS, info.height - row))
        data = src.read(window=window)
        if data.dtype.kind == "f":
            _refuse_infinities(src, data, info, window)
        valid = validity(src, data, info, window)
        for band in range(info.count):
            values = data[band] if valid is None else data[band][valid[band]]
            if values.size:
                low[band] = min(low[band], float(values.min()))
                high[band] = max(high[band], float(values.max()))
    empty = ~np.isfinite(low)
    low[empty], high[empty] = 0.0, 1.0
    high = np.where(high > low, high, low + 1.0)
    return BandMapping(groups, tuple(low.tolist()), tuple(high.tolist()), info.dtype, lossless)


def encode_raw(data: np.ndarray, bands: tuple[int, ...]) -> bytes:
    if not bands:
        return b""
    return zlib.compress(np.ascontiguousarray(data[list(bands)]).tobytes(), 6)
