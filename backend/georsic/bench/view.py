"""Viewing an archive in place (``georsic bench view``): what a GIS waits for.

An archive of ``--size`` x ``--size`` pixels (default: a mosaic of the held-out aerial image
``benchmarks/data/deepforest_australia_uav.tif``, mirrored to the size; or ``--input``) is
compressed with its pyramid, then read in place through the API (:meth:`Archive.read` with
``out_shape``) and through rasterio on the archive's VRT (GDAL running
:func:`georsic.vrt.pixel_function` in this process):

* open: opening the archive, or the VRT;
* overview: the whole extent read at 1024 pixels wide, cold (empty tile cache);
* window: a full-resolution 512 x 512 window inside one tile, cold and warm;
* one tile: decoding that one full-resolution tile alone (the target for the cold window);
* the pyramid's share of the archive's bytes.

Cold means the tile cache (and the VRT's last-window cache) emptied and the VRT reopened;
the codec is loaded on the decoding threads once before, by first reads (a row of their
own).  Each time is the median of 3 runs.  Writes a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

#: The held-out image the default mosaic is made of.
MOSAIC_SOURCE = Path(__file__).resolve().parents[3] / "benchmarks/data/deepforest_australia_uav.tif"


def make_mosaic(source: Path, size: int, out: Path) -> Path:
    """A ``size`` x ``size`` tiled GeoTIFF of ``source`` mirrored (reflections, no seams),
    georeferenced as the source's corner; written in strips (bounded memory)."""
    import numpy as np
    import rasterio

    with rasterio.open(source) as src:
        image = src.read()
        crs, transform = src.crs, src.transform
    _, h, w = image.shape
    rows = _mirror(np.arange(size), h)
    cols = _mirror(np.arange(size), w)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": image.shape[0],
               "dtype": image.dtype, "crs": crs, "transform": transform, "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
    with rasterio.open(out, "w", **profile) as dst:
        for y in range(0, size, 512):
            block = image[:, rows[y:y + 512][:, None], cols[None, :]]
            dst.write(block, window=rasterio.windows.Window(0, y, size, block.shape[1]))
    return out


def _mirror(index, length: int):
    import numpy as np

    period = index % (2 * length)
    return np.where(period < length, period, 2 * length - 1 - period)


def _timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def _cold() -> None:
    from georsic import inplace, vrt

    inplace.CACHE.clear()
    with vrt._RESULTS_LOCK:
        vrt._RESULTS.clear()


