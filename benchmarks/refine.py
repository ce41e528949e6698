#!/usr/bin/env python
"""Encoder-side latent refinement: bits saved against encoding time, per number of steps.

Codes each held-out image as one tile at a few qualities with ``refine`` = 0 and each given
number of steps (``georsic compress --refine``), decodes it, and prints bpp (rANS stream over
the real pixels), PSNR (8-bit), the BD-rate against no refinement and the encoding time.

    python benchmarks/refine.py [--steps 10 20] [--qualities 1 3 5] [--threads 2] [images ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from georsic.bench.images import AERIAL_RGB, load_image
from georsic.bench.single_tile import (
    bd_rate_of,
    code_single_tile,
    point_cells,
    quality_columns,
)
from georsic.codec import TileCodec
from georsic.weights import find_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--steps", nargs="+", type=int, default=[10, 20])
    parser.add_argument("--qualities", nargs="+", type=float, default=[1, 3, 5])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = args.images or [Path(__file__).parent / "data" / n for n in AERIAL_RGB]
    codec = TileCodec(find_model())
    print(f"model {codec.entry.id} ({codec.entry.sha256[:12]}), qualities {args.qualities}, "
          f"{args.threads} threads\n")
    print("| image | refine steps | " + quality_columns(args.qualities)
          + " | BD-rate vs 0 steps | encode s (MP/s) |")
    print("|---|---|" + "---|" * (len(args.qualities) + 2))
    for path in images:
        bench = load_image(path)
        megapixels = bench.pixels / 1e6
        base = None
        for steps in [0, *args.steps]:
            points = [code_single_tile(codec, bench.rgb, q, refine=steps)
                      for q in args.qualities]
            base = base or points
            bd = bd_rate_of(points, base)
            seconds = sum(p.encode_seconds for p in points) / len(points)
            cells = point_cells(points)
            print(f"| {path.name} | {steps} | {cells} | {bd:+.1f} % | {seconds:.1f} "
                  f"({megapixels / seconds:.3f}) |", flush=True)


if __name__ == "__main__":
    main()
