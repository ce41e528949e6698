"""Throughput on 1 and 2 local Dask workers against one process (``georsic bench scale``).

One synthetic textured raster is compressed (a) in this process, tiles one after the other
on one torch thread, (b) on a local cluster (:func:`georsic.cluster.local_cluster`) of 1
worker of one thread, (c) on 2 such workers; (b) and (c) with one tile a task (K=1) and with
the default block of tiles a task.
Each cluster is warmed first (imports and codec loaded on every worker), so the figures are
the steady state a long job sees.  Also measured: the scheduler's cost per task (no-op tasks
through the same bounded, ordered submission the compressor uses), each worker's peak
resident memory, the time the workers' slots spent not computing per task (Dask's task
stream), and whether the archives are byte-identical.  Writes a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def _peak_mib() -> float:
    """This process's own peak resident memory (VmHWM: ``ru_maxrss`` survives the exec of a
    spawned worker and would report its parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _noop(i: int) -> int:
    return i


def _warm() -> int:
    import georsic.compressor  # noqa: F401

    return os.getpid()


def _timed_compress(raster: Path, out: Path, client, quality: float, tile: int,
                    per_task: int | None = None) -> dict:
    import georsic

    started = time.perf_counter()
    summary = georsic.compress(raster, out, quality=quality, tile_size=tile, device="cpu",
                               client=client, threads=1, tiles_per_task=per_task,
                               overwrite=True)
    seconds = time.perf_counter() - started
    pixels = summary.width * summary.height
    return {"seconds": seconds, "tiles": summary.tiles, "mp_s": pixels / seconds / 1e6,
            "sha": hashlib.sha256(out.read_bytes()).hexdigest()[:16]}


def _cluster_compress(raster: Path, out: Path, client, quality: float, tile: int,
                      per_task: int | None, workers: int) -> dict:
    """A compression on the cluster, with the workers' compute time from Dask's task stream:
    what the workers' slots spent on anything else (scheduling, transfers, waiting on the
    writer), per task, is the per-task overhead."""
    from distributed import get_task_stream

    from georsic.parallel import tiles_per_task

    with get_task_stream(client) as stream:
        row = _timed_compress(raster, out, client, quality, tile, per_task)
    computing = sum(part["stop"] - part["start"] for task in stream.data
                    for part in task["startstops"] if part["action"] == "compute")
    tasks = len(stream.data)
    row["k"] = per_task or tiles_per_task(row["tiles"], workers)
    row["tasks"] = tasks
    row["compute_s"] = computing
    row["task_overhead_s"] = (workers * row["seconds"] - computing) / max(tasks, 1)
    return row


def _overhead(client, count: int) -> float:
    """Seconds per no-op task through ordered(), bounded as the compressor submits them."""
    from georsic.parallel import client_executor, in_flight, ordered, parallelism

    executor = client_executor(client)
    window = in_flight(parallelism(client))
    list(ordered(executor, _noop, ((i,) for i in range(20)), window))  # warm
    started = time.perf_counter()
    results = list(ordered(executor, _noop, ((i,) for i in range(count)), window))
    assert results == list(range(count))
    return (time.perf_counter() - started) / count


def _cluster_rows(tmp: Path, raster: Path, warm: Path, workers: int, quality: float,
                  tile: int, noop_tasks: int) -> dict:
    from distributed import Client

    from georsic.cluster import local_cluster

    rows = {}
    with local_cluster(workers, None, host="127.0.0.1") as cluster, Client(cluster) as client:
        client.run(_warm)
        for _ in range(workers):  # every worker loads its codec before timing
            _timed_compress(warm, tmp / "warm.grsc", client, quality, tile, 1)
        for per_task in (1, None):
            row = _cluster_compress(raster, tmp / f"w{workers}k{per_task}.grsc", client,
                                    quality, tile, per_task, workers)
            row["overhead_s"] = _overhead(client, noop_tasks)
            row["peak_mib"] = sorted(client.run(_peak_mib).values())
            rows[f"{workers} worker(s) x 1 thread, K={row['k']}"] = row
    return rows


def run(size: int, quality: float, tile: int, noop_tasks: int) -> dict:
    from georsic.bench.memory import synthetic_raster

    rows: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raster = tmp / "synthetic.tif"
        synthetic_raster(raster, size)
        warm = tmp / "warm.tif"
        synthetic_raster(warm, 256)
        _timed_compress(warm, tmp / "warm.grsc", None, quality, tile)
        rows["in-process (1 thread)"] = _timed_compress(raster, tmp / "p.grsc", None,
                                                        quality, tile)
        rows["in-process (1 thread)"]["peak_mib"] = [_peak_mib()]
        for workers in (1, 2):
            rows.update(_cluster_rows(tmp, raster, warm, workers, quality, tile, noop_tasks))
    return rows


