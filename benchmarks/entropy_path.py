#!/usr/bin/env python
"""Entropy model alone, float64 path against the exact integer path, one thread.

Codes and decodes the latent of a held-out aerial crop at qualities 1, 3 and 5 through the
float64 CompressAI entropy model (``elic-vr-s-v4``'s path) and through the exact path of the
default model (same weights plus calibration), and prints bytes and seconds of each, without
the transforms g_a and g_s.

    python benchmarks/entropy_path.py [--size 512] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from georsic.bench.images import load_image
from georsic.codec import TileCodec, pad_to_align
from georsic.models.elic import _default_dtype
from georsic.models.streams import SharedRansStream, attached
from georsic.weights import find_model

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--image", default=str(ROOT / "benchmarks/data/deepforest_SOAP_031.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rgb = load_image(args.image).rgb[:args.size, :args.size]
    x = pad_to_align(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1),
                                                           dtype=np.float32) / 255)[None])
    exact_codec = TileCodec(find_model(None), "cpu")
    float_codec = TileCodec(find_model("elic-vr-s-v4"), "cpu")
    print(f"load {os.getloadavg()[0]:.2f}; crop {x.shape[-1]}x{x.shape[-2]}, one thread")
    print("| path | quality | bytes | encode s | decode s |\n|---|---|---|---|---|")
    shape = {"y": [torch.Size([g, x.shape[-2] // 16, x.shape[-1] // 16])
                   for g in exact_codec.groups],
             "hyper": torch.Size([x.shape[-2] // 64, x.shape[-1] // 64])}
    for q in (1.0, 3.0, 5.0):
        for name, codec, path in (("float64", float_codec, "float"),
                                  ("exact", exact_codec, "exact")):
            model = codec.model
            with torch.inference_mode():
                y = model.g_a(x) * model._gain(model.log_gain, q)
                enc = dec = 0.0
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    if path == "exact":
                        data = model.exact.compress(y)[0]
                    else:
                        with attached(model.latent_codec, SharedRansStream()) as stream:
                            model.latent_codec.compress(y.double())
                            data = stream.flush()
                    enc += time.perf_counter() - started
                    started = time.perf_counter()
                    if path == "exact":
                        model.exact.decompress(data, tuple(y.shape[-2:]))
                    else:
                        calls = 2 * len(codec.groups) + 1
                        with _default_dtype(torch.float64), \
                                attached(model.latent_codec, SharedRansStream(data)):
                            model.latent_codec.decompress([[b""]] * calls, shape)
                    dec += time.perf_counter() - started
            print(f"| {name} | {q:g} | {len(data):,} | {enc / args.repeat:.3f} | "
                  f"{dec / args.repeat:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
