#!/usr/bin/env python
"""Bits spent on padding: how a tile is extended to a multiple of 64 pixels before coding.

ELIC's latent grid needs images whose sides are multiples of 64; the decoder crops the padding
away, so every bit spent on it is wasted.  This codes each held-out image as one tile with each
padding of :data:`georsic.codec.PADDINGS` and prints bpp (rANS streams only, over the real
pixels), PSNR (8-bit, real pixels) and the BD-rate of each padding against ``replicate``.

    python benchmarks/padding.py [--qualities 0 2 4 6] [--threads 2] [images ...]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from georsic.bench.images import AERIAL_RGB, load_image
from georsic.bench.single_tile import (
    bd_rate_of,
    code_single_tile,
    point_cells,
    quality_columns,
)
from georsic.codec import PADDINGS, TileCodec
from georsic.weights import find_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--qualities", nargs="+", type=float, default=[0, 2, 4, 6])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = args.images or [Path(__file__).parent / "data" / n for n in AERIAL_RGB]
    codec = TileCodec(find_model())
    print(f"model {codec.entry.id} ({codec.entry.sha256[:12]}), qualities {args.qualities}\n")
    print("| image | size | padding | " + quality_columns(args.qualities)
          + " | BD-rate vs replicate |")
    print("|---|---|---|" + "---|" * (len(args.qualities) + 1))
    for path in images:
        bench = load_image(path)
        curves = {p: [code_single_tile(codec, bench.rgb, q, padding=p)
                      for q in args.qualities]
                  for p in PADDINGS}
        base = curves["replicate"]
        for padding, points in curves.items():
            cells = point_cells(points)
            bd = bd_rate_of(points, base)
            bd_text = "-" if math.isnan(bd) else f"{bd:+.1f} %"
            print(f"| {path.name} | {bench.width}x{bench.height} | {padding} | {cells} | "
                  f"{bd_text} |", flush=True)


if __name__ == "__main__":
    main()
