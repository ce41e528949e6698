#!/usr/bin/env python
"""Tile size and overlap: bits, PSNR and seam visibility of each tiling on one image.

Every overlap pixel is coded by two tiles, so a wider overlap costs bits; too narrow a one lets
tile borders show.  For each (tile size, overlap) this compresses and decodes the image at a few
qualities and prints bpp and PSNR, the BD-rate against the first tiling, and the seam ratio
(error on tile-border rows and columns over interior error, ``georsic bench seams``) at the
middle quality.

    python benchmarks/tiling.py [--image PATH] [--crop 1536] [--tilings 512/32 512/16 ...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import georsic
from georsic.bench.bdrate import bd_rate
from georsic.bench.images import load_image, read_rgb8, write_geotiff
from georsic.bench.metrics import psnr
from georsic.bench.seams import seam_ratio

DEFAULT_IMAGE = Path(__file__).parent / "data" / "deepforest_australia_uav.tif"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--crop", type=int, default=0, help="use the top-left CROP x CROP pixels")
    parser.add_argument("--qualities", nargs="+", type=float, default=[1, 3, 5])
    parser.add_argument("--tilings", nargs="+", default=["512/32", "512/16", "1024/32", "1024/16"])
    args = parser.parse_args()
    image = load_image(args.image)
    if args.crop:
        image.rgb = image.rgb[:args.crop, :args.crop].copy()
    print(f"{args.image.name}, {image.width}x{image.height}, qualities {args.qualities}\n")
    print("| tile / overlap | tiles | " + " | ".join(f"q{q:g} bpp / dB" for q in args.qualities)
          + " | BD-rate vs first | seam ratio |")
    print("|---|---|" + "---|" * (len(args.qualities) + 2))
    with tempfile.TemporaryDirectory() as tmp:
        source = write_geotiff(image, Path(tmp) / "source.tif")
        first = None
        for tiling in args.tilings:
            size, overlap = map(int, tiling.split("/"))
            points = []
            for quality in args.qualities:
                summary = georsic.compress(source, Path(tmp) / "a.grsc", quality=quality,
                                           tile_size=size, overlap=overlap, overwrite=True)
                georsic.decompress(Path(tmp) / "a.grsc", Path(tmp) / "b.tif", overwrite=True)
                points.append((summary.bpp, psnr(image.rgb, read_rgb8(Path(tmp) / "b.tif"))))
            first = first or points
            bd = bd_rate([r for r, _ in first], [d for _, d in first],
                         [r for r, _ in points], [d for _, d in points])
            middle = args.qualities[len(points) // 2]
            try:
                seams = f"{seam_ratio(source, middle, size, overlap)['ratio']:.3f}"
            except ValueError:  # one tile: no seams
                seams = "-"
            cells = " | ".join(f"{b:.4f} / {d:.2f}" for b, d in points)
            print(f"| {size} / {overlap} | {summary.tiles} | {cells} | {bd:+.1f} % | {seams} |",
                  flush=True)


if __name__ == "__main__":
    main()
