"""Benchmark inputs: any raster to the 8-bit RGB array that every codec is given.

Protocol (same as ``ANCHORS.md``): 8-bit RGB is used as is; a non-8-bit raster is mapped to
8 bit by its 0.5-99.5 percentiles (a single band is repeated to three channels). Every codec,
GeoRSIC included, is then given exactly these pixels, and all metrics are computed on them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

#: File name endings accepted as benchmark images when a folder is given.
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2")

#: The held-out 8-bit aerial RGB images in ``benchmarks/data`` (the issue's target domain), which
#: the benchmark scripts use by default.
AERIAL_RGB = ("deepforest_OSBS_029.tif", "deepforest_SOAP_031.png",
              "deepforest_australia_uav.tif")

#: Percentiles used to map non-8-bit rasters to 8 bit.
PERCENTILES = (0.5, 99.5)


@dataclass
class BenchImage:
    """One benchmark image: the 8-bit RGB pixels (H, W, 3) and where they came from."""

    name: str
    path: Path
    rgb: np.ndarray
    source_dtype: str
    source_bands: int
    mapping: str
    crs: object | None = None
    transform: object | None = None
    extra: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def describe(self) -> dict:
        return {
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "source_dtype": self.source_dtype,
            "source_bands": self.source_bands,
            "mapping": self.mapping,
            "georeferenced": self.crs is not None,
        }


def to_rgb8(data: np.ndarray) -> tuple[np.ndarray, str]:
    """(bands, H, W) raster to (H, W, 3) uint8 and a note of what was done."""
    if data.ndim != 3:
        raise ValueError(f"expected (bands, height, width), got shape {data.shape}")
    bands = data.shape[0]
    notes = []
    if data.dtype == np.uint8:
        out = data
        notes.append("8-bit as is")
    else:
        lo, hi = np.percentile(data, PERCENTILES)
        if hi <= lo:
            hi = lo + 1
        scaled = (data.astype(np.float64) - lo) / (hi - lo) * 255.0
        out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        notes.append(
            f"{data.dtype} mapped to 8 bit by the {PERCENTILES[0]}-{PERCENTILES[1]} "
            f"percentiles ({lo:g}..{hi:g})"
        )
    if bands == 1:
        out = np.repeat(out, 3, axis=0)
        notes.append("single band repeated to 3 channels")
    elif bands == 2:
        out = np.concatenate([out, out[:1]], axis=0)
        notes.append("2 bands padded to 3 with band 1")
    elif bands > 3:
        out = out[:3]
        notes.append(f"first 3 of {bands} bands")
    return np.ascontiguousarray(out.transpose(1, 2, 0)), "; ".join(notes)


def load_image(path: str | Path) -> BenchImage:
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            data = ds.read()
            crs = ds.crs
            transform = ds.transform if crs is not None else None
    rgb, mapping = to_rgb8(data)
    return BenchImage(
        name=path.name,
        path=path,
        rgb=rgb,
        source_dtype=str(data.dtype),
        source_bands=int(data.shape[0]),
        mapping=mapping,
        crs=crs,
        transform=transform,
    )


def expand_image_args(items: list[str | Path]) -> list[Path]:
    """Files as given; folders expanded to the image files they hold (sorted)."""
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths.extend(
                sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            )
        elif p.is_file():
            paths.append(p)
        else:
            raise FileNotFoundError(f"benchmark image not found: {p}")
    return paths


def write_geotiff(image: BenchImage, path: str | Path) -> Path:
    """Write the benchmark pixels as an uncompressed 3-band uint8 GeoTIFF (no nodata).

    This is what GeoRSIC is given, so that it codes exactly the pixels the classical codecs
    code. The CRS and geotransform of the source are kept where it has them.
    """
    path = Path(path)
    profile = {
        "driver": "GTiff",
        "width": image.width,
        "height": image.height,
        "count": 3,
        "dtype": "uint8",
        "photometric": "RGB",
        "interleave": "pixel",
    }
    if image.crs is not None:
        profile["crs"] = image.crs
        profile["transform"] = image.transform
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(image.rgb.transpose(2, 0, 1))
    return path


def read_rgb8(path: str | Path) -> np.ndarray:
    """Read a decoded raster back as (H, W, bands) without any remapping."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            data = ds.read()
    return np.ascontiguousarray(data.transpose(1, 2, 0))
