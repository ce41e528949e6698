#!/usr/bin/env python
"""Encoder-side latent refinement: bits saved against encoding time, per number of steps.

Codes each held-out image as one tile at a few qualities with ``refine`` = 0 and each given
number of steps (``georsic compress --refine``), decodes it, and prints bpp (rANS stream over
the real pixels), PSNR (8-bit), the BD-rate against no refinement and the encoding time.

    python benchmarks/refine.py [--steps 10 20] [--qualities 1 3 5] [--threads 2] [images ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from georsic.bench.bdrate import bd_rate
from georsic.bench.images import load_image
from georsic.bench.metrics import psnr
from georsic.codec import TileCodec
from georsic.weights import find_model

DEFAULT_IMAGES = ("deepforest_OSBS_029.tif", "deepforest_SOAP_031.png",
                  "deepforest_australia_uav.tif")


def code_point(codec: TileCodec, rgb: np.ndarray, quality: float, steps: int
               ) -> tuple[float, float, float]:
    """(bpp, PSNR, encoding seconds) of one image coded as one tile."""
    image = rgb.transpose(2, 0, 1).astype(np.float32) / 255.0
    h, w = image.shape[1:]
    start = time.perf_counter()
    streams = codec.encode(image, quality, refine=steps)
    seconds = time.perf_counter() - start
    decoded = codec.decode(streams, h, w, quality)
    rgb_hat = np.clip(np.rint(decoded * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return 8 * sum(map(len, streams)) / (h * w), psnr(rgb, rgb_hat), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--steps", nargs="+", type=int, default=[10, 20])
    parser.add_argument("--qualities", nargs="+", type=float, default=[1, 3, 5])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = args.images or [Path(__file__).parent / "data" / n for n in DEFAULT_IMAGES]
    codec = TileCodec(find_model())
    print(f"model {codec.entry.id} ({codec.entry.sha256[:12]}), qualities {args.qualities}, "
          f"{args.threads} threads\n")
    print("| image | refine steps | " + " | ".join(f"q{q:g} bpp / dB" for q in args.qualities)
          + " | BD-rate vs 0 steps | encode s (MP/s) |")
    print("|---|---|" + "---|" * (len(args.qualities) + 2))
    for path in images:
        bench = load_image(path)
        megapixels = bench.pixels / 1e6
        base = None
        for steps in [0, *args.steps]:
            points = [code_point(codec, bench.rgb, q, steps) for q in args.qualities]
            base = base or points
            bd = bd_rate([b for b, _, _ in base], [d for _, d, _ in base],
                         [b for b, _, _ in points], [d for _, d, _ in points])
            seconds = sum(s for _, _, s in points) / len(points)
            cells = " | ".join(f"{b:.4f} / {d:.2f}" for b, d, _ in points)
            print(f"| {path.name} | {steps} | {cells} | {bd:+.1f} % | {seconds:.1f} "
                  f"({megapixels / seconds:.3f}) |", flush=True)


if __name__ == "__main__":
    main()
