"""``georsic bench bounded``: bits per pixel per band of bounded-error coding at D = 0, 1, 2, ...

Every row's decoded pixels are checked against the source (max |error| <= D over every pixel
of every band; a row that misses its bound is marked), so the table compares only codecs that
kept the bound.  Rows: JPEG-LS (CharLS, NEAR = D, each band on its own), LERC (maxZError = D,
with and without zstd), a classical base + residual (AVIF at the best of a few qualities, then
GeoRSIC's correction layer; 8-bit images of three bands), JPEG XL lossless (effort 7; at D > 0
of the source quantised with step 2D + 1, a classical near-lossless construction) and GeoRSIC
(``compress(max_error=D)``, the base chosen by the encoder; its choice in brackets).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio

DEFAULT_BOUNDS = (0, 1, 2, 4, 8, 16)
#: AVIF qualities tried as the classical base (imagecodecs' level, 0-100).
AVIF_LEVELS = (50, 70, 85, 95)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def _check(source: np.ndarray, decoded: np.ndarray, bounds: list[int]) -> int:
    """The largest error beyond its band's bound (0: every pixel kept its bound)."""
    error = np.abs(source.astype(np.int64) - decoded.astype(np.int64))
    return int(max(0, *(int(e.max()) - b for e, b in zip(error, bounds, strict=True))))


def lossless_bands(path: Path) -> tuple[int, ...]:
    """Bands GeoRSIC keeps lossless whatever the bound (alpha, categorical)."""
    from georsic.rasterinfo import RasterInfo
    from georsic.source import band_mapping

    with rasterio.open(path) as src:
        return band_mapping(src, RasterInfo.from_dataset(src), None).lossless


def jpegls(data: np.ndarray, bounds: list[int]) -> tuple[int, np.ndarray]:
    import imagecodecs

    size, out = 0, []
    for band, bound in zip(data, bounds, strict=True):
        stream = imagecodecs.jpegls_encode(np.ascontiguousarray(band), level=bound)
        size += len(stream)
        out.append(imagecodecs.jpegls_decode(stream))
    return size, np.stack(out)


def lerc(data: np.ndarray, bounds: list[int], zstd: bool) -> tuple[int, np.ndarray]:
    import imagecodecs

    kwargs = {"compression": "zstd"} if zstd else {}
    size, out = 0, []
    for band, bound in zip(data, bounds, strict=True):
        # LERC's integer path is lossless at maxZError 0.5
        stream = imagecodecs.lerc_encode(np.ascontiguousarray(band),
                                         level=max(float(bound), 0.5), **kwargs)
        size += len(stream)
        out.append(imagecodecs.lerc_decode(stream).reshape(band.shape))
    return size, np.stack(out)


def _jpegxl_bands(planes: np.ndarray) -> tuple[int, np.ndarray]:
    """Unsigned planes by JPEG XL lossless (effort 7): bands 1-3, 4-6, ... as one RGB image
    each (the colour transform across them), the rest one by one; bytes and decoded planes."""
    import imagecodecs

    whole = len(planes) - len(planes) % 3
    groups = [planes[i:i + 3] for i in range(0, whole, 3)] + [planes[i:i + 1]
                                                              for i in range(whole, len(planes))]
    size, out = 0, []
    for group in groups:
        image = np.moveaxis(group, 0, -1) if len(group) == 3 else group[0]
        stream = imagecodecs.jpegxl_encode(np.ascontiguousarray(image), lossless=True,
                                           effort=7)
        size += len(stream)
        coded = imagecodecs.jpegxl_decode(stream)
        out.extend(np.moveaxis(coded, -1, 0) if len(group) == 3 else [coded])
    return size, np.stack(out)


def jpegxl_lossless(data: np.ndarray) -> tuple[int, np.ndarray]:
    """JPEG XL lossless of the image (effort 7; bands grouped as :func:`_jpegxl_bands`)."""
    return _jpegxl_bands(data)


