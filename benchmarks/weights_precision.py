#!/usr/bin/env python
"""What storing the codec's weights in int8 costs: file size and rate-distortion.

Converts an installed model (default ``elic-vr-s``, stored in half precision) to int8 storage
the way ``georsic train codec --weights-dtype int8`` exports it (layer weights int8 with one
scale per output channel, everything else unchanged), then codes each held-out image as one
tile with both and prints bpp / PSNR per quality and the BD-rate of int8 against the weights as
stored.

    python benchmarks/weights_precision.py [--model elic-vr-s] [--qualities 0 1 ... 7]
        [--threads 2] [images]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from georsic.bench.images import load_image
from georsic.bench.single_tile import (
    bd_rate_of,
    code_single_tile,
    point_cells,
    quality_columns,
)
from georsic.codec import TileCodec
from georsic.models import build_model
from georsic.train.export import round_parameters, stored_tensors
from georsic.weights import ModelEntry, file_sha256, find_model, load_entry_state_dict

DEFAULT_IMAGES = ("deepforest_OSBS_029.tif", "deepforest_SOAP_031.png",
                  "deepforest_australia_uav.tif", "solaris_pan1.tif")


def int8_copy(entry: ModelEntry, folder: Path) -> ModelEntry:
    """``entry``'s weights stored as int8 in ``folder``."""
    model = build_model(entry.architecture, entry.config)
    model.load_state_dict(load_entry_state_dict(entry))
    round_parameters(model, torch.int8)
    path = folder / f"{entry.id}-int8.safetensors"
    save_file(stored_tensors(model, torch.int8), str(path))
    return dataclasses.replace(entry, path=path, sha256=file_sha256(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--qualities", nargs="+", type=float, default=list(range(8)))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="elic-vr-s",
                        help="installed model to convert (an int8 model converts to itself)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = args.images or [Path(__file__).parent / "data" / n for n in DEFAULT_IMAGES]
    shipped = find_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        int8 = int8_copy(shipped, Path(tmp))
        codecs = {"shipped": TileCodec(shipped), "int8": TileCodec(int8)}
        sizes = {"shipped": shipped.path.stat().st_size, "int8": int8.path.stat().st_size}
        print(f"model {shipped.id} ({shipped.sha256[:12]}): "
              f"{sizes['shipped']:,} bytes as shipped, {sizes['int8']:,} bytes in int8\n")
        print("| image | weights | " + quality_columns(args.qualities)
              + " | BD-rate vs shipped |")
        print("|---|---|" + "---|" * (len(args.qualities) + 1))
        for path in images:
            bench = load_image(path)
            curves = {name: [code_single_tile(codec, bench.rgb, q) for q in args.qualities]
                      for name, codec in codecs.items()}
            base = curves["shipped"]
            for name, points in curves.items():
                cells = point_cells(points)
                bd = bd_rate_of(points, base)
                bd_text = "-" if math.isnan(bd) else f"{bd:+.2f} %"
                print(f"| {path.name} | {name} | {cells} | {bd_text} |", flush=True)


if __name__ == "__main__":
    main()
