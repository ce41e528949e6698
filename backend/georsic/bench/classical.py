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
  padding). Each is offered only when the GDAL of the installed rasterio can write it: this
  is probed (:func:`unavailable_codecs` says why one is missing, e.g. the rasterio wheels'
  libtiff has no JPEG-XL codec, so ``gtiff-jxl`` is usually absent).

AVIF comes from imagecodecs, or from Pillow's AVIF plugin when imagecodecs lacks it; when
neither has it, it is reported as not available rather than failing.

Every codec is swept over its own quality parameter on a grid chosen to cover roughly
0.05-1.5 bpp on hard aerial scenes.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from georsic.bench.images import BenchImage
from georsic.bench.metrics import bits_per_pixel, ms_ssim, psnr

try:
    import imagecodecs
except ImportError:  # the GDAL files (rasterio) and Pillow's AVIF still run; the rest are listed
    imagecodecs = None  # as unavailable, so a machine without it can still time GeoRSIC

_THREADS = os.cpu_count() or 1


def _lib_version(name: str) -> str:
    if imagecodecs is None:
        return "?"
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


def _pillow_avif_enc(img: BenchImage, q: float) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img.rgb).save(buf, format="AVIF", quality=int(q), speed=6,
                                  subsampling="4:4:4", max_threads=_THREADS)
    return buf.getvalue()


def _pillow_dec(buf: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(buf)) as im:
        return np.asarray(im.convert("RGB"))


def _jpeg_dec(buf: bytes) -> np.ndarray:
    return imagecodecs.jpeg8_decode(buf)


def _webp_dec(buf: bytes) -> np.ndarray:
    return imagecodecs.webp_decode(buf)


def _j2k_dec(buf: bytes) -> np.ndarray:
    return imagecodecs.jpeg2k_decode(buf, numthreads=_THREADS)


def _jxl_dec(buf: bytes) -> np.ndarray:
    return imagecodecs.jpegxl_decode(buf, numthreads=_THREADS)


def _avif_dec(buf: bytes) -> np.ndarray:
    return imagecodecs.avif_decode(buf, numthreads=_THREADS)


# --- GDAL files ----------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet_gdal():
    """Mute GDAL's messages, which rasterio logs (libjpeg's "quantization tables are too
    coarse" at JPEG qualities 1-2, the error of a failing availability probe); errors still
    raise."""
    logger = logging.getLogger("rasterio")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            yield
    finally:
        logger.setLevel(level)


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
    with _quiet_gdal(), MemoryFile() as mf:
        with mf.open(**profile) as ds:
            ds.write(img.rgb.transpose(2, 0, 1))
        if "compress" in options:
            # GDAL writes an uncompressed file, with a mere warning, for a COMPRESS value it
            # does not know
            with mf.open() as ds:
                got = ds.compression.name if ds.compression else "none"
            if got.upper() != options["compress"].upper():
                raise RuntimeError(f"COMPRESS={options['compress']} not supported: GDAL "
                                   f"wrote {got}")
        return bytes(mf.getbuffer())


def _gdal_decode(buf: bytes) -> np.ndarray:
    with _quiet_gdal(), MemoryFile(buf) as mf, mf.open() as ds:
        data = ds.read()
    return np.ascontiguousarray(data.transpose(1, 2, 0))


_GTIFF = {"tiled": True, "blockxsize": 256, "blockysize": 256, "interleave": "pixel"}


def _gtiff_jpeg_enc(img: BenchImage, q: float) -> bytes:
    return _gdal_encode(img, "GTiff", {**_GTIFF, "compress": "JPEG", "photometric": "YCBCR",
                                       "jpeg_quality": int(q)})


def _gtiff_webp_enc(img: BenchImage, q: float) -> bytes:
    return _gdal_encode(img, "GTiff", {**_GTIFF, "compress": "WEBP", "webp_level": int(q)})


def _gtiff_jxl_enc(img: BenchImage, q: float) -> bytes:
    return _gdal_encode(img, "GTiff", {**_GTIFF, "compress": "JXL", "jxl_lossless": "NO",
                                       "jxl_effort": 7, "jxl_distance": float(q)})


