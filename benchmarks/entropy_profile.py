#!/usr/bin/env python
"""Per-operator profile of the exact entropy path decoding one tile, one thread.

Codes the latent of a held-out aerial crop (tiled to ``--size`` pixels) through the default
model's exact entropy path, then prints the decode's wall time and torch's per-operator table
(by input shape), so the convolutions that cost most can be seen.

    python benchmarks/entropy_profile.py [--size 1024] [--quality 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import profile

from georsic.bench.images import load_image
from georsic.codec import TileCodec
from georsic.weights import find_model

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--quality", type=float, default=3.0)
    parser.add_argument("--image", default=str(ROOT / "benchmarks/data/deepforest_OSBS_029.tif"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = TileCodec(find_model(None), "cpu").model
    rgb = load_image(args.image).rgb
    reps = -(-args.size // min(rgb.shape[:2]))
    rgb = np.tile(rgb, (reps, reps, 1))[:args.size, :args.size].transpose(2, 0, 1)
    x = torch.from_numpy(np.ascontiguousarray(rgb)).float()[None] / 255
    with torch.no_grad():
        y = model._analyse(x) * model._gain(model.log_gain, args.quality)
    coder = model.exact
    data, _ = coder.compress(y)
    shape = tuple(y.shape[2:])
    coder.decompress(data, shape)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        coder.decompress(data, shape)
        times.append(time.perf_counter() - started)
    print(f"{args.size}-px tile, quality {args.quality}: exact entropy decode "
          f"{sorted(times)[1]:.3f} s (median of 3), {len(data)} bytes")
    with profile(record_shapes=True) as prof:
        coder.decompress(data, shape)
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=30,
        max_shapes_column_width=60))


if __name__ == "__main__":
    main()
