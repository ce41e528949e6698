"""Why a Dask worker coded a tile slower than this process (issue 20).

Per full 256-px tile, interleaved so that every variant sees the same load: the time inside
the task in this process and on four 1-worker clusters (Dask's default settings; without its
``MALLOC_TRIM_THRESHOLD_=65536``; without its statistical profiler; without both), and the
round trip minus the time inside (scheduling and transfer).

    python benchmarks/worker_overhead.py [REPEATS]       (default 2; 9 full tiles each)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLEAN_ENV = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}
NO_TRIM = {"distributed.nanny.pre-spawn-environ": CLEAN_ENV}
NO_PROFILER = {"distributed.worker.profile.enabled": False}
VARIANTS = {"dask default": {}, "no trim": NO_TRIM, "no profiler": NO_PROFILER,
            "no trim, no profiler": {**NO_TRIM, **NO_PROFILER}}


def inside(job, indices: tuple[int, ...]) -> float:
    """Seconds ``encode_tiles`` takes, measured where it runs."""
    from georsic.compressor import encode_tiles

    started = time.perf_counter()
    encode_tiles(job, indices)
    return time.perf_counter() - started


def settings() -> tuple:
    import dask

    return (os.environ.get("MALLOC_TRIM_THRESHOLD_"),
            dask.config.get("distributed.worker.profile.enabled"))


def make_job(raster: Path):
    from georsic.compressor import EncodeJob
    from georsic.rasterinfo import RasterInfo
    from georsic.source import band_mapping, open_raster
    from georsic.tiling import TileGrid
    from georsic.weights import find_model

    entry = find_model(None)
    with open_raster(raster) as src:
        info = RasterInfo.from_dataset(src)
        mapping = band_mapping(src, info, None)
    grid = TileGrid(info.width, info.height, 256, 16)
    return EncodeJob(str(raster), info, mapping, grid, info.count, entry.id, entry.sha256,
                     "cpu", 3.0, 0)


def start_clusters() -> dict:
    import dask
    from distributed import Client, LocalCluster

    clusters = {}
    for name, config in VARIANTS.items():
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)  # a Nanny leaves it in our environ
        with dask.config.set(config):
            cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                   dashboard_address=None, host="127.0.0.1")
        clusters[name] = (cluster, Client(cluster))
    return clusters


def measure(job, tiles: list[int], clusters: dict, repeats: int) -> dict:
    from georsic.parallel import torch_threads

    rows: dict = {"in-process": []} | {name: [] for name in clusters}
    with torch_threads(1):
        inside(job, (0,))
        for _ in range(repeats):
            for index in tiles:
                rows["in-process"].append((0.0, inside(job, (index,))))
                for name, (_, client) in clusters.items():
                    started = time.perf_counter()
                    seconds = client.submit(inside, job, (index,), pure=False).result()
                    rows[name].append((time.perf_counter() - started, seconds))
    return rows


def main() -> None:
    from georsic.bench.memory import synthetic_raster

    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    raster = Path(tempfile.mkdtemp()) / "synthetic.tif"
    synthetic_raster(raster, 768)
    job = make_job(raster)
    tiles = [t.index for t in job.grid if t.window.width == t.window.height == 256]
    clusters = start_clusters()
    for name, (_, client) in clusters.items():
        print(name, "(MALLOC_TRIM_THRESHOLD_, profiler):", list(client.run(settings).values()))
        client.submit(inside, job, (0,), pure=False).result()  # codec loaded
    print("load average before:", open("/proc/loadavg").read().strip())
    rows = measure(job, tiles, clusters, repeats)
    print("load average after:", open("/proc/loadavg").read().strip())
    base = np.median(np.array(rows["in-process"])[:, 1])
    for name, values in rows.items():
        r = np.array(values)
        trip = "" if name == "in-process" else \
            f", round trip - inside {np.median(r[:, 0] - r[:, 1]) * 1000:.1f} ms"
        print(f"{name:22s} inside {np.median(r[:, 1]) * 1000:5.0f} ms "
              f"({np.median(r[:, 1]) / base:.2f}x){trip}, n={len(r)}")
    for cluster, client in clusters.values():
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
