#!/usr/bin/env python
"""Rate cost and speed of a candidate exact entropy path whose every layer is one float32 sum.

The shipped path (``int-exact-v1``) gives every entropy-model layer 2**13 input levels and cuts
a convolution whose sums could pass 2**24 into blocks of input channels.  The candidate
(``ExactEntropyCoder(one_block=True)``) gives each layer as many levels as keep the whole
convolution one exact float32 sum (``cc*_1``: ~2**9).  On the held-out aerial images, qualities
0-7, one thread, this prints bits per pixel and PSNR of both, the BD-rate of the candidate
against v1, and the entropy coding seconds of each.

    python benchmarks/entropy_levels.py [--qualities 0 1 2 3 4 5 6 7]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from georsic.bench.bdrate import bd_rate
from georsic.bench.images import AERIAL_RGB, load_image
from georsic.codec import TileCodec, pad_to_align
from georsic.models.exact import ExactEntropyCoder, amax_from_state
from georsic.weights import find_model, load_entry_raw_tensors

DATA = Path(__file__).resolve().parent / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qualities", type=float, nargs="+", default=list(range(8)))
    args = parser.parse_args()
    torch.set_num_threads(1)
    entry = find_model(None)
    model = TileCodec(entry, "cpu").model
    raw = load_entry_raw_tensors(entry)
    coders = {"int-exact-v1": model.exact,
              "one block": ExactEntropyCoder(model, amax_from_state(raw), raw, one_block=True)}
    print(f"load {os.getloadavg()[0]:.2f}; {entry.id}, one thread")
    print("| image | path | quality | bpp | PSNR dB | encode s | decode s |")
    print("|---|---|---|---|---|---|---|")
    changes = []
    for name in AERIAL_RGB:
        rgb = load_image(DATA / name).rgb
        h, w = rgb.shape[:2]
        image = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255
        x = pad_to_align(torch.from_numpy(image)[None])
        curves: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in coders}
        for q in args.qualities:
            with torch.inference_mode():
                y = model._analyse(x) * model._gain(model.log_gain, q)
                for label, coder in coders.items():
                    started = time.perf_counter()
                    data, y_hat = coder.compress(y)
                    enc = time.perf_counter() - started
                    started = time.perf_counter()
                    decoded = coder.decompress(data, tuple(y.shape[-2:]))
                    dec = time.perf_counter() - started
                    assert torch.equal(decoded, y_hat), label
                    x_hat = model._synthesise(y_hat.float() * model._gain(model.log_inverse_gain,
                                                                           q)).clamp(0, 1)
                    err = (x_hat[0, :, :h, :w].numpy() * 255 - rgb.transpose(2, 0, 1)) ** 2
                    bpp = 8 * len(data) / (h * w)
                    psnr = 10 * np.log10(255**2 / float(np.mean(err)))
                    curves[label][0].append(bpp)
                    curves[label][1].append(psnr)
                    print(f"| {name} | {label} | {q:g} | {bpp:.4f} | {psnr:.3f} | {enc:.3f} | "
                          f"{dec:.3f} |", flush=True)
        change = bd_rate(*curves["int-exact-v1"], *curves["one block"])
        changes.append(change)
        print(f"BD-rate of one block against v1, {name}: {change:+.3f} %", flush=True)
    print(f"mean BD-rate: {float(np.mean(changes)):+.3f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
