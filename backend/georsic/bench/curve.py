"""``georsic bench bounded --curve``: one rate-distortion curve from quality 0 to lossless.

For each 8-bit three-band image: GeoRSIC's lossy qualities, then its bounded archives at
decreasing D down to lossless, against JPEG XL, AVIF and JPEG 2000 from their lowest rates to
their lossless modes (imagecodecs codestreams, no container).  Every point is (bits per pixel
per band, PSNR over all bands); a lossless point has no PSNR and is drawn on the plot's top
line.  The bounded points come from :func:`georsic.bench.bounded.georsic_bounded`, which the
table of ``georsic bench bounded`` uses too.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: GeoRSIC's lossy qualities on the curve.
QUALITIES = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)
#: JPEG XL distances (lossy), AVIF levels (0-100), JPEG 2000 target PSNRs (dB; OpenJPEG's
#: fixed-quality mode, as ``georsic bench rd`` runs it).
JXL_DISTANCES = (12.0, 8.0, 5.0, 3.0, 2.0, 1.4, 1.0, 0.7, 0.5, 0.3, 0.15)
AVIF_LEVELS = (10, 25, 40, 55, 70, 80, 88, 94, 98)
J2K_PSNRS = (20.0, 24.0, 28.0, 32.0, 36.0, 40.0, 44.0, 48.0, 52.0)
#: Where lossless points are drawn (PSNR is infinite).
LOSSLESS_PSNR = 62.0


def psnr(source: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR (dB) over every band of 8-bit data; ``inf`` when equal."""
    mse = float(np.mean((source.astype(np.float64) - decoded.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _point(codec: str, setting: str, size: int, source: np.ndarray,
           decoded: np.ndarray) -> dict:
    return {"codec": codec, "setting": setting, "bpp": 8 * size / source.size,
            "psnr": psnr(source, decoded)}


def classical_points(data: np.ndarray) -> list[dict]:
    """JPEG XL (lossy distances, then lossless), AVIF (levels, then lossless) and JPEG 2000
    (target PSNRs, then reversible) on a (3, H, W) uint8 image."""
    import imagecodecs

    rgb = np.ascontiguousarray(data.transpose(1, 2, 0))
    points = []

    def add(codec: str, setting: str, stream: bytes, decode: Callable) -> None:
        points.append(_point(codec, setting, len(stream), data,
                             np.asarray(decode(stream)).transpose(2, 0, 1)))

    for distance in JXL_DISTANCES:
        add("JPEG XL", f"d {distance:g}",
            imagecodecs.jpegxl_encode(rgb, distance=distance, effort=7), imagecodecs.jpegxl_decode)
    add("JPEG XL", "lossless", imagecodecs.jpegxl_encode(rgb, lossless=True, effort=7),
        imagecodecs.jpegxl_decode)
    for level in AVIF_LEVELS:
        add("AVIF", f"q {level}", imagecodecs.avif_encode(rgb, level=level, speed=6),
            imagecodecs.avif_decode)
    add("AVIF", "lossless", imagecodecs.avif_encode(rgb, level=100, speed=6),
        imagecodecs.avif_decode)
    for target in J2K_PSNRS:
        add("JPEG 2000", f"{target:g} dB target",
            imagecodecs.jpeg2k_encode(rgb, level=target, codecformat="J2K", reversible=False),
            imagecodecs.jpeg2k_decode)
    add("JPEG 2000", "reversible",
        imagecodecs.jpeg2k_encode(rgb, level=0, codecformat="J2K", reversible=True),
        imagecodecs.jpeg2k_decode)
    return points


def georsic_points(path: Path, data: np.ndarray, bounds: tuple[int, ...], folder: Path,
                   log: Callable[[str], None]) -> list[dict]:
    """GeoRSIC's lossy qualities (default tiling) and bounded archives at ``bounds``."""
    import georsic
    from georsic.bench.bounded import georsic_bounded

    points = []
    for quality in QUALITIES:
        archive = folder / "lossy.grsc"
        summary = georsic.compress(path, archive, quality=quality, overwrite=True)
        with georsic.open(archive) as opened:
            decoded = opened.read()
        points.append(_point("GeoRSIC", f"q {quality:g}", summary.bytes, data, decoded))
    for bound in sorted(bounds, reverse=True):
        size, decoded, base = georsic_bounded(path, bound, folder)
        setting = "lossless" if bound == 0 else f"D {bound}"
        points.append(_point("GeoRSIC", f"{setting} [{base}]", size, data, decoded))
        log(f"{path.name}: GeoRSIC {setting} {points[-1]['bpp']:.3f} bpp/band")
    return points


def curves(images: list[Path], bounds: tuple[int, ...],
           log: Callable[[str], None]) -> dict[str, list[dict]]:
    """Every point of every 8-bit three-band image among ``images``, by image name."""
    import rasterio

    out: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in images:
            with rasterio.open(path) as src:
                data = src.read()
            if data.shape[0] != 3 or data.dtype != np.uint8:
                log(f"{path.name}: not 8-bit RGB, left off the curve")
                continue
            out[path.name] = georsic_points(path, data, bounds, Path(tmp), log) + \
                classical_points(data)
    return out


def markdown(points: dict[str, list[dict]]) -> str:
    """One table per image: codec, setting, bits per pixel per band, PSNR."""
    lines = []
    for name, rows in points.items():
        lines += [f"### {name}", "", "| codec | setting | bpp per band | PSNR (dB) |",
                  "|---|---|---|---|"]
        for p in sorted(rows, key=lambda p: (p["codec"] != "GeoRSIC", p["codec"], p["bpp"])):
            value = "lossless" if math.isinf(p["psnr"]) else f"{p['psnr']:.2f}"
            lines.append(f"| {p['codec']} | {p['setting']} | {p['bpp']:.3f} | {value} |")
        lines.append("")
    return "\n".join(lines)


_STYLE = {"GeoRSIC": {"color": "black", "lw": 2.2, "marker": "o", "ms": 4, "zorder": 5},
          "JPEG XL": {"color": "tab:blue", "lw": 1.4, "marker": "."},
          "AVIF": {"color": "tab:orange", "lw": 1.4, "marker": "."},
          "JPEG 2000": {"color": "tab:green", "lw": 1.4, "marker": "."}}


def plot(points: dict[str, list[dict]], path: Path) -> bool:
    """PSNR against bits per pixel per band, one panel per image, lossless points on the top
    line; False (nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(points), figsize=(6 * len(points), 5), squeeze=False)
    for ax, (name, rows) in zip(axes[0], points.items(), strict=True):
        for codec, style in _STYLE.items():
            mine = sorted((p for p in rows if p["codec"] == codec), key=lambda p: p["bpp"])
            if not mine:
                continue
            xs = [p["bpp"] for p in mine]
            ys = [LOSSLESS_PSNR if math.isinf(p["psnr"]) else p["psnr"] for p in mine]
            ax.plot(xs, ys, label=codec, **style)
        ax.axhline(LOSSLESS_PSNR, color="0.6", lw=0.8, ls=":")
        ax.text(0.02, LOSSLESS_PSNR + 0.4, "lossless", fontsize=8, color="0.4")
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel per band")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("From quality 0 to lossless: GeoRSIC (lossy qualities, then bounded D = 16 .. 0)"
                 " against JPEG XL, AVIF and JPEG 2000", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
