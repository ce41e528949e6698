"""Opening an archive in place in GDAL, rasterio and QGIS: a VRT whose bands call
:func:`pixel_function` of this module (``georsic vrt``).

GDAL runs a ``VRTDerivedRasterBand`` whose ``PixelFunctionLanguage`` is Python when
``GDAL_VRT_ENABLE_PYTHON=TRUSTED_MODULES`` and ``GDAL_VRT_PYTHON_TRUSTED_MODULES`` names this
module (:data:`MODULE`); :func:`environment` gives those settings and what GDAL's embedded Python
needs to find the package.  Every read, at any output size, arrives as one call with the
full-resolution window and the output array; :func:`georsic.inplace.read_window` serves it from
the coarsest pyramid level fine enough, through the tile cache all bands share.  Each band
lists the pyramid's levels as overviews: VRTs of the level's size, written inline (GDAL opens a
VRT given as its XML text), whose bands call the same function with the level's ``factor``.
(GDAL's virtual overviews, ``OverviewList``, recurse into the band that declares them and
fail with "Recursion detected" on a derived band.)

This module imports only the standard library at import time: GDAL imports it to find the
function, and ``georsic vrt --help`` should not load the codec.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
from collections import OrderedDict
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

#: The module GDAL must trust, and the function each band calls.
MODULE = "georsic.vrt"
FUNCTION = f"{MODULE}.pixel_function"
#: Band number of the VRT's mask band in :func:`pixel_function`'s arguments.
MASK_BAND = 0
#: GDAL's names of the data types an archive holds.
GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
              "uint32": "UInt32", "int32": "Int32", "float32": "Float32",
              "float64": "Float64"}
#: Metadata item naming the archive (QGIS shows it in the layer's properties).
ARCHIVE_KEY = "GEORSIC_ARCHIVE"


def environment() -> dict[str, str]:
    """The environment a GDAL process needs to run the VRT's pixel function: the trust
    options, the folders holding georsic and its dependencies (``PYTHONPATH``), and the
    Python library GDAL should load (``PYTHONSO``) where one is found."""
    package = Path(__file__).resolve().parent.parent
    paths = [str(package)]
    for key in ("purelib", "platlib"):
        folder = sysconfig.get_paths().get(key)
        if folder and folder not in paths and Path(folder).is_dir():
            paths.append(folder)
    env = {"GDAL_VRT_ENABLE_PYTHON": "TRUSTED_MODULES",
           "GDAL_VRT_PYTHON_TRUSTED_MODULES": MODULE,
           "PYTHONPATH": os.pathsep.join(paths)}
    library = _python_library()
    if library:
        env["PYTHONSO"] = library
    return env


def _python_library() -> str | None:
    """The shared Python library of this interpreter, when it has one on disk."""
    name = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    for folder in (sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LIBPL")):
        if name and folder and (Path(folder) / name).is_file() and ".so" in name:
            return str(Path(folder) / name)
    return None


def export_lines(env: dict[str, str] | None = None) -> list[str]:
    """``export NAME=value`` lines of :func:`environment`, quoted for a POSIX shell."""
    import shlex

    env = environment() if env is None else env
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]


def _colour(name: str) -> str:
    known = {"gray": "Gray", "palette": "Palette", "red": "Red", "green": "Green",
             "blue": "Blue", "alpha": "Alpha", "undefined": "Undefined"}
    return known.get(name, "Undefined")


def _arguments(path: str, band: int, prior: bool | str, fidelity: float | None,
               factor: int = 1) -> str:
    attrs = {"archive": path, "band": str(band)}
    if factor != 1:
        attrs["factor"] = str(factor)
    if prior:
        attrs["prior"] = "default" if prior is True else str(prior)
        if fidelity is not None:
            attrs["fidelity"] = repr(float(fidelity))
    text = " ".join(f"{key}={quoteattr(value)}" for key, value in attrs.items())
    return f"<PixelFunctionArguments {text}/>"


def _band_xml(archive, band: int, args: str, overviews: list[str] = ()) -> str:
    info = archive.info
    i = band - 1
    parts = [f'  <VRTRasterBand dataType="{GDAL_TYPES[info.dtype]}" band="{band}" '
             'subClass="VRTDerivedRasterBand">']
    if info.descriptions[i]:
        parts.append(f"    <Description>{escape(info.descriptions[i])}</Description>")
    if info.mask_kind == "nodata" and info.nodata is not None:
        parts.append(f"    <NoDataValue>{info.nodata!r}</NoDataValue>")
    parts.append(f"    <ColorInterp>{_colour(info.colorinterp[i])}</ColorInterp>")
    if info.colormap is not None and band == 1:
        entries = "".join(f'<Entry c1="{r}" c2="{g}" c3="{b}" c4="{a}"/>'
                          for _, r, g, b, a in sorted(info.colormap))
        parts.append(f"    <ColorTable>{entries}</ColorTable>")
    if info.units[i]:
        parts.append(f"    <UnitType>{escape(info.units[i])}</UnitType>")
    if info.offsets[i] != 0.0:
        parts.append(f"    <Offset>{info.offsets[i]!r}</Offset>")
    if info.scales[i] != 1.0:
        parts.append(f"    <Scale>{info.scales[i]!r}</Scale>")
    parts += [f"    <PixelFunctionType>{FUNCTION}</PixelFunctionType>",
              "    <PixelFunctionLanguage>Python</PixelFunctionLanguage>",
              f"    {args}"]
    parts += [f'    <Overview><SourceFilename relativeToVRT="0">{escape(xml)}</SourceFilename>'
              f"<SourceBand>{band}</SourceBand></Overview>" for xml in overviews]
    parts.append("  </VRTRasterBand>")
    return "\n".join(parts)


def vrt_xml(archive, prior: bool | str = False, fidelity: float | None = None) -> str:
    """The VRT of an open :class:`~georsic.reader.Archive` (its path made absolute)."""
    levels = [_dataset_xml(archive, prior, fidelity, level.factor, level.width, level.height)
              for level in archive.levels[1:]]
    return _dataset_xml(archive, prior, fidelity, 1, archive.width, archive.height, levels)


def _dataset_xml(archive, prior: bool | str, fidelity: float | None, factor: int,
                 width: int, height: int, overviews: list[str] = ()) -> str:
    """A VRT of the archive at ``factor`` (1: the full raster, with georeferencing, metadata
    and ``overviews`` given as VRT texts; else one of those overview VRTs)."""
    info, path = archive.info, archive_location(archive)
    t = info.affine
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if factor != 1:
        bands = [_band_xml(archive, band, _arguments(path, band, prior, fidelity, factor))
                 for band in range(1, info.count + 1)]
        return "".join([*lines, *bands, *_mask_xml(archive, path, prior, fidelity, factor),
                        "</VRTDataset>"])
    if info.crs_wkt:
        lines.append(f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(info.crs_wkt)}</SRS>')
    lines.append(f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}"
                 "</GeoTransform>")
    lines.append(f'  <Metadata><MDI key="{ARCHIVE_KEY}">{escape(path)}</MDI>'
                 f'<MDI key="GEORSIC_PYRAMID">{",".join(map(str, archive.overviews()))}</MDI>'
                 '</Metadata>')
    for band in range(1, info.count + 1):
        lines.append(_band_xml(archive, band, _arguments(path, band, prior, fidelity),
                               overviews))
    lines += _mask_xml(archive, path, prior, fidelity, 1)
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


def _mask_xml(archive, path: str, prior: bool | str, fidelity: float | None,
              factor: int) -> list[str]:
    """The dataset mask band of an archive whose mask is a dataset mask (else nothing)."""
    if archive.info.mask_kind != "dataset":
        return []
    return ["  <MaskBand>",
            '  <VRTRasterBand dataType="Byte" subClass="VRTDerivedRasterBand">',
            f"    <PixelFunctionType>{FUNCTION}</PixelFunctionType>",
            "    <PixelFunctionLanguage>Python</PixelFunctionLanguage>",
            f"    {_arguments(path, MASK_BAND, prior, fidelity, factor)}",
            "  </VRTRasterBand>", "  </MaskBand>"]


def archive_location(archive) -> str:
    """What a VRT names its archive by: the absolute path, or the URL as given (a remote
    archive's pixel function opens it with range requests, credentials from fsspec's usual
    environment: a VRT holds no secrets)."""
    return archive.path if archive.remote else str(archive.path.resolve())


def write_vrt(archive_path: str | Path, output: str | Path | None = None, *,
              prior: bool | str = False, fidelity: float | None = None,
              overwrite: bool = False) -> Path:
    """Write the VRT of the archive at ``archive_path`` (default: beside it, ``.vrt``)
    and return its path; written to a temporary file and renamed, never half-written."""
    import tempfile

    from georsic.archive import check_output
    from georsic.errors import OutputError
    from georsic.reader import Archive
    from georsic.remote import is_url

    remote = is_url(str(archive_path))
    if not remote:
        archive_path = Path(archive_path)
    if output is None:  # beside a local archive; in the current folder for a URL
        name = str(archive_path).split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        output = Path(name).with_suffix(".vrt") if remote else archive_path.with_suffix(".vrt")
    output = Path(output)
    if output.suffix.lower() != ".vrt":
        raise OutputError(f"output {output} must end in .vrt")
    check_output(output, overwrite, *(() if remote else (archive_path,)))
    with Archive(archive_path) as archive:
        if prior:
            archive.tile_prior(prior, 0.75 if fidelity is None else fidelity, "cpu")
        text = vrt_xml(archive, prior, fidelity)
    directory = output.parent if str(output.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except OSError as exc:
        Path(locals().get("tmp", output.with_name(".none"))).unlink(missing_ok=True)
        raise OutputError(f"cannot write {output}: {exc.strerror}") from None
    return output


_RESULTS: OrderedDict = OrderedDict()
_RESULTS_LOCK = threading.Lock()
#: Assembled windows kept for the other bands of the same request (GDAL reads band by band).
_KEEP_RESULTS = 4


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _window_data(path: str, xoff: int, yoff: int, xsize: int, ysize: int,
                 shape: tuple[int, int], prior: str, fidelity: float | None, factor: int = 1):
    """(values (bands, h, w), valid mask (h, w) uint8) of one request, all bands at once;
    the window in pixels of the overview of ``factor``."""
    key = (path, xoff, yoff, xsize, ysize, shape, prior, fidelity, factor)
    with _RESULTS_LOCK:
        if key in _RESULTS:
            _RESULTS.move_to_end(key)
            return _RESULTS[key]
    from rasterio.windows import Window

    from georsic.inplace import read_window
    from georsic.reader import _thread_archive
    from georsic.remote import RemoteLocation, is_url

    if is_url(path):  # opened once per process, as a remote archive's Dask tasks open it
        archive = _thread_archive(RemoteLocation(path), False)
    elif not Path(path).is_file():
        raise FileNotFoundError(f"archive {path} does not exist (the VRT names it by its "
                                "absolute path: write the VRT again where the archive is now)")
    else:
        archive = _thread_archive(str(Path(path).resolve()), False)
    if factor != 1:  # the overview's pixels to full-resolution ones
        xoff, yoff = xoff * factor, yoff * factor
        xsize = min(xsize * factor, archive.width - xoff)
        ysize = min(ysize * factor, archive.height - yoff)
    use_prior: bool | str = False if not prior else (True if prior == "default" else prior)
    result = read_window(archive, Window(xoff, yoff, xsize, ysize), shape, prior=use_prior,
                         fidelity=fidelity, with_mask=True)
    with _RESULTS_LOCK:
        _RESULTS[key] = result
        while len(_RESULTS) > _KEEP_RESULTS:
            _RESULTS.popitem(last=False)
    return result


def pixel_function(in_ar, out_ar, xoff, yoff, xsize, ysize, raster_xsize, raster_ysize,
                   buf_radius, gt, **kwargs) -> None:
    """GDAL's Python pixel function of a GeoRSIC VRT band: fills ``out_ar`` with band
    ``band`` (0: the mask, 255 valid) of the archive ``archive`` over the full-resolution
    window ``xoff, yoff, xsize, ysize``, resampled to ``out_ar``'s shape."""
    try:
        path = _text(kwargs["archive"])
        band = int(_text(kwargs.get("band", "1")))
        prior = _text(kwargs.get("prior", ""))
        fidelity = float(_text(kwargs["fidelity"])) if "fidelity" in kwargs else None
        factor = int(_text(kwargs.get("factor", "1")))
        values, valid = _window_data(path, int(xoff), int(yoff), int(xsize), int(ysize),
                                     tuple(out_ar.shape), prior, fidelity, factor)
        out_ar[:] = valid if band == MASK_BAND else values[band - 1]
    except Exception as exc:  # GDAL shows this one line, not a traceback
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"georsic: {message}", file=sys.stderr)
        raise RuntimeError(f"georsic: {message}") from None
