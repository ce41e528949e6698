#!/usr/bin/env python
"""Where the codebook prior helps and where it does not: PSNR and colour spread with and
without ``--prior`` on a natural aerial image and on vivid, saturated content.

The aerial image is the NEON test raster (tests/data/osbs_aerial_rgb.tif, 400x400); the vivid
one is a synthetic classified map rendered to RGB (blocks of 8 saturated colours with sharp
edges, 400x400, seed 0), as a land-cover map exported as a picture is.  Each is compressed at
each quality and decoded without and with the default prior at the default fidelity; the
table gives PSNR (8-bit) against the source and the standard deviation of the red channel
(source / without / with): the prior's codebook was learned on aerial textures, so it pulls
saturated colours towards them.

    python benchmarks/prior_content.py [--qualities 0 2 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

import georsic
from georsic.defaults import DEFAULT_FIDELITY

AERIAL = Path(__file__).resolve().parents[1] / "tests" / "data" / "osbs_aerial_rgb.tif"
VIVID_COLOURS = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
                          (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230)],
                         dtype=np.uint8)


def vivid_map(path: Path, size: int = 400, seed: int = 0) -> Path:
    """A classified map rendered to RGB: 20-px blocks of 8 saturated colours."""
    rng = np.random.default_rng(seed)
    classes = np.kron(rng.integers(0, len(VIVID_COLOURS), (size // 20, size // 20)),
                      np.ones((20, 20), dtype=np.int64))
    rgb = VIVID_COLOURS[classes].transpose(2, 0, 1)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": from_origin(500000, 4000000, 1, 1)}
    with rasterio.open(path, "w", **profile) as out:
        out.write(rgb)
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def row(name: str, source: Path, quality: float, device: str, folder: Path) -> str:
    with rasterio.open(source) as src:
        original = src.read()
    archive = folder / f"{name}.grsc"
    summary = georsic.compress(source, archive, quality=quality, device=device, overwrite=True)
    decoded = {}
    for prior in (False, True):
        out = folder / f"{name}_{prior}.tif"
        georsic.decompress(archive, out, prior=prior, device=device, overwrite=True)
        with rasterio.open(out) as tif:
            decoded[prior] = tif.read()
    plain, restored = psnr(original, decoded[False]), psnr(original, decoded[True])
    spread = " / ".join(f"{float(np.std(x[0])):.1f}"
                        for x in (original, decoded[False], decoded[True]))
    return (f"| {name} | {quality:g} | {summary.bpp:.3f} | {plain:.2f} -> {restored:.2f} "
            f"({restored - plain:+.2f}) | {spread} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qualities", nargs="+", type=float, default=[0, 2, 5])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"prior: the installed default, w = {DEFAULT_FIDELITY}\n")
    print("| image | quality | bpp | PSNR dB without -> with prior | red std: source / "
          "without / with |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        vivid = vivid_map(folder / "vivid.tif")
        for quality in args.qualities:
            for name, source in (("aerial", AERIAL), ("vivid map", vivid)):
                print(row(name.replace(" ", "_"), source, quality, args.device, folder),
                      flush=True)


if __name__ == "__main__":
    main()
