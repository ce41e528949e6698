"""Requests a remote archive costs (issue 32): the CLI reading an archive over HTTP from a
server on the loopback address (tests/rangeserver.py) that counts what it answers.

The raster: the DeepForest UAV test image (751x708) mirrored to 1200x1100, compressed with
512-pixel tiles (3x3 tiles), at quality 4 (57 KB: opening fetches it whole) and 7 (over
128 KiB, so its tiles lie outside what opening fetches, as in any larger archive).  Each
command runs as its own process, as a user
would run it; the decoded region is compared with the same region of the local archive.

    PYTHONPATH=backend .venv/bin/python benchmarks/remote_requests.py [--out FOLDER]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from rangeserver import range_server  # noqa: E402

import georsic  # noqa: E402


def make_raster(path: Path) -> None:
    with rasterio.open(ROOT / "tests/data/deepforest_australia_uav.tif") as src:
        data, profile = src.read(), src.profile
    data = np.pad(data, ((0, 0), (0, 1100 - data.shape[1]), (0, 1200 - data.shape[2])),
                  mode="symmetric")
    profile |= {"width": 1200, "height": 1100, "tiled": True, "blockxsize": 256,
                "blockysize": 256, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def cli(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "georsic.cli", *args], check=True,
                   capture_output=True, text=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quality", type=float, default=7.0)
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="georsic-remote-"))
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"scene-q{args.quality:g}.grsc"
    if not (folder / "scene.tif").exists():
        make_raster(folder / "scene.tif")
    if not archive.exists():
        georsic.compress(folder / "scene.tif", archive, quality=args.quality, tile_size=512,
                         device="cpu")
    with georsic.open(archive) as opened:
        print(f"archive: {archive.stat().st_size:,} bytes, {opened.width}x{opened.height}, "
              f"{opened.grid.cols}x{opened.grid.rows} tiles of {opened.grid.size} px, "
              f"header ends at byte {opened._reader.data_start}")
        tiles = opened.grid.tiles_in(rasterio.windows.Window(300, 300, 512, 512))
    window = "300,300,512,512"
    with range_server(folder) as server:
        url = f"{server.url}/{archive.name}"
        print("| command | HEAD | GET (ranges) | tiles touched | seconds |")
        print("| --- | --- | --- | --- | --- |")
        for name, args in (("info", ["info", url]),
                           ("verify", ["verify", url]),
                           (f"decompress --window {window}",
                            ["decompress", url, str(folder / "remote.tif"), "--window",
                             window, "--device", "cpu", "--overwrite", "--quiet"])):
            server.reset()
            seconds = cli(*args)
            heads = len(server.requests(method="HEAD"))
            gets = server.requests(method="GET")
            touched = len(tiles) if name.startswith("decompress") else "-"
            ranges = ", ".join(r.range or "whole" for r in gets)
            print(f"| georsic {name} | {heads} | {len(gets)} ({ranges}) | {touched} | "
                  f"{seconds:.1f} |")
    cli("decompress", str(archive), str(folder / "local.tif"), "--window", window, "--device",
        "cpu", "--overwrite", "--quiet")
    with rasterio.open(folder / "remote.tif") as a, rasterio.open(folder / "local.tif") as b:
        same = np.array_equal(a.read(), b.read()) and a.profile == b.profile
    print(f"tiles of the region: {[t.index for t in tiles]}; remote pixels and profile equal "
          f"to the local archive's: {same}")


if __name__ == "__main__":
    main()
