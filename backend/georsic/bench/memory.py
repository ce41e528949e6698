"""Peak memory of compress/decompress against raster size (``georsic bench memory``).

Each size runs in a fresh process that generates a textured raster window by window (so the
generator itself stays small), compresses it, decompresses it, and reports its own peak
resident set size.  Flat peak RSS across sizes shows that archives are written and read as
streams.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from georsic.defaults import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE
from georsic.errors import GeorsicError


def synthetic_raster(path: Path, size: int, block: int = 512) -> None:
    """A (3, size, size) uint8 GeoTIFF of smooth fields plus noise, written block by block."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": from_origin(500000, 5000000, 0.5, 0.5),
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as dst:
        for y in range(0, size, block):
            for x in range(0, size, block):
                h, w = min(block, size - y), min(block, size - x)
                yy, xx = np.mgrid[y:y + h, x:x + w].astype(np.float32)
                base = 120 + 60 * np.sin(xx / 97.0) * np.cos(yy / 53.0)
                data = np.stack([base + 20 * np.sin((xx + yy) / (11.0 + 7 * c)) for c in range(3)])
                data += rng.normal(0, 6, size=data.shape)
                dst.write(np.clip(data, 0, 255).astype(np.uint8), window=Window(x, y, w, h))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(size: int, quality: float, tile_size: int, device: str, workdir: Path) -> dict:
    import georsic

    raster = workdir / f"synthetic_{size}.tif"
    synthetic_raster(raster, size)
    rss_generate = peak_rss_mib()
    started = time.perf_counter()
    summary = georsic.compress(raster, workdir / "a.grsc", quality=quality, tile_size=tile_size,
                               device=device, overwrite=True)
    encode_s = time.perf_counter() - started
    rss_compress = peak_rss_mib()
    started = time.perf_counter()
    georsic.decompress(workdir / "a.grsc", workdir / "restored.tif", device=device,
                       overwrite=True)
    decode_s = time.perf_counter() - started
    return {"size": size, "megapixels": size * size / 1e6, "tiles": summary.tiles,
            "bpp": round(summary.bpp, 4), "encode_s": round(encode_s, 1),
            "decode_s": round(decode_s, 1),
            "peak_rss_after_generate_mib": round(rss_generate, 1),
            "peak_rss_after_compress_mib": round(rss_compress, 1),
            "peak_rss_mib": round(peak_rss_mib(), 1)}


def check(args: argparse.Namespace) -> None:
    """The arguments, before any raster is generated or measured."""
    from georsic.bench import args as checks
    from georsic.tiling import TileGrid

    checks.positive(args.sizes, "--sizes")
    if args.gdal_cache is not None:
        checks.positive(args.gdal_cache, "--gdal-cache")
    TileGrid.check(args.tile_size, DEFAULT_OVERLAP)  # run_one compresses with the default
    checks.folder(args.tmp, "--tmp")
    checks.output_file(args.out, "--out")


def main(args: argparse.Namespace) -> int:
    check(args)
    if args.child:
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            result = run_one(args.sizes[0], args.quality, args.tile_size, args.device, Path(tmp))
        print(json.dumps(result))
        return 0
    rows = []
    for size in args.sizes:
        cmd = [sys.executable, "-m", "georsic.cli", "bench", "memory", "--child",
               "--sizes", str(size), "--quality", str(args.quality), "--tile-size",
               str(args.tile_size), "--device", args.device]
        if args.tmp:
            cmd += ["--tmp", args.tmp]
        # GDAL's block cache: by default what each run sets for its raster (georsic.blockcache),
        # as the command line and the API run; --gdal-cache fixes it instead
        env = {k: v for k, v in os.environ.items() if k != "GDAL_CACHEMAX"}
        if args.gdal_cache is not None:
            env["GDAL_CACHEMAX"] = str(args.gdal_cache)
        run = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if run.returncode:
            said = (run.stderr.strip().splitlines() or [f"exit code {run.returncode}"])[-1]
            raise GeorsicError(f"bench memory: size {size} failed: "
                               f"{said.removeprefix('georsic: error: ')}")
        out = run.stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    lines = ["| size | MP | tiles | bpp | encode s | decode s | peak RSS after generating "
             "(MiB) | after compress | after decompress |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['megapixels']:.1f} | {r['tiles']} | {r['bpp']} | "
              f"{r['encode_s']} | {r['decode_s']} | {r['peak_rss_after_generate_mib']} | "
              f"{r['peak_rss_after_compress_mib']} | {r['peak_rss_mib']} |" for r in rows]
    command = "georsic bench memory --sizes " + " ".join(map(str, args.sizes))
    lines = [f"Command: `{command} --quality {args.quality} --tile-size {args.tile_size}"
             + (f" --gdal-cache {args.gdal_cache}" if args.gdal_cache is not None else "")
             + f"` (device {args.device}, "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})", ""] + lines
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("memory", help="peak RSS of compress+decompress against size")
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    p.add_argument("--quality", type=float, default=3.0)
    p.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tmp", default=None, help="folder for the generated rasters")
    p.add_argument("--gdal-cache", type=int, default=None,
                   help="GDAL_CACHEMAX for each run, MB (default: what each run sets for its "
                   "raster, georsic.blockcache)")
    p.add_argument("--out", default=None, help="write the markdown table here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=main)