def quantised_jpegxl(data: np.ndarray, bounds: list[int]) -> tuple[int, np.ndarray]:
    """Each band quantised with step 2D + 1 (``round(x / step) * step``, within D), the
    quantised values offset to 0 by JPEG XL lossless (:func:`_jpegxl_bands`)."""
    steps = np.asarray([2 * b + 1 for b in bounds])[:, None, None]
    q = (data.astype(np.int64) + steps // 2) // steps  # the nearest multiple of step, / step
    low = q.reshape(len(q), -1).min(axis=1)[:, None, None]
    off = q - low
    size, decoded = _jpegxl_bands(off.astype(np.uint8 if off.max() < 256 else np.uint16))
    values = (decoded.astype(np.int64) + low) * steps
    info = np.iinfo(data.dtype)
    return size, np.clip(values, info.min, info.max)


def avif_plus_residual(data: np.ndarray, bound: int) -> tuple[int, np.ndarray, int]:
    """AVIF base (best of :data:`AVIF_LEVELS`) + GeoRSIC's correction layer (the archive's:
    per band JPEG-LS, rANS or JPEG XL, or the three bands as one JPEG XL image)."""
    import imagecodecs

    from georsic.bounded import AVIF_SPEED, encode_corrections, jpegxl_groups, reconstruct

    best = None
    source = data.astype(np.int64)
    for level in AVIF_LEVELS:  # at the encoder speed GeoRSIC's own AVIF bases use
        stream = imagecodecs.avif_encode(np.ascontiguousarray(data.transpose(1, 2, 0)),
                                         level=level, speed=AVIF_SPEED)
        base = imagecodecs.avif_decode(stream).transpose(2, 0, 1).astype(np.int64)
        residuals = encode_corrections(source, base, None, [bound] * 3, jpegxl_groups(3))
        size = len(stream) + sum(map(len, residuals))
        if best is None or size < best[0]:
            rec = reconstruct(base, residuals, [0, 1, 2], b"", "uint8")
            best = (size, rec, level)
    assert best is not None
    return best


def georsic_bounded(path: Path, bound: int, folder: Path) -> tuple[int, np.ndarray, str]:
    import georsic

    archive = folder / "b.grsc"
    summary = georsic.compress(path, archive, max_error=bound, overwrite=True)
    with georsic.open(archive) as opened:
        decoded = opened.read(threads=1)
    base = summary.base_name if summary.base is None or summary.base_name.startswith("avif") \
        else f"q{summary.base:g}"
    return summary.bytes, decoded, base


def _cell(size: int, pixels: int, excess: int, note: str = "") -> str:
    bpp = 8 * size / pixels
    flag = "" if excess == 0 else f" MISSED (by {excess})"
    return f"{bpp:.3f}{f' [{note}]' if note else ''}{flag}"


def run(images: list[Path], bounds: tuple[int, ...], log: Callable[[str], None]) -> list[str]:
    """The markdown table's lines (one row per image and codec, one column per bound)."""
    lines = ["| image | codec | " + " | ".join(f"D={d}" for d in bounds) + " |",
             "|---|---|" + "---|" * len(bounds)]
    with tempfile.TemporaryDirectory() as tmp:
        for path in images:
            data = _read(path)
            pixels = data.size
            exact = lossless_bands(path)
            if exact:
                log(f"{path.name}: band(s) {[b + 1 for b in exact]} kept lossless (alpha or "
                    "categorical) by every codec")
            rows: dict[str, list[str]] = {}
            for bound in bounds:
                started = time.perf_counter()
                per_band = [0 if b in exact else bound for b in range(data.shape[0])]
                cells = {
                    "JPEG-LS (CharLS, NEAR=D)": jpegls(data, per_band),
                    "LERC (maxZError=D)": lerc(data, per_band, False),
                    "LERC + zstd": lerc(data, per_band, True),
                }
                for name, (size, decoded) in cells.items():
                    rows.setdefault(name, []).append(
                        _cell(size, pixels, _check(data, decoded, per_band)))
                if data.shape[0] == 3 and data.dtype == np.uint8:
                    size, decoded, level = avif_plus_residual(data, bound)
                    rows.setdefault("AVIF base + GeoRSIC correction", []).append(
                        _cell(size, pixels, _check(data, decoded, per_band), f"avif {level}"))
                if bound == 0:
                    size, decoded = jpegxl_lossless(data)
                else:
                    size, decoded = quantised_jpegxl(data, per_band)
                rows.setdefault("JPEG XL lossless (D>0: of the source quantised, step 2D+1)",
                                []).append(_cell(size, pixels, _check(data, decoded, per_band)))
                size, decoded, base = georsic_bounded(path, bound, Path(tmp))
                rows.setdefault("GeoRSIC (exact base + correction)", []).append(
                    _cell(size, pixels, _check(data, decoded, per_band), base))
                log(f"{path.name} D={bound}: {time.perf_counter() - started:.0f} s")
            for name, cells in rows.items():
                cells = cells + ["-"] * (len(bounds) - len(cells))
                lines.append(f"| {path.name} | {name} | " + " | ".join(cells) + " |")
    return lines


def main(args: argparse.Namespace) -> int:
    import sys

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if args.curve:
        return _curve(args, log)
    lines = run([Path(p) for p in args.images], tuple(args.bounds), log)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def _curve(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    """``--curve PREFIX``: PREFIX.md (every point) and PREFIX.png (the plot)."""
    from georsic.bench import curve

    points = curve.curves([Path(p) for p in args.images], tuple(args.bounds), log)
    text = curve.markdown(points)
    print(text)
    prefix = Path(args.curve)
    prefix.with_suffix(".md").write_text(text)
    if not curve.plot(points, prefix.with_suffix(".png")):
        log("matplotlib is not installed: no plot (pip install 'georsic[bench]')")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bounded", help="bits per pixel per band of bounded-error coding "
                                              "(GeoRSIC, JPEG-LS, LERC, JPEG XL lossless)")
    p.add_argument("images", nargs="+")
    p.add_argument("--bounds", type=int, nargs="+", default=list(DEFAULT_BOUNDS))
    p.add_argument("--out", help="also write the markdown table here")
    p.add_argument("--curve", metavar="PREFIX",
                   help="instead of the table: the curve from quality 0 to lossless (GeoRSIC's "
                        "qualities and bounds against JPEG XL, AVIF and JPEG 2000) of the 8-bit "
                        "RGB images, as PREFIX.md and PREFIX.png")
    p.set_defaults(func=main)