def _median(fn, runs: int = 3, cold: bool = True) -> tuple[float, object]:
    """The median time of ``runs`` calls (each after :func:`_cold` when ``cold``)."""
    times, value = [], None
    for _ in range(runs):
        if cold:
            _cold()
        seconds, value = _timed(fn)
        times.append(seconds)
    return sorted(times)[len(times) // 2], value


def _RESULTS_clear() -> None:  # noqa: N802 - names the cache it empties
    """Empty only the VRT's last-window cache (the tiles stay decoded)."""
    from georsic import vrt

    with vrt._RESULTS_LOCK:
        vrt._RESULTS.clear()


def _vrt_read(vrt_path: Path, **kwargs):
    """Open the VRT (a new GDAL dataset: an empty block cache) and read."""
    import rasterio

    with rasterio.open(vrt_path) as src:
        return src.read(**kwargs)


def _warm(archive) -> None:
    """Decode as the reads below will: a tile alone, and two tiles at once (every decoding
    thread then holds its codec)."""
    from rasterio.windows import Window

    from georsic import inplace

    grid = archive.grid
    inplace.pieces(archive, archive.levels[0], Window(0, 0, 1, 1))
    _cold()
    inplace.pieces(archive, archive.levels[0],
                   Window(0, 0, min(archive.width, grid.stride + 1), 1))
    _cold()
    inplace.pieces(archive, archive.levels[0], Window(0, 0, 1, 1))


def measure(archive_path: Path, vrt_path: Path) -> dict:
    """Every figure of the table, API and rasterio (seconds; the pyramid as a share)."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    import georsic
    from georsic import inplace, vrt

    out: dict = {}
    out["open_api"], archive = _timed(lambda: georsic.open(archive_path))
    width = 1024
    height = max(1, round(archive.height * width / archive.width))
    grid = archive.grid
    centre = grid.tile((grid.rows // 2) * grid.cols + grid.cols // 2)
    x0 = int(centre.window.col_off) + grid.overlap
    y0 = int(centre.window.row_off) + grid.overlap
    window = Window(x0, y0, min(512, archive.width - x0), min(512, archive.height - y0))
    patch = (int(window.height), int(window.width))
    # the first reads of a process load the codec on each decoding thread: measured apart
    out["first_read"], _ = _timed(lambda: _warm(archive))
    _cold()
    out["overview_api"], small = _median(lambda: archive.read(out_shape=(height, width)))
    out["overview_level"] = inplace.choose_level(archive.levels, Window(0, 0, archive.width,
                                                 archive.height), (height, width)).factor
    out["window_cold_api"], pixels = _median(lambda: archive.read(window, out_shape=patch))
    out["window_warm_api"], _ = _median(lambda: archive.read(window, out_shape=patch),
                                        cold=False)
    out["tile_decode"], _ = _median(lambda: inplace._decode(archive, archive.levels[0],
                                                            centre.index, None, 1))
    env = rasterio.Env(GDAL_VRT_ENABLE_PYTHON="TRUSTED_MODULES",
                       GDAL_VRT_PYTHON_TRUSTED_MODULES=vrt.MODULE)
    with env:
        out["open_vrt"], _ = _median(lambda: rasterio.open(vrt_path).close(), cold=False)
        out["overview_vrt"], small_vrt = _median(lambda: _vrt_read(
            vrt_path, out_shape=(archive.count, height, width)))
        out["window_cold_vrt"], pixels_vrt = _median(lambda: _vrt_read(vrt_path,
                                                                       window=window))
        with rasterio.open(vrt_path) as src:
            src.read(window=window)
            out["window_warm_vrt"], _ = _median(
                lambda: (_RESULTS_clear(), src.read(window=window))[1], cold=False)
    out["same_overview"] = bool(np.array_equal(small, small_vrt))
    out["same_window"] = bool(np.array_equal(pixels, pixels_vrt)) and \
        bool(np.array_equal(pixels, archive.read(window, threads=1)))
    out["pyramid_share"] = archive.pyramid_bytes / archive._reader.size
    out["archive_bytes"] = archive._reader.size
    out["pyramid_bytes"] = archive.pyramid_bytes
    out["levels"] = [(lv.factor, lv.width, lv.height, len(lv.grid)) for lv in archive.levels]
    out["size"] = (archive.width, archive.height)
    out["tile"] = (grid.size, grid.overlap)
    out["out_shape"] = (height, width)
    out["window"] = patch
    return out


def table(figures: dict, command: str, compress_s: float | None) -> str:
    """The Markdown report of :func:`measure`'s figures."""
    f = figures
    ms = lambda s: f"{1000 * s:,.0f} ms"  # noqa: E731
    levels = ", ".join(f"{factor} ({w}x{h}, {n} tile{'s' * (n != 1)})"
                       for factor, w, h, n in f["levels"][1:]) or "none"
    lines = [
        f"# georsic bench view: {f['size'][0]} x {f['size'][1]} archive",
        "",
        f"Command: `{command}`",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s) "
        f"visible, Python {platform.python_version()}",
        f"Tiles: {f['tile'][0]} px, overlap {f['tile'][1]}; pyramid levels: {levels}",
        "" if compress_s is None else f"Compression (pyramid included): {compress_s:.1f} s",
        "",
        "| measure | API (`Archive.read`) | rasterio on the VRT |",
        "|---|---|---|",
        f"| open | {ms(f['open_api'])} | {ms(f['open_vrt'])} |",
        f"| whole extent at {f['out_shape'][1]} x {f['out_shape'][0]} px, cold (pyramid "
        f"level {f['overview_level']}) | {ms(f['overview_api'])} | {ms(f['overview_vrt'])} |",
        f"| full-resolution {f['window'][1]} x {f['window'][0]} window, cold | "
        f"{ms(f['window_cold_api'])} | {ms(f['window_cold_vrt'])} |",
        f"| the same window, warm | {ms(f['window_warm_api'])} | "
        f"{ms(f['window_warm_vrt'])} |",
        f"| one full-resolution tile's decode (1 thread) | {ms(f['tile_decode'])} | |",
        f"| first reads of a process (codecs load on the decoding threads; before the "
        f"rows above) | {ms(f['first_read'])} | |",
        "",
        f"Pyramid: {f['pyramid_bytes']:,} of {f['archive_bytes']:,} bytes "
        f"({100 * f['pyramid_share']:.2f} % of the archive).",
        f"Same pixels through the API and the VRT: overview {f['same_overview']}, window "
        f"{f['same_window']} (the window also equals the full-resolution decode).",
        "Warm: the tiles decoded, the window blended again (GDAL asks band by band: bands 2 "
        "and 3 come from the last window, kept for them).",
    ]
    return "\n".join(lines) + "\n"


def main(args) -> int:
    import georsic
    from georsic.vrt import write_vrt

    work = Path(tempfile.mkdtemp(prefix="georsic-view-"))
    compress_s = None
    archive = Path(args.archive) if args.archive else None
    if archive is None:
        source = Path(args.input) if args.input else make_mosaic(
            MOSAIC_SOURCE, args.size, work / f"mosaic_{args.size}.tif")
        archive = work / "view.grsc"
        compress_s, _ = _timed(lambda: georsic.compress(
            source, archive, quality=args.quality, tile_size=args.tile_size, device="cpu",
            pyramid_levels=args.pyramid, overwrite=True))
    vrt_path = write_vrt(archive, work / "view.vrt", overwrite=True)
    figures = measure(archive, vrt_path)
    command = "georsic bench view " + " ".join(sys.argv[3:] if len(sys.argv) > 3 else [])
    report = table(figures, command.strip(), compress_s)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("view", help="in-place viewing of an archive: open, whole extent at "
                       "1024 px, a 512 px window cold and warm, the pyramid's share")
    p.add_argument("--size", type=int, default=16384, help="mosaic edge in pixels (16384)")
    p.add_argument("--input", help="a raster to compress instead of the mosaic")
    p.add_argument("--archive", help="an archive to measure as it is (nothing compressed)")
    p.add_argument("--quality", type=float, default=5.0)
    p.add_argument("--tile-size", type=int, default=1024)
    p.add_argument("--pyramid", default="auto")
    p.add_argument("--out", help="write the Markdown table here too")
    p.set_defaults(func=main)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="what", required=True))
    parsed = parser.parse_args()
    sys.exit(parsed.func(parsed))