def _gdal_jp2_enc(img: BenchImage, q: float) -> bytes:
    return _gdal_encode(img, "JP2OpenJPEG", {"quality": float(q), "reversible": "NO"})


def _gdal_version() -> str:
    import rasterio

    return rasterio.__gdal_version__


_JPEG_Q = (1, 2, 3, 5, 8, 12, 17, 25, 35, 50, 70, 85)
_WEBP_Q = (0, 5, 10, 20, 30, 45, 60, 75, 90)
_JXL_D = (25, 18, 14, 11, 8.5, 6.5, 5, 4, 3, 2.3, 1.7, 1.2)
_AVIF_Q = (0, 4, 8, 13, 18, 24, 30, 37, 45, 53, 62)


def _imagecodecs_missing(name: str) -> str | None:
    """Why imagecodecs cannot run codec ``name`` (None when it can)."""
    if imagecodecs is None:
        return "imagecodecs is not installed (the 'bench' extra)"
    codec = getattr(imagecodecs, name, None)
    if codec is None or not codec.available:
        return f"imagecodecs {imagecodecs.__version__} was built without {name}"
    return None


def _pillow_avif_missing() -> str | None:
    try:
        import PIL
        from PIL import features
    except ImportError:
        return "Pillow is not installed"
    if not features.check("avif"):
        return f"Pillow {PIL.__version__} has no AVIF support (Pillow >= 11.3 wheels have it)"
    return None


def avif_codec(backends: Sequence[str] = ("imagecodecs", "pillow")
               ) -> tuple[ClassicalCodec | None, str]:
    """The AVIF codec from the first of ``backends`` that has it, or None and why not."""
    why = []
    for backend in backends:
        if backend == "imagecodecs":
            missing = _imagecodecs_missing("AVIF")
            if missing is None:
                return ClassicalCodec(
                    "avif", "AVIF", f"imagecodecs libavif {_lib_version('libavif')}",
                    "speed 6, YUV 4:4:4 (library default)", "quality", _AVIF_Q,
                    _avif_enc, _avif_dec), ""
        elif backend == "pillow":
            missing = _pillow_avif_missing()
            if missing is None:
                import PIL

                return ClassicalCodec(
                    "avif", "AVIF", f"Pillow {PIL.__version__} AVIF plugin (libavif)",
                    "speed 6, YUV 4:4:4", "quality", _AVIF_Q, _pillow_avif_enc,
                    _pillow_dec), ""
        else:
            raise ValueError(f"unknown AVIF backend {backend!r}")
        why.append(missing)
    return None, "; ".join(why)


