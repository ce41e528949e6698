#!/usr/bin/env python
"""Time and size of the correction layer's context model on one tile (issue 30).

Reads a ``--size`` x ``--size`` crop of an RGB image (default: a training image, not a
benchmark one), codes it as an AVIF base at ``--level`` (the encoder's speed) and codes the
quantised residual at bound ``--bound`` as one context-coded group of three bands, then
decodes it; checks the round trip and prints the median of ``--repeat`` encode and decode
times (one core: the coder is numpy and CompressAI's rANS), the bytes, and the bytes of the
same residual by the older per-band rANS mode for comparison.

    PYTHONPATH=backend python benchmarks/correction_speed.py \\
        [../shared/data/rs/deepforest_YELL_crop2.png] [--size 1024] [--bound 8] [--level 60]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import rasterio
from rasterio.windows import Window

from georsic import bounded, correction
from georsic.bench.speed import cpu_description


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", nargs="?", default="../shared/data/rs/deepforest_YELL_crop2.png")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--bound", type=int, default=8)
    parser.add_argument("--level", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with rasterio.open(args.image) as src:
        data = src.read(indexes=[1, 2, 3], window=Window(0, 0, args.size, args.size))
    height, width = data.shape[1:]
    base = bounded.avif_base(bounded.avif_streams(data, args.level), 3, height, width)
    q = bounded.quantise(data.astype(np.int64) - base, args.bound)
    step = 2 * args.bound + 1
    group = [correction.Band(q[b], base[b], step) for b in range(3)]
    table = correction.load_table()
    correction.encode_group(group, table)  # warm: the table's cost array

    encode, decode = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        choices, stream = correction.encode_group(group, table)
        encode.append(time.perf_counter() - started)
        started = time.perf_counter()
        out = correction.decode_group(stream, list(base), [step] * 3, choices, table)
        decode.append(time.perf_counter() - started)
        assert all(np.array_equal(a, b.q) for a, b in zip(out, group, strict=True))
    rans = sum(len(bounded._encode_rans(q[b], base[b])) for b in range(3))
    print(f"{cpu_description()}; {args.image}, {width}x{height}x3, D = {args.bound}, "
          f"AVIF level {args.level} (speed {bounded.AVIF_SPEED})")
    print(f"context model ({table.name}): {len(stream):,} bytes, encode "
          f"{statistics.median(encode):.2f} s (table and offset search included), decode "
          f"{statistics.median(decode):.2f} s; per-band rANS mode: {rans:,} bytes")


if __name__ == "__main__":
    main()
