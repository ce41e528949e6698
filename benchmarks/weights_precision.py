#!/usr/bin/env python
"""What storing the codec's weights in int8 (or fewer bits) costs: size and rate-distortion.

Converts an installed model (default ``elic-vr-s``, stored in half precision) to integer
storage the way ``georsic train codec --weights-dtype int8 --weight-bits B`` exports it (layer
weights as B-bit integers with one scale per output channel, everything else unchanged), then
codes each held-out image as one tile with each and prints bpp / PSNR per quality and the
BD-rate against the weights as stored.  Sizes are the file's and what git stores of it (zlib at
git's default level).

    python benchmarks/weights_precision.py [--model elic-vr-s] [--bits 8 ...]
        [--qualities 0 1 ... 7] [--threads 2] [images]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from weights_budget import git_stored_bytes  # beside this script

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


def integer_copy(entry: ModelEntry, folder: Path, bits: str = "8") -> ModelEntry:
    """``entry``'s weights stored as ``bits``-bit integers (see `WeightBits`) in ``folder``."""
    model = build_model(entry.architecture, entry.config)
    model.load_state_dict(load_entry_state_dict(entry))
    round_parameters(model, torch.int8, bits)
    path = folder / f"{entry.id}-int{bits}.safetensors".replace(",", "_").replace("=", "")
    save_file(stored_tensors(model, torch.int8, bits), str(path))
    return dataclasses.replace(entry, path=path, sha256=file_sha256(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--qualities", nargs="+", type=float, default=list(range(8)))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="elic-vr-s",
                        help="installed model to convert (an int8 model converts to itself)")
    parser.add_argument("--bits", nargs="+", default=["8"],
                        help="integer widths to compare: '6', or per layer '7,channel_context=5'")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = args.images or [Path(__file__).parent / "data" / n for n in DEFAULT_IMAGES]
    shipped = find_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        entries = {"shipped": shipped} | {f"int{bits}": integer_copy(shipped, Path(tmp), bits)
                                          for bits in args.bits}
        codecs = {name: TileCodec(entry) for name, entry in entries.items()}
        print(f"model {shipped.id} ({shipped.sha256[:12]})\n")
        print("| weights | file bytes | git bytes (zlib) |\n|---|---|---|")
        for name, entry in entries.items():
            data = entry.path.read_bytes()
            print(f"| {name} | {len(data):,} | {git_stored_bytes(data):,} |")
        print()
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
