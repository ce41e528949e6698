#!/usr/bin/env python
"""Encode and decode speed of the codec itself, one tile at a time, on each device asked for.

What ``georsic bench rd`` times is the whole pipeline (GeoTIFF in, archive out, and back);
this times only what the processor does: ``TileCodec.encode`` and ``TileCodec.decode`` of
tiles cut from a real image (mirrored up to the tile size), after a warm-up, with CUDA
synchronised.  It needs torch and compressai alone (Pillow reads the image), so it runs on a
GPU machine that has no rasterio.  It also decodes on the CPU what the GPU encoded, since an
archive written on a GPU must open anywhere.

    python benchmarks/tile_speed.py IMAGE --devices cpu cuda --qualities 3 5 --tile 1024
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import numpy as np
import torch
from PIL import Image

from georsic.codec import TileCodec
from georsic.metrics import psnr
from georsic.weights import find_model


def tile_from(path: str, size: int) -> np.ndarray:
    """(3, size, size) float32 in [0, 1]: the image, mirrored as needed to fill the tile."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB")).astype(np.float32) / 255.0
    reps_y, reps_x = -(-size // rgb.shape[0]), -(-size // rgb.shape[1])
    rows = [np.concatenate([rgb if (i + j) % 2 == 0 else rgb[:, ::-1] for j in range(reps_x)],
                           axis=1) for i in range(reps_y)]
    rows = [row if i % 2 == 0 else row[::-1] for i, row in enumerate(rows)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:size, :size].transpose(2, 0, 1))


def timed(fn, device: str, repeat: int) -> tuple[float, object]:
    """Mean seconds of ``repeat`` calls of ``fn`` (after one untimed), and its last result."""
    result = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        result = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat, result


def to_8bit(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--devices", nargs="+", default=["cpu"])
    parser.add_argument("--qualities", nargs="+", type=float, default=[3.0, 5.0])
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", help="model id (default: the installed default)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    entry = find_model(args.model)
    tile = tile_from(args.image, args.tile)
    megapixels = args.tile * args.tile / 1e6
    rows = []
    for device in args.devices:
        codec = TileCodec(entry, device)
        name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
        for quality in args.qualities:
            enc_s, streams = timed(partial(codec.encode, tile, quality), device, args.repeat)
            dec_s, decoded = timed(partial(codec.decode, streams, args.tile, args.tile, quality),
                                   device, args.repeat)
            row = {"model": entry.id, "device": device, "name": name, "tile": args.tile,
                   "quality": quality, "bpp": 8 * sum(map(len, streams)) / args.tile**2,
                   "psnr": psnr(to_8bit(tile), to_8bit(decoded)), "encode_mps": megapixels / enc_s,
                   "decode_mps": megapixels / dec_s}
            if device != "cpu":
                on_cpu = TileCodec(entry, "cpu").decode(streams, args.tile, args.tile, quality)
                row["cpu_decode_max_diff"] = float(np.abs(on_cpu - decoded).max())
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
