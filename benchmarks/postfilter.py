#!/usr/bin/env python
"""What a post-filter trained on one's own imagery gives (``georsic train postfilter``).

One large scene is split in two: the top rows train a post-filter for the default codec (the
codec itself is not changed), and 512-pixel crops of the bottom rows, which the filter never
saw, measure it: each crop is compressed once and decompressed with and without the filter
(`georsic.train.postfilter.measure_postfilter_rd`, the real pipeline). The same filter is then
measured on the held-out benchmark images of ``georsic bench rd`` (other scenes, other
sensors), and decoding is timed with and without it.

    python benchmarks/postfilter.py ../shared/data/rs/deepforest_YELL_crop2.png \\
        [--steps 800] [--out benchmarks/results/postfilter.md]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = ("deepforest_OSBS_029.tif", "deepforest_SOAP_031.png", "deepforest_australia_uav.tif")


def _write(path: Path, pixels: np.ndarray) -> Path:
    profile = {"driver": "GTiff", "width": pixels.shape[2], "height": pixels.shape[1],
               "count": pixels.shape[0], "dtype": "uint8"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
    return path


def split_scene(scene: Path, folder: Path, train_rows: int, crop: int) -> tuple[Path, list[Path]]:
    """The top ``train_rows`` rows as one training file, crops of the rest as test files."""
    from georsic.train.data import load_rgb8

    pixels = load_rgb8(scene)
    train = _write(folder / "train.tif", np.ascontiguousarray(pixels[:, :train_rows]))
    tests = []
    for y in range(train_rows, pixels.shape[1] - crop + 1, crop):
        for x in range(0, pixels.shape[2] - crop + 1, crop):
            tests.append(_write(folder / f"test_{y}_{x}.tif",
                                np.ascontiguousarray(pixels[:, y:y + crop, x:x + crop])))
    return train, tests


def decode_speed(archive: Path, postfilter: bool, repeat: int = 2) -> float:
    """Megapixels per second of ``georsic.decompress`` (best of ``repeat``)."""
    import georsic

    with georsic.open(archive) as opened:
        pixels = opened.width * opened.height
    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            start = time.perf_counter()
            georsic.decompress(archive, Path(tmp) / "out.tif", postfilter=postfilter,
                               device="cpu")
            best = min(best, time.perf_counter() - start)
    return pixels / best / 1e6


def _table(rd: dict) -> list[str]:
    lines = ["| image | " + " | ".join(f"q{q}" for q in range(8)) + " | BD-rate |",
             "|---|" + "---|" * 9]
    for name, gain in rd["bd_rate_vs_plain"].items():
        rows = [r for r in rd["points"] if r["image"] == name]
        cells = [f"{r['bpp']:.3f} bpp: {r['psnr_plain']:.2f} -> {r['psnr']:.2f}" for r in rows]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {gain:+.2f} % |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", type=Path, help="a large RGB scene (split into train / test)")
    parser.add_argument("--train-rows", type=int, default=1536)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/postfilter.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[postfilter] %(message)s")
    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    torch.set_num_threads(args.threads)

    import os

    from georsic.train.postfilter import (
        PostFilterTrainConfig,
        export_postfilter,
        measure_postfilter_rd,
        train_postfilter,
    )
    from georsic.weights import find_model

    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train, tests = split_scene(args.scene, tmp, args.train_rows, args.crop)
        cfg = PostFilterTrainConfig(data=[str(train)], out=str(tmp / "run"),
                                    channels=args.channels, blocks=args.blocks,
                                    steps=args.steps, threads=args.threads)
        t0 = time.time()
        checkpoint = train_postfilter(cfg)
        train_seconds = time.time() - t0
        weights = tmp / "weights"
        entry = export_postfilter(checkpoint, weights, "qpf-bench")
        in_domain = measure_postfilter_rd(weights, "qpf-bench", tests)
        held_out = measure_postfilter_rd(
            weights, "qpf-bench", [ROOT / "benchmarks/data" / name for name in HELD_OUT])
        os.environ["GEORSIC_WEIGHTS"] = str(weights)
        import georsic

        with rasterio.open(train) as src:
            train_size = f"{src.width}x{src.height}"
        archive = tmp / "speed.grsc"
        georsic.compress(train, archive, quality=3, device="cpu")
        speeds = {flag: decode_speed(archive, flag) for flag in (False, True)}
    codec = find_model()
    mean_in = statistics.fmean(in_domain["bd_rate_vs_plain"].values())
    mean_out = statistics.fmean(held_out["bd_rate_vs_plain"].values())
    command = "python benchmarks/postfilter.py " + " ".join(sys.argv[1:])
    lines = [
        "# A post-filter trained on one's own imagery (`georsic train postfilter`)", "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{os.cpu_count()} CPU cores, {args.threads} torch threads, {time.time() - started:.0f} s "
        f"in all. Codec `{codec.id}` ({codec.sha256[:12]}, frozen); filter "
        f"{entry['config']['channels']} channels x {entry['config']['blocks']} blocks, "
        f"{entry['parameters']:,} parameters ({entry['bytes']:,} bytes in float16), "
        f"{args.steps} steps of batch {cfg.batch} x {cfg.patch} px in {train_seconds:.0f} s "
        "(decoding the training tiles at the 8 levels included).", "",
        "Produced by (from the repository root):", "", f"    {command}", "",
        f"The scene's top {args.train_rows} rows trained the filter; the {len(tests)} crops of "
        f"{args.crop} px below them were never seen by it. Each cell: the archive's bpp, PSNR "
        "decoded without -> with the filter (the same archive). BD-rate (PSNR) of the filtered "
        "decoding against the plain one; negative: fewer bits at the same PSNR.", "",
        f"## Same scene, unseen part: mean BD-rate {mean_in:+.2f} %", "",
        *_table(in_domain), "",
        f"## Other scenes (the benchmark's held-out images): mean BD-rate {mean_out:+.2f} %", "",
        *_table(held_out), "",
        "## Decoding speed", "",
        f"`georsic.decompress` of the training part ({train_size}) compressed at quality 3 "
        f"(best of 2, CPU): {speeds[False]:.3f} MP/s without the filter, {speeds[True]:.3f} "
        "MP/s with it.", "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
