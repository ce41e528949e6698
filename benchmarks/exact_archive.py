#!/usr/bin/env python
"""What an exact archive (format version 8, ``--exact``) costs against a normal one.

    python benchmarks/exact_archive.py tile [--source SRC] [--quality Q] [--repeat N]
    python benchmarks/exact_archive.py cli [SOURCES ...]

``tile``: on one 1024-px tile of ``SRC`` (default: the top-left 2048 x 2048 of
``deepforest_YELL_crop2.png`` from ``../shared/data/rs``, written to a temporary GeoTIFF), one
torch thread, best of ``--repeat``: today's encode and decode (``TileCodec``), the pixel digest
the encoder of an exact archive adds per tile (``exactarchive.tile_digest``: exact entropy
decode, exact ``g_s``, inverse band mapping, BLAKE2b; the same work as an exact decode), and
the calibration done once per archive (``exactarchive.make_spec``).  For the AVX2 class:
``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 GEORSIC_RUNTIME=onnxruntime``.

``cli``: ``georsic compress`` (default tiling and quality), ``decompress`` and ``verify
--decode``, each a fresh process (start-up included), with and without ``--exact``, per source
(default: ``benchmarks/data/deepforest_SOAP_031.png`` and that 2048 x 2048 crop); wall times,
archive bytes, PSNR of each decode and the largest difference between the two decodes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
YELL = ROOT.parent / "shared" / "data" / "rs" / "deepforest_YELL_crop2.png"


def crop_2048(folder: Path) -> Path:
    """The top-left 2048 x 2048 of ``deepforest_YELL_crop2.png`` as a tiled GeoTIFF."""
    import rasterio
    from rasterio.windows import Window

    target = folder / "yell2048.tif"
    with rasterio.open(YELL) as src:
        profile = {"driver": "GTiff", "width": 2048, "height": 2048, "count": src.count,
                   "dtype": src.dtypes[0], "tiled": True, "blockxsize": 256, "blockysize": 256}
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(src.read(window=Window(0, 0, 2048, 2048)))
    return target


def best(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return min(times), out


def tile(source: Path, quality: float, repeat: int) -> None:
    import torch
    from rasterio.windows import Window

    from georsic.codec import get_codec
    from georsic.exactarchive import make_spec, tile_digest
    from georsic.rasterinfo import RasterInfo
    from georsic.source import band_mapping, open_raster
    from georsic.tiling import TileGrid
    from georsic.weights import find_model

    torch.set_num_threads(1)
    codec = get_codec(find_model(None), "cpu")
    with open_raster(source) as raster:
        info = RasterInfo.from_dataset(raster)
        grid = TileGrid(info.width, info.height, 1024, 16)
        mapping = band_mapping(raster, info, None)
        calibration, spec = best(lambda: make_spec(raster, info, mapping, info.count, quality,
                                                   grid, codec), 1)
        data = raster.read(window=Window(0, 0, 1024, 1024))
    image = mapping.encode(data, None)[0]
    encode, streams = best(lambda: codec.encode(image, quality), repeat)
    sections = [b"", b"", *streams]
    digest, _ = best(lambda: tile_digest(codec, spec, sections, mapping, 1024, 1024,
                                         codec.entropy, info.dtype), repeat)
    decode, _ = best(lambda: codec.decode(streams, 1024, 1024, quality, codec.entropy), repeat)
    print(f"runtime {codec.runtime}, quality {quality:g}, one 1024-px tile, one thread, best "
          f"of {repeat}: encode {encode:.2f} s, decode {decode:.2f} s, digest (= exact decode) "
          f"{digest:.2f} s ({digest / decode:.1f}x the decode); calibration once per archive "
          f"{calibration:.2f} s; load average {os.getloadavg()[0]:.1f}")


def cli(sources: list[Path], folder: Path) -> None:
    import rasterio

    from georsic.metrics import psnr

    env = dict(os.environ, PYTHONPATH=str(ROOT / "backend"))

    def run(*args) -> float:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "georsic.cli", *map(str, args)], env=env,
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stderr)
        return time.perf_counter() - started

    print("| source | mode | compress | decompress | verify --decode | bytes | PSNR |")
    print("|---|---|---|---|---|---|---|")
    for source in sources:
        with rasterio.open(source) as src:
            original = src.read()
        decoded = {}
        for mode in ("normal", "exact"):
            archive, out = folder / f"{mode}.grsc", folder / f"{mode}.tif"
            extra = ["--exact"] if mode == "exact" else []
            seconds = [run("compress", source, archive, "--overwrite", "--quiet", *extra),
                       run("decompress", archive, out, "--overwrite", "--quiet"),
                       run("verify", "--decode", "--quiet", archive)]
            with rasterio.open(out) as dec:
                decoded[mode] = dec.read()
            print(f"| {source.name} {original.shape[2]} x {original.shape[1]} | {mode} | "
                  + " | ".join(f"{s:.1f} s" for s in seconds)
                  + f" | {archive.stat().st_size:,} | {psnr(original, decoded[mode]):.2f} dB |")
        diff = np.abs(decoded["exact"].astype(int) - decoded["normal"].astype(int)).max()
        print(f"| {source.name} | largest difference exact - normal: {diff} level(s) |||||")
    print(f"\nload average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("tile")
    p.add_argument("--source", type=Path)
    p.add_argument("--quality", type=float, default=3.0)
    p.add_argument("--repeat", type=int, default=3)
    p = sub.add_parser("cli")
    p.add_argument("sources", nargs="*", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.what == "tile":
            tile(args.source or crop_2048(folder), args.quality, args.repeat)
        else:
            sources = args.sources or [DATA / "deepforest_SOAP_031.png", crop_2048(folder)]
            cli(sources, folder)


if __name__ == "__main__":
    main()
