#!/usr/bin/env python
"""Model width at equal training time: which ELIC width is best after the same CPU minutes.

Trains each width from scratch with the shipped recipe (same data, held-out images excluded,
learning rate, batch and quality ladder) for the same wall-clock time, exports it, and codes the
held-out aerial images as single tiles at every quality level: bpp (rANS stream), PSNR and the
BD-rate of each width against the shipped width (N=64, M=128) trained for the same time; the
shipped model itself (hours of training) is the last row, for scale.

    python benchmarks/width_sweep.py DATA... [--minutes 14] [--widths 32/64 64/128 96/192]

The training runs go to ``runs/width_sweep/``; a rerun evaluates the widths already exported and
resumes an interrupted run from its checkpoint (for up to the time limit again).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from georsic.bench.bdrate import bd_rate
from georsic.bench.images import AERIAL_RGB, load_image
from georsic.bench.metrics import psnr
from georsic.codec import TileCodec
from georsic.weights import MANIFEST, ModelEntry, find_model

HELD_OUT = ("OSBS_029", "SOAP_031", "australia_uav", "solaris_pan1", "moon_4k", "globe_colors")


def train(data: list[str], N: int, M: int, minutes: float, runs: Path, threads: int) -> Path:
    """Train one width (or resume it) and return its export folder."""
    export = runs / f"n{N}-m{M}-export"
    if (export / MANIFEST).exists():
        return export
    lambdas = [str(v) for v in find_model().config["lambdas"]]
    command = [sys.executable, "-m", "georsic.cli", "train", "codec", *data,
               "--exclude", *HELD_OUT, "--lr", "2e-4", "--N", str(N), "--M", str(M),
               "--threads", str(threads), "--lambdas", *lambdas, "--steps", "1000000",
               "--time-limit", str(int(minutes * 60)), "--out", str(runs / f"n{N}-m{M}"),
               "--export", str(export), "--model-id", f"sweep-n{N}-m{M}",
               "--hardware", f"width sweep, {minutes:g} min"]
    subprocess.run(command, check=True)
    return export


def exported_model(export: Path) -> ModelEntry:
    item = json.loads((export / MANIFEST).read_text())["models"][-1]
    return ModelEntry(item["id"], item.get("kind", "codec"), item["architecture"],
                      item["config"], export / item["file"], item["sha256"], item)


def curve(codec: TileCodec, rgb: np.ndarray) -> list[tuple[float, float]]:
    image = rgb.transpose(2, 0, 1).astype(np.float32) / 255.0
    h, w = image.shape[1:]
    points = []
    for quality in range(codec.levels):
        streams = codec.encode(image, float(quality))
        decoded = codec.decode(streams, h, w, float(quality))
        rgb_hat = np.clip(np.rint(decoded * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        points.append((8 * sum(map(len, streams)) / (h * w), psnr(rgb, rgb_hat)))
    return points


def total_steps(entry: ModelEntry) -> int | str:
    training = entry.info.get("training", {})
    return training.get("total_steps", training.get("steps", "?"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+")
    parser.add_argument("--minutes", type=float, default=14)
    parser.add_argument("--widths", nargs="+", default=["32/64", "64/128", "96/192"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=Path("runs/width_sweep"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    exports = {w: train(args.data, *map(int, w.split("/")), args.minutes, args.runs, args.threads)
               for w in args.widths}
    images = [load_image(Path(__file__).parent / "data" / name) for name in AERIAL_RGB]
    models = {w: exported_model(e) for w, e in exports.items()}
    shipped = find_model()
    models[f"shipped {shipped.id}"] = shipped
    curves = {w: [curve(TileCodec(m), im.rgb) for im in images] for w, m in models.items()}
    base = curves.get("64/128", next(iter(curves.values())))
    print(f"\nEach width trained {args.minutes:g} min from scratch on {args.threads} threads.\n")
    print("| N/M | steps | " + " | ".join(im.name for im in images) + " | mean |")
    print("|---|---|" + "---|" * (len(images) + 1))
    for width, per_image in curves.items():
        steps = total_steps(models[width])
        bds = [bd_rate([r for r, _ in b], [d for _, d in b], [r for r, _ in c], [d for _, d in c])
               for b, c in zip(base, per_image, strict=True)]
        cells = " | ".join(f"{v:+.1f} %" for v in bds)
        print(f"| {width} | {steps} | {cells} | {np.nanmean(bds):+.1f} % |", flush=True)


if __name__ == "__main__":
    main()