def _probe_gdal(codec: ClassicalCodec) -> str | None:
    """Why GDAL cannot write and read back ``codec`` (None when it can)."""
    y, x = np.mgrid[0:32, 0:32]
    rgb = np.stack([x * 8, y * 8, (x + y) * 4], axis=-1).astype(np.uint8)
    tiny = BenchImage("probe", Path("probe"), rgb, "uint8", 3, "")
    try:
        decoded = codec.decode(codec.encode(tiny, codec.params[len(codec.params) // 2]))
    except Exception as exc:  # noqa: BLE001 - the reason is what is reported
        return f"GDAL {_gdal_version()} of rasterio cannot: {exc}"
    if decoded.shape != rgb.shape:
        return f"GDAL {_gdal_version()} read back shape {decoded.shape}, not {rgb.shape}"
    return None


@functools.lru_cache(maxsize=1)
def _codecs_and_missing() -> tuple[dict[str, ClassicalCodec], dict[str, tuple[str, str]]]:
    gdal = f"GDAL {_gdal_version()} (rasterio)"
    avif, avif_why = avif_codec()
    candidates: list[tuple[ClassicalCodec | None, str, str, str | None]] = [
        # (codec, key, label, why it is missing: None = ask imagecodecs / probe GDAL)
        (ClassicalCodec(
            "jpeg", "JPEG", f"imagecodecs libjpeg-turbo {_lib_version('libjpeg_turbo')}",
            "YCbCr 4:2:0 (library default)", "quality", _JPEG_Q, _jpeg_enc, _jpeg_dec),
         "jpeg", "JPEG", _imagecodecs_missing("JPEG8")),
        (ClassicalCodec(
            "webp", "WebP", f"imagecodecs libwebp {_lib_version('libwebp')}",
            "lossy, method 4 (default)", "quality", _WEBP_Q, _webp_enc, _webp_dec,
            integer=False), "webp", "WebP", _imagecodecs_missing("WEBP")),
        (ClassicalCodec(
            "jpeg2000", "JPEG 2000", f"imagecodecs OpenJPEG {_lib_version('openjpeg')}",
            "9/7 irreversible, MCT, fixed-PSNR target", "target PSNR dB",
            (16, 18, 20, 22, 24, 26, 28, 30, 33, 36), _j2k_enc, _j2k_dec, integer=False),
         "jpeg2000", "JPEG 2000", _imagecodecs_missing("JPEG2K")),
        (ClassicalCodec(
            "jpegxl", "JPEG XL", f"imagecodecs libjxl {_lib_version('libjxl')}",
            "effort 7", "distance", _JXL_D, _jxl_enc, _jxl_dec, integer=False, geometric=True),
         "jpegxl", "JPEG XL", _imagecodecs_missing("JPEGXL")),
        (avif, "avif", "AVIF", avif_why or None),
        (ClassicalCodec(
            "gtiff-jpeg", "GeoTIFF JPEG (file)", gdal,
            "COMPRESS=JPEG PHOTOMETRIC=YCBCR TILED=YES 256x256", "JPEG_QUALITY", _JPEG_Q,
            _gtiff_jpeg_enc, _gdal_decode, "file"), "gtiff-jpeg", "GeoTIFF JPEG (file)", None),
        (ClassicalCodec(
            "gtiff-webp", "GeoTIFF WEBP (file)", gdal,
            "COMPRESS=WEBP TILED=YES 256x256", "WEBP_LEVEL", (1, 5, 10, 20, 30, 45, 60, 75, 90),
            _gtiff_webp_enc, _gdal_decode, "file"), "gtiff-webp", "GeoTIFF WEBP (file)", None),
        (ClassicalCodec(
            "gtiff-jxl", "GeoTIFF JXL (file)", gdal,
            "COMPRESS=JXL JXL_EFFORT=7 TILED=YES 256x256", "JXL_DISTANCE", _JXL_D,
            _gtiff_jxl_enc, _gdal_decode, "file", integer=False, geometric=True),
         "gtiff-jxl", "GeoTIFF JXL (file)", None),
        (ClassicalCodec(
            "gdal-jp2", "JP2OpenJPEG (file)", gdal,
            "REVERSIBLE=NO, rate-targeted", "QUALITY % of raw",
            (0.2, 0.3, 0.45, 0.65, 0.9, 1.3, 1.8, 2.6, 3.7, 5.2, 7.5),
            _gdal_jp2_enc, _gdal_decode, "file", integer=False), "gdal-jp2",
         "JP2OpenJPEG (file)", None),
    ]
    codecs: dict[str, ClassicalCodec] = {}
    missing: dict[str, tuple[str, str]] = {}
    for codec, key, label, why in candidates:
        if codec is not None and why is None and codec.container == "file":
            why = _probe_gdal(codec)
        if codec is None or why is not None:
            missing[key] = (label, why or "not available")
        else:
            codecs[key] = codec
    return codecs, missing


def build_codecs() -> dict[str, ClassicalCodec]:
    """The classical codecs that can run here, by key (see :func:`unavailable_codecs`)."""
    return dict(_codecs_and_missing()[0])


def unavailable_codecs() -> dict[str, tuple[str, str]]:
    """The codecs that cannot run here: key -> (label, why not)."""
    return dict(_codecs_and_missing()[1])


#: Every codec key: codestreams (the BD-rate anchors), then the GDAL files. Only those
#: :func:`build_codecs` returns are run.
CODESTREAM_KEYS = ("jpeg", "webp", "jpeg2000", "jpegxl", "avif")
GDAL_FILE_KEYS = ("gtiff-jpeg", "gtiff-webp", "gtiff-jxl", "gdal-jp2")


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