def _row_line(name: str, row: dict, base: dict) -> str:
    overhead = f"{row['overhead_s'] * 1000:.2f} ms" if "overhead_s" in row else "-"
    per_task = (f"{row['task_overhead_s'] * 1000:.0f} ms ({row['tasks']} tasks)"
                if "task_overhead_s" in row else "-")
    peaks = ", ".join(f"{p:.0f}" for p in row["peak_mib"])
    return (f"| {name} | {row['seconds']:.2f} | {row['mp_s']:.3f} | "
            f"{base['seconds'] / row['seconds']:.2f} | {peaks} | {overhead} | {per_task} | "
            f"{row['sha']} |")


def report(rows: dict, size: int, quality: float, tile: int, load: str, command: str) -> str:
    single = rows["in-process (1 thread)"]
    ones = [name for name in rows if name.startswith("1 worker")]
    twos = [name for name in rows if name.startswith("2 worker")]
    per_tile = single["seconds"] / single["tiles"]
    lines = [
        "# georsic bench scale",
        "",
        f"Command: `{command}`",
        f"Raster: synthetic {size} x {size} RGB uint8, tile {tile}, quality {quality:g}, "
        f"{single['tiles']} tiles; K = tiles per task; load average before: {load}.",
        "",
        "| run | seconds | MP/s | speed-up vs 1 worker (same K; in-process: vs K=1) | "
        "peak RSS per worker (MiB) | scheduler s/no-op task | overhead per task (slot time "
        "not computing) | archive sha256 |",
        "|---|---|---|---|---|---|---|---|",
        _row_line("in-process (1 thread)", single, rows[ones[0]]),
    ]
    for one, two in zip(ones, twos, strict=True):
        lines += [_row_line(one, rows[one], rows[one]), _row_line(two, rows[two], rows[one])]
    identical = len({row["sha"] for row in rows.values()}) == 1
    lines += ["", f"- Tile coding time (in-process, one thread): {per_tile:.3f} s per tile."]
    for name in ones + twos:
        row = rows[name]
        lines.append(f"- {name}: overhead {row['task_overhead_s'] * 1000:.0f} ms a task = "
                     f"{row['task_overhead_s'] * 1000 / row['k']:.0f} ms a tile = "
                     f"{100 * row['task_overhead_s'] / (row['k'] * per_tile):.1f} % of a "
                     f"tile's coding time; workers computing {row['compute_s']:.2f} s.")
    for one, two in zip(ones, twos, strict=True):
        lines.append(f"- {two} / {one}: {rows[one]['seconds'] / rows[two]['seconds']:.2f}x "
                     "(target 1.8x).")
    lines.append(f"- Archives byte-identical across all runs: {'yes' if identical else 'NO'}.")
    return "\n".join(lines) + "\n"


def check(args) -> None:
    """The arguments, before any cluster starts or raster is generated."""
    from georsic.bench import args as checks
    from georsic.errors import OutputError
    from georsic.sampling import checked_quality
    from georsic.tiling import TileGrid

    checks.positive(args.size, "--size")
    checks.positive(args.noop_tasks, "--noop-tasks")
    TileGrid.check(args.tile_size, 0)
    checked_quality(args.quality)
    if args.out:
        try:  # the default's folder (benchmarks/results) is made when missing, as before
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"--out {args.out}: cannot make its folder: {exc.strerror}") \
                from None
        checks.output_file(args.out, "--out")


def main(args) -> int:
    check(args)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = run(args.size, args.quality, args.tile_size, args.noop_tasks)
    command = "georsic bench scale " + " ".join(sys.argv[3:])
    text = report(rows, args.size, args.quality, args.tile_size, load, command.strip())
    text += f"- Load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}.\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("scale", help="throughput on 1 and 2 local Dask workers against one "
                                     "process, scheduler overhead, peak memory per worker")
    p.add_argument("--size", type=int, default=1024, help="raster edge, pixels (1024)")
    p.add_argument("--quality", type=float, default=3.0)
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--noop-tasks", type=int, default=300,
                   help="no-op tasks timed for the scheduler's cost per task")
    p.add_argument("--out", default="benchmarks/results/scale.md")
    p.set_defaults(func=main)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="what", required=True))
    parsed = parser.parse_args()
    sys.exit(parsed.func(parsed))
