"""Training data: random crops of real imagery with flips, 90-degree rotations and rescaling.

Any file that GDAL or Pillow reads is used: GeoTIFFs of any dtype and band count are brought
to 8-bit RGB the same way the codec sees them at compression time (see :mod:`georsic.bandmap`),
photographs are used as they are.  Soft photographs (wallpaper JPEGs) can be downscaled with
``scale``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".webp", ".bmp"}


def find_images(roots: Iterable[str | Path], exclude: Sequence[str] = ()) -> list[Path]:
    """All image files under ``roots`` (files or folders), minus names containing ``exclude``."""
    found: list[Path] = []
    for root in map(Path, roots):
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            if path.suffix.lower() in IMAGE_SUFFIXES and not any(e in path.name for e in exclude):
                found.append(path)
    return found


def load_rgb8(path: Path) -> np.ndarray:
    """Read an image as (3, H, W) uint8, mapping other dtypes/band counts like the codec does.

    Without rasterio (a training machine with torch and compressai alone), Pillow reads the
    PNG and JPEG files of photographs and training packs.
    """
    from georsic.bandmap import to_display_rgb8

    try:
        import rasterio
    except ImportError:
        from PIL import Image

        with Image.open(path) as image:
            return np.ascontiguousarray(np.asarray(image.convert("RGB")).transpose(2, 0, 1))
    with rasterio.open(path) as src:
        data = src.read()
        nodata = src.nodata
    return to_display_rgb8(data, nodata)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 RGB to (H, W) uint8 luma (ITU-R BT.601 weights)."""
    luma = np.tensordot(np.array([0.299, 0.587, 0.114]), rgb.astype(np.float64), axes=1)
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)


class CropPool:
    """A pool of random crops held in memory, refreshed from the image list.

    Holding crops rather than images keeps memory flat with large photographs.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        patch: int = 128,
        crops_per_image: int = 64,
        max_downscale: float = 2.0,
        seed: int = 0,
        gray_fraction: float = 0.0,
    ) -> None:
        if not paths:
            raise ValueError("no training images found")
        self.paths = list(paths)
        self.patch = patch
        self.crops_per_image = crops_per_image
        self.max_downscale = max_downscale
        self.gray_fraction = gray_fraction
        self.rng = np.random.default_rng(seed)
        self.crops = self._build()

    def _crops_from(self, image: np.ndarray) -> list[np.ndarray]:
        tensor = torch.from_numpy(image).float()[None] / 255.0
        out = []
        h, w = tensor.shape[-2:]
        # soft, very large photographs (wallpapers) are downscaled further
        base = 2.0 if min(h, w) >= 2000 else 1.0
        count = int(np.clip(h * w / (self.patch**2 * 4), 4, self.crops_per_image))
        for _ in range(count):
            scale = base * float(self.rng.uniform(1.0, self.max_downscale))
            size = int(self.patch * scale)
            h, w = tensor.shape[-2:]
            if h < size or w < size:
                size = min(h, w)
                if size < self.patch // 2:
                    break
            y = int(self.rng.integers(0, h - size + 1))
            x = int(self.rng.integers(0, w - size + 1))
            crop = tensor[..., y : y + size, x : x + size]
            if size != self.patch:
                crop = F.interpolate(crop, size=(self.patch, self.patch), mode="area"
                                     if size > self.patch else "bilinear", align_corners=None)
            out.append((crop[0].clamp(0, 1) * 255).round().byte().numpy())
        return out

    def _build(self) -> np.ndarray:
        crops: list[np.ndarray] = []
        self.sources: list[int] = []  # each crop's image, as an index into ``paths``
        for number, path in enumerate(self.paths):
            try:
                image = load_rgb8(path)
            except Exception as exc:  # unreadable file in a user folder: skip, say so
                log.warning("skipping %s: %s", path, exc)
                continue
            new = self._crops_from(image)
            crops.extend(new)
            self.sources.extend([number] * len(new))
        if not crops:
            raise ValueError("no usable training crops")
        return np.stack(crops)

    def batch(self, size: int) -> torch.Tensor:
        """A random batch (B, 3, patch, patch) in [0, 1] with flips and 90-degree rotations.

        A ``gray_fraction`` of the crops becomes one luminance band repeated three times, which is
        how the codec sees a panchromatic band or the leftover band of a 4- or 5-band raster.
        """
        idx = self.rng.integers(0, len(self.crops), size)
        out = []
        for i in idx:
            crop = self.crops[i]
            crop = np.rot90(crop, int(self.rng.integers(0, 4)), axes=(1, 2))
            if self.rng.random() < 0.5:
                crop = crop[:, :, ::-1]
            if self.rng.random() < self.gray_fraction:
                crop = np.repeat(luminance(crop)[None], 3, axis=0)
            out.append(np.ascontiguousarray(crop))
        return torch.from_numpy(np.stack(out)).float() / 255.0
