#!/usr/bin/env python
"""What running the synthesis transform ``g_s`` in bfloat16 costs in rate-distortion.

Codes each held-out image as one tile with the default model, then decodes the same streams
twice: with ``g_s`` in float32 (ONNX Runtime, ``GEORSIC_RUNTIME=onnxruntime``) and in bfloat16
(:class:`~georsic.models.runtime.Bfloat16Transform`, what a CPU with native bfloat16 decodes
with).  The rates are the same; the table gives PSNR per quality, the largest pixel difference
between the two decodings, and the BD-rate of bfloat16 against float32.  ``--analysis`` also
runs ``g_a`` in bfloat16 for encoding (other streams, so other rates).

    python benchmarks/synthesis_precision.py [--qualities 0 1 ... 7] [--analysis] [images]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from georsic.bench.images import load_image
from georsic.bench.single_tile import TilePoint, bd_rate_of, code_single_tile
from georsic.codec import TileCodec
from georsic.models.runtime import RUNTIME_ENV, Bfloat16Transform
from georsic.weights import find_model

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_IMAGES = ("deepforest_OSBS_029.tif", "deepforest_SOAP_031.png",
                  "deepforest_australia_uav.tif", "solaris_pan1.tif")


def float32_codec(threads: int) -> TileCodec:
    before = os.environ.get(RUNTIME_ENV)
    os.environ[RUNTIME_ENV] = "onnxruntime"
    try:
        return TileCodec(find_model(None), "cpu", threads)
    finally:
        if before is None:
            del os.environ[RUNTIME_ENV]
        else:
            os.environ[RUNTIME_ENV] = before


def decoded_difference(codec_a: TileCodec, codec_b: TileCodec, rgb: np.ndarray,
                       quality: float) -> int:
    """Largest difference, in 8-bit levels, between two codecs' decodings of one stream."""
    image = rgb.transpose(2, 0, 1).astype(np.float32) / 255.0
    h, w = image.shape[1:]
    streams = codec_a.encode(image, quality)
    a, b = (np.rint(np.clip(c.decode(streams, h, w, quality), 0, 1) * 255)
            for c in (codec_a, codec_b))
    return int(np.abs(a - b).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", default=list(DEFAULT_IMAGES))
    parser.add_argument("--qualities", type=float, nargs="+",
                        default=[0, 1, 2, 3, 4, 5, 6, 7])
    parser.add_argument("--analysis", action="store_true",
                        help="also encode with g_a in bfloat16")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reference = float32_codec(args.threads)
    bf16 = float32_codec(args.threads)
    bf16.model._synthesis_runtime = Bfloat16Transform(bf16.model.g_s)
    variants = {"g_s bfloat16": bf16}
    if args.analysis:
        both = float32_codec(args.threads)
        both.model._synthesis_runtime = Bfloat16Transform(both.model.g_s)
        both.model._analysis_runtime = Bfloat16Transform(both.model.g_a)
        variants["g_a and g_s bfloat16"] = both
    print(f"model {reference.entry.id}; PSNR dB per quality {args.qualities}; "
          f"max diff: 8-bit levels between the float32 and bfloat16 g_s decodings\n")
    print("| image | variant | PSNR per quality | max diff | BD-rate |")
    print("|---|---|---|---|---|")
    bds: dict[str, list[float]] = {name: [] for name in variants}
    for name in args.images:
        rgb = load_image(DATA / name).rgb
        base: list[TilePoint] = [code_single_tile(reference, rgb, q) for q in args.qualities]
        cells = " ".join(f"{p.psnr:.3f}" for p in base)
        print(f"| {name} | float32 | {cells} | | |")
        for variant, codec in variants.items():
            points = [code_single_tile(codec, rgb, q) for q in args.qualities]
            diff = max(decoded_difference(reference, codec, rgb, q) for q in args.qualities)
            bd = bd_rate_of(points, base)
            bds[variant].append(bd)
            cells = " ".join(f"{p.psnr:.3f}" for p in points)
            print(f"| {name} | {variant} | {cells} | {diff} | {bd:+.3f} % |", flush=True)
    for variant, values in bds.items():
        print(f"\nmean BD-rate, {variant} against float32: {np.mean(values):+.3f} %")


if __name__ == "__main__":
    main()
