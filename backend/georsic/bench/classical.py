"""The classical codecs a GIS analyst would use instead of GeoRSIC.

Two ways of running them:

* **codestreams** (``jpeg``, ``webp``, ``jpeg2000``, ``jpegxl``, ``avif``): the bare
  compressed stream from imagecodecs, built on the same libraries GDAL uses for these
  compressions (libjpeg-turbo, libwebp, OpenJPEG, libjxl, libavif). This is the protocol of
  ``ANCHORS.md`` and the one BD-rates are computed against: it has no container overhead, so it
  is the most favourable case for the classical codecs.
* **GDAL files** (``gtiff-jpeg``, ``gtiff-webp``, ``gdal-jp2``): a whole georeferenced file
  written by GDAL (through rasterio) with the creation options an analyst would use, and read
  back by GDAL. bpp then counts the whole file (TIFF/JP2 header, georeferencing, tile
  padding). Only the compressions the GDAL of the installed rasterio wheel can write are
  offered here (it has no JPEG-XL in GeoTIFF and no AVIF driver).

Every codec is swept over its own quality parameter on a grid chosen to cover roughly
0.05-1.5 bpp on hard aerial scenes.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import imagecodecs
import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from georsic.bench.images import BenchImage
from georsic.bench.metrics import bits_per_pixel, ms_ssim, psnr

_THREADS = os.cpu_count() or 1


def _lib_version(name: str) -> str:
    for item in imagecodecs.version().split(", "):
        if item.startswith(name + "-"):
            return item[len(name) + 1:]
    return "?"


@dataclass(frozen=True)
class ClassicalCodec:
    key: str
    label: str
    library: str
    settings: str
    param_name: str
    params: tuple
    encode: Callable[[BenchImage, float], bytes]
    decode: Callable[[bytes], np.ndarray]
    #: "codestream" (imagecodecs) or "file" (GDAL, whole file).
    container: str = "codestream"
    #: Whether the parameter only takes integer values.
    integer: bool = True
    #: Whether midpoints are geometric (for a parameter like JPEG-XL's distance).
    geometric: bool = False

    def midpoint(self, a: float, b: float) -> float | None:
        """A parameter between ``a`` and ``b`` (None when there is none)."""
        if self.integer:
            m = round((a + b) / 2)
            return None if m in (a, b) else m
        if self.geometric and a > 0 and b > 0:
            m = round(float(np.sqrt(a * b)), 3)
        else:
            m = round((a + b) / 2, 3)
        return None if m in (a, b) else m

    def describe(self) -> dict:
        return {
            "key": self.key,
            "label": self.label,
            "library": self.library,
            "settings": self.settings,
            "param": self.param_name,
            "params": list(self.params),
            "container": self.container,
        }


# --- imagecodecs codestreams -------------------------------------------------------------

def _jpeg_enc(img: BenchImage, q: float) -> bytes:
    return imagecodecs.jpeg8_encode(img.rgb, level=int(q))


def _webp_enc(img: BenchImage, q: float) -> bytes:
    return imagecodecs.webp_encode(img.rgb, level=float(q), lossless=False, numthreads=_THREADS)


def _j2k_enc(img: BenchImage, q: float) -> bytes:
    return imagecodecs.jpeg2k_encode(img.rgb, level=float(q), codecformat="J2K",
                                     reversible=False, numthreads=_THREADS)


def _jxl_enc(img: BenchImage, q: float) -> bytes:
    return imagecodecs.jpegxl_encode(img.rgb, effort=7, distance=float(q), numthreads=_THREADS)


def _avif_enc(img: BenchImage, q: float) -> bytes:
    return imagecodecs.avif_encode(img.rgb, level=int(q), speed=6, numthreads=_THREADS)


def _j2k_dec(buf: bytes) -> np.ndarray:
    return imagecodecs.jpeg2k_decode(buf, numthreads=_THREADS)


def _jxl_dec(buf: bytes) -> np.ndarray:
    return imagecodecs.jpegxl_decode(buf, numthreads=_THREADS)


def _avif_dec(buf: bytes) -> np.ndarray:
    return imagecodecs.avif_decode(buf, numthreads=_THREADS)


# --- GDAL files ----------------------------------------------------------------------------

def _gdal_encode(img: BenchImage, driver: str, options: dict) -> bytes:
    profile = {
        "driver": driver,
        "width": img.width,
        "height": img.height,
        "count": 3,
        "dtype": "uint8",
        **options,
    }
    if img.crs is not None:
        profile["crs"] = img.crs
        profile["transform"] = img.transform
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile() as mf:
            with mf.open(**profile) as ds:
                ds.write(img.rgb.transpose(2, 0, 1))
            return bytes(mf.getbuffer())


def _gdal_decode(buf: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(buf) as mf, mf.open() as ds:
            data = ds.read()
    return np.ascontiguousarray(data.transpose(1, 2, 0))


_GTIFF = {"tiled": True, "blockxsize": 256, "blockysize": 256, "interleave": "pixel"}


def _gtiff_jpeg_enc(img: BenchImage, q: float) -> bytes:
    return _gdal_encode(img, "GTiff", {**_GTIFF, "compress": "JPEG", "photometric": "YCBCR",
                                       "jpeg_quality": int(q)})


def _gtiff_webp_enc(img: BenchImage, q: float) -> bytes:
    return _gdal_encode(img, "GTiff", {**_GTIFF, "compress": "WEBP", "webp_level": int(q)})


def _gdal_jp2_enc(img: BenchImage, q: float) -> bytes:
    return _gdal_encode(img, "JP2OpenJPEG", {"quality": float(q), "reversible": "NO"})


def _gdal_version() -> str:
    import rasterio

    return rasterio.__gdal_version__


def build_codecs() -> dict[str, ClassicalCodec]:
    gdal = f"GDAL {_gdal_version()} (rasterio wheel)"
    codecs = [
        ClassicalCodec(
            "jpeg", "JPEG", f"imagecodecs libjpeg-turbo {_lib_version('libjpeg_turbo')}",
            "YCbCr 4:2:0 (library default)", "quality",
            (1, 2, 3, 5, 8, 12, 17, 25, 35, 50, 70, 85), _jpeg_enc, imagecodecs.jpeg8_decode),
        ClassicalCodec(
            "webp", "WebP", f"imagecodecs libwebp {_lib_version('libwebp')}",
            "lossy, method 4 (default)", "quality",
            (0, 5, 10, 20, 30, 45, 60, 75, 90), _webp_enc, imagecodecs.webp_decode, integer=False),
        ClassicalCodec(
            "jpeg2000", "JPEG 2000", f"imagecodecs OpenJPEG {_lib_version('openjpeg')}",
            "9/7 irreversible, MCT, fixed-PSNR target", "target PSNR dB",
            (16, 18, 20, 22, 24, 26, 28, 30, 33, 36), _j2k_enc, _j2k_dec, integer=False),
        ClassicalCodec(
            "jpegxl", "JPEG XL", f"imagecodecs libjxl {_lib_version('libjxl')}",
            "effort 7", "distance",
            (25, 18, 14, 11, 8.5, 6.5, 5, 4, 3, 2.3, 1.7, 1.2), _jxl_enc, _jxl_dec, integer=False,
            geometric=True),
        ClassicalCodec(
            "avif", "AVIF", f"imagecodecs libavif {_lib_version('libavif')}",
            "speed 6, YUV 4:4:4 (library default)", "quality",
            (0, 4, 8, 13, 18, 24, 30, 37, 45, 53, 62), _avif_enc, _avif_dec),
        ClassicalCodec(
            "gtiff-jpeg", "GeoTIFF JPEG (file)", gdal,
            "COMPRESS=JPEG PHOTOMETRIC=YCBCR TILED=YES 256x256", "JPEG_QUALITY",
            (1, 2, 3, 5, 8, 12, 17, 25, 35, 50, 70, 85), _gtiff_jpeg_enc, _gdal_decode, "file"),
        ClassicalCodec(
            "gtiff-webp", "GeoTIFF WEBP (file)", gdal,
            "COMPRESS=WEBP TILED=YES 256x256", "WEBP_LEVEL",
            (1, 5, 10, 20, 30, 45, 60, 75, 90), _gtiff_webp_enc, _gdal_decode, "file"),
        ClassicalCodec(
            "gdal-jp2", "JP2OpenJPEG (file)", gdal,
            "REVERSIBLE=NO, rate-targeted", "QUALITY % of raw",
            (0.2, 0.3, 0.45, 0.65, 0.9, 1.3, 1.8, 2.6, 3.7, 5.2, 7.5),
            _gdal_jp2_enc, _gdal_decode, "file", integer=False),
    ]
    return {c.key: c for c in codecs}


#: Codecs run by default: codestreams (the BD-rate anchors) and the GDAL files.
CODESTREAM_KEYS = ("jpeg", "webp", "jpeg2000", "jpegxl", "avif")
GDAL_FILE_KEYS = ("gtiff-jpeg", "gtiff-webp", "gdal-jp2")


def evaluate(
    decoded: np.ndarray, image: BenchImage, num_bytes: int, with_msssim: bool = True
) -> dict:
    if decoded.shape != image.rgb.shape:
        raise ValueError(f"decoded shape {decoded.shape} != source {image.rgb.shape}")
    if decoded.dtype != np.uint8:
        raise ValueError(f"decoded dtype {decoded.dtype} is not uint8")
    return {
        "bytes": int(num_bytes),
        "bpp": bits_per_pixel(num_bytes, image.pixels),
        "psnr": psnr(image.rgb, decoded),
        "ms_ssim": ms_ssim(image.rgb, decoded) if with_msssim else None,
    }


def run_point(codec: ClassicalCodec, image: BenchImage, param: float) -> dict:
    t0 = time.perf_counter()
    buf = codec.encode(image, param)
    t1 = time.perf_counter()
    dec = codec.decode(buf)
    t2 = time.perf_counter()
    if dec.ndim == 2:
        dec = np.repeat(dec[:, :, None], 3, axis=2)
    point = {"param": param, **evaluate(dec, image, len(buf))}
    point["encode_s"] = t1 - t0
    point["decode_s"] = t2 - t1
    return point


def sweep(
    codec: ClassicalCodec,
    image: BenchImage,
    params: Sequence[float] | None = None,
    refine_ratio: float = 1.3,
    refine_range: tuple[float, float] = (0.04, 1.6),
    rounds: int = 3,
) -> list[dict]:
    """Run the parameter grid, then refine it where it is sparse.

    Where two neighbouring points (by bpp) inside ``refine_range`` are more than
    ``refine_ratio`` apart in bpp, a parameter half-way between them is added; this is
    repeated up to ``rounds`` times, so each image gets a dense curve where it matters.
    ``rounds=0`` runs the grid only.
    """
    points = {p: run_point(codec, image, p) for p in (codec.params if params is None else params)}
    lo, hi = refine_range
    for _ in range(rounds):
        ordered = sorted(points.values(), key=lambda q: q["bpp"])
        new = set()
        for a, b in zip(ordered[:-1], ordered[1:], strict=True):
            if b["bpp"] < lo or a["bpp"] > hi or b["bpp"] <= a["bpp"] * refine_ratio:
                continue
            m = codec.midpoint(a["param"], b["param"])
            if m is not None and m not in points:
                new.add(m)
        if not new:
            break
        for p in sorted(new):
            points[p] = run_point(codec, image, p)
    return sorted(points.values(), key=lambda q: q["bpp"])


def time_point(codec: ClassicalCodec, image: BenchImage, param: float, repeats: int = 3
               ) -> tuple[float, float]:
    """Best-of-``repeats`` encode and decode times (s) at one parameter."""
    enc, dec = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        buf = codec.encode(image, param)
        t1 = time.perf_counter()
        codec.decode(buf)
        t2 = time.perf_counter()
        enc.append(t1 - t0)
        dec.append(t2 - t1)
    return min(enc), min(dec)
