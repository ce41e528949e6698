"""Training pairs for the Code-RSIC prior: original crops and the default codec's decodings.

Each region of each training image is coded and decoded once, through the real
:class:`georsic.codec.TileCodec` of the default (frozen) codec, at the lowest quality levels
and between them, and cached as one ``.npz`` per image (uint8, as a decoded GeoTIFF holds it),
so that no training step runs ELIC.  Images are read and mapped to 8-bit RGB as for the codec
(:func:`georsic.train.data.load_rgb8`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from georsic.train.data import find_images, load_rgb8

log = logging.getLogger(__name__)

#: Quality levels every region is decoded at: the three lowest; ``between`` more levels drawn
#: at random between the lowest and the highest of them are added per region.
PAIR_QUALITIES = (0.0, 1.0, 2.0)

#: Names never trained on: the held-out benchmark images (georsic.bench.images) and the
#: images the codec's training also left out.
BENCHMARK_EXCLUDE = ("OSBS_029", "SOAP_031", "australia_uav", "solaris_pan1", "moon_4k",
                     "globe_colors")


def _regions(shape: tuple[int, int], size: int, limit: int,
             rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """Up to ``limit`` random (y, x, h, w) regions of at most ``size`` a side."""
    h, w = shape
    rh, rw = min(h, size), min(w, size)
    count = int(np.clip(round(h * w / (size * size)), 1, limit))
    return [(int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1)), rh, rw)
            for _ in range(count)]


def build_pair_cache(data: Sequence[str | Path], cache: str | Path,
                     exclude: Sequence[str] = BENCHMARK_EXCLUDE,
                     qualities: Sequence[float] = PAIR_QUALITIES, between: int = 1,
                     region: int = 256, regions_per_image: int = 4, model: str | None = None,
                     seed: int = 0) -> Path:
    """Code and decode regions of every training image once; resumable (done images stay).

    Returns the cache folder, which holds ``<n>.npz`` files (``original`` (R, 3, h, w) uint8,
    ``decoded`` (R, Q, 3, h, w) uint8, ``qualities`` (R, Q)) and ``index.json``.
    """
    from georsic.codec import get_codec
    from georsic.weights import find_model

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    entry = find_model(model, kind="codec")
    codec = get_codec(entry, "cpu")
    paths = find_images(data, exclude)
    if not paths:
        raise ValueError("no training images found for the prior's pair cache")
    rng = np.random.default_rng(seed)
    old = cache / "index.json"
    done = json.loads(old.read_text())["files"] if old.exists() else []
    index = {"codec": entry.id, "codec_sha256": entry.sha256, "qualities": list(qualities),
             "between": between, "region": region, "exclude": list(exclude), "files": done}
    for number, path in enumerate(paths):  # noqa: B007 - number is logged
        target = cache / f"{path.stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}.npz"
        regions = None
        try:
            image = load_rgb8(path)
        except Exception as exc:  # an unreadable file in a user folder: skip it, say so
            log.warning("skipping %s: %s", path, exc)
            continue
        regions = _regions(image.shape[1:], region, regions_per_image, rng)
        levels = [sorted([*qualities, *rng.uniform(min(qualities), max(qualities), between)])
                  for _ in regions]
        if not target.exists():
            originals, decoded = [], []
            for (y, x, h, w), region_levels in zip(regions, levels, strict=True):
                crop = image[:, y:y + h, x:x + w]
                tile = crop.astype(np.float32) / 255
                decs = []
                for q in region_levels:
                    out = codec.decode(codec.encode(tile, q), h, w, q)
                    decs.append(np.clip(np.rint(out * 255), 0, 255).astype(np.uint8))
                originals.append(crop)
                decoded.append(np.stack(decs))
            _save_npz(target, original=np.stack(originals), decoded=np.stack(decoded),
                      qualities=np.asarray(levels, np.float32))
            log.info("pair cache %d/%d: %s, %d regions", number + 1, len(paths), path.name,
                     len(regions))
        if not any(f["file"] == target.name for f in index["files"]):
            index["files"].append({"file": target.name, "source": str(path),
                                   "regions": len(regions)})
    (cache / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return cache


def _save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


class PairPool:
    """Aligned random crops of (original, decoded) from a pair cache, with flips/rotations."""

    def __init__(self, cache: str | Path, patch: int = 128, seed: int = 0) -> None:
        cache = Path(cache)
        files = sorted(p for p in cache.glob("*.npz") if ".tmp" not in p.name)
        if not files:
            raise ValueError(f"the pair cache {cache} is empty: build it first "
                             "(georsic train prior --stage 2 builds it)")
        self.patch = patch
        self.rng = np.random.default_rng(seed)
        self.originals: list[np.ndarray] = []
        self.decoded: list[np.ndarray] = []
        self.qualities: list[np.ndarray] = []
        for path in files:
            with np.load(path) as npz:
                for orig, dec, qs in zip(npz["original"], npz["decoded"], npz["qualities"],
                                         strict=True):
                    if min(orig.shape[1:]) >= patch:
                        self.originals.append(orig)
                        self.decoded.append(dec)
                        self.qualities.append(qs)
        if not self.originals:
            raise ValueError(f"no cached region of {cache} is at least {patch} pixels a side")

    def __len__(self) -> int:
        return len(self.originals)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(original, decoded, quality) batches, images (B, 3, patch, patch) in [0, 1]."""
        p = self.patch
        origs, decs, quals = [], [], []
        for i in self.rng.integers(0, len(self.originals), size):
            orig, dec = self.originals[i], self.decoded[i]
            q = int(self.rng.integers(0, dec.shape[0]))
            y = int(self.rng.integers(0, orig.shape[1] - p + 1))
            x = int(self.rng.integers(0, orig.shape[2] - p + 1))
            pair = np.stack([orig[:, y:y + p, x:x + p], dec[q, :, y:y + p, x:x + p]])
            pair = np.rot90(pair, int(self.rng.integers(0, 4)), axes=(2, 3))
            if self.rng.random() < 0.5:
                pair = pair[..., ::-1]
            pair = np.ascontiguousarray(pair)
            origs.append(pair[0])
            decs.append(pair[1])
            quals.append(float(self.qualities[i][q]))
        to = lambda a: torch.from_numpy(np.stack(a)).float() / 255  # noqa: E731
        return to(origs), to(decs), torch.tensor(quals)
