"""A training pack: random crops of the training data, lossless files within a size budget.

A GPU machine reached through a small upload (this project's lends 64 MiB a call) cannot take
the photographs and rasters themselves (about 400 MB); a pack of lossless crops drawn evenly
from them can, and ``georsic train codec PACK ...`` trains on it like on any folder of images.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from georsic.train.data import CropPool, find_images

PACK_MANIFEST = "PACK.tsv"


@dataclass(frozen=True)
class PackSummary:
    crops: int
    bytes: int
    sources: int
    folder: Path


#: Lossless formats a pack can hold, with GDAL's creation options.  WebP's lossless mode packs
#: a third more pixels into the same bytes: 40 MiB of this project's data (README recipe) hold
#: 213 crops of 384 pixels from 134 images as WebP, 160 from 102 as PNG.
FORMATS = {"png": ("PNG", {}), "webp": ("WEBP", {"lossless": "YES"})}


def _encoded(crop: np.ndarray, fmt: str = "webp") -> bytes:
    """(3, H, W) uint8 in a lossless format (:data:`FORMATS`), via GDAL."""
    from rasterio.io import MemoryFile

    driver, options = FORMATS[fmt]
    with MemoryFile() as memory:
        with memory.open(driver=driver, width=crop.shape[2], height=crop.shape[1], count=3,
                         dtype="uint8", **options) as dst:
            dst.write(crop)
        return memory.read()


def _round_robin(sources: list[int], rng: np.random.Generator) -> list[int]:
    """Crop indices: a random crop of each source in random order, then a second of each, ..."""
    by_source: dict[int, list[int]] = {}
    for index, source in enumerate(sources):
        by_source.setdefault(source, []).append(index)
    queues = [list(rng.permutation(indices)) for indices in by_source.values()]
    order: list[int] = []
    while any(queues):
        for position in rng.permutation(len(queues)):
            if queues[position]:
                order.append(int(queues[position].pop()))
    return order


def write_pack(data: list[str | Path], out: str | Path, exclude: tuple[str, ...] = (),
               patch: int = 384, max_bytes: int = 40 * 2**20, seed: int = 0,
               fmt: str = "webp") -> PackSummary:
    """Write crops of ``patch`` pixels from ``data`` into ``out`` until ``max_bytes``.

    Crops are taken round-robin over the sources (one random crop of each, in a random order,
    then a second of each, ...), so a budget that holds at least one crop per source spans them
    all; an image listed k times counts as k sources.
    ``out`` must be empty or new; ``PACK.tsv`` there lists each crop's source.  Crops are
    stored losslessly as ``fmt`` (``webp`` or ``png``); a pack with another ``seed`` holds other
    crops, for a second call to a machine that keeps the checkpoint.
    """
    if fmt not in FORMATS:
        raise ValueError(f"pack format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; a pack needs a new or empty folder")
    paths = find_images(data, exclude)
    pool = CropPool(paths, patch=patch, crops_per_image=16, max_downscale=1.0, seed=seed)
    order = _round_robin(pool.sources, np.random.default_rng(seed))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        written, rows, names = 0, [], set()
        for number, index in enumerate(order):
            encoded = _encoded(pool.crops[index], fmt)
            if written + len(encoded) > max_bytes:
                break
            name = f"crop{number:05d}.{fmt}"
            (partial / name).write_bytes(encoded)
            written += len(encoded)
            source = pool.paths[pool.sources[index]].name
            rows.append(f"{name}\t{source}")
            names.add(source)
        (partial / PACK_MANIFEST).write_text("file\tsource\n"
                                             + "".join(row + "\n" for row in rows))
        if out.exists():
            out.rmdir()
        partial.rename(out)  # the pack appears whole or not at all
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return PackSummary(crops=len(rows), bytes=written, sources=len(names), folder=out)
