"""Fuzzing the archive reader (``georsic bench fuzz``).

A small archive (a 96x80 crop of a real image, four 64-pixel tiles) is damaged in many ways:
bit flips, runs of bytes overwritten, truncation, insertion, two chunks swapped, and crafted
header fields (checksums made valid again). Each damaged archive must either fail with the
archive's own error (:class:`~georsic.errors.ArchiveError`, a tile named where it is a tile)
or decode to exactly the pixels of the intact archive: never another exception, never a
hang, never a wrong pixel without an error. Crafted headers whose checksums hold may decode to
other pixels (a changed quality is a valid archive); for them only the first two rules hold.
Read with recovery (``decompress --ignore-errors``), every tile not reported lost must come
back exactly.

The same mutations and checks run, a few hundred cases with a fixed seed, in
``tests/test_fuzz.py`` (with hypothesis choosing them); this command runs as many as asked
with numpy's seeded generator and prints a markdown summary (``benchmarks/results/fuzz.md``).
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from georsic.archive import ArchiveReader

KINDS = ("flip", "run", "truncate", "insert", "swap", "craft")
#: Values a crafted header field takes.
CRAFTED_VALUES = (None, True, 0, -1, 1, 3, 7, 2**40, -(2**63), 0.5, float("1e308"), "", "x",
                  "nan", [], [0], [0, 1, 2], [[0, 1, 2]], {}, {"a": 1})


class FuzzFailure(AssertionError):
    """A damaged archive gave another exception, or wrong pixels without an error."""


@dataclass(frozen=True)
class Sample:
    """The intact archive a fuzz run damages, and what it decodes to."""

    data: bytes
    pixels: np.ndarray
    header: dict
    tiles: list[bytes]


def make_sample(raster: str | Path, folder: Path) -> Sample:
    """Compress a 96x80 crop of ``raster`` into four 64-pixel tiles; decode it once."""
    import rasterio
    from rasterio.windows import Window

    import georsic

    window = Window(0, 0, 96, 80)
    with rasterio.open(raster) as src:
        profile = src.profile | {"width": 96, "height": 80, "tiled": False,
                                 "transform": src.window_transform(window)}
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        with rasterio.open(folder / "crop.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
    georsic.compress(folder / "crop.tif", folder / "intact.grsc", quality=2, tile_size=64,
                     overlap=16, device="cpu", overwrite=True)
    with georsic.open(folder / "intact.grsc") as archive:
        pixels = archive.read(device="cpu")
    with ArchiveReader(folder / "intact.grsc") as reader:
        header = reader.header
        tiles = [reader.read_tile(i) for i in range(reader.tile_count)]
    return Sample((folder / "intact.grsc").read_bytes(), pixels, header, tiles)


# ---- mutations (pure functions of the bytes and their parameters)

def flip(data: bytes, pos: int, bit: int) -> bytes:
    out = bytearray(data)
    out[pos % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def overwrite(data: bytes, pos: int, run: bytes) -> bytes:
    pos %= len(data)
    return data[:pos] + run[:len(data) - pos] + data[pos + len(run):]


def truncate(data: bytes, keep: int) -> bytes:
    return data[:keep % len(data)]


def insert(data: bytes, pos: int, blob: bytes) -> bytes:
    pos %= len(data) + 1
    return data[:pos] + blob + data[pos:]


def swap(data: bytes, a: int, b: int, size: int) -> bytes:
    """Two disjoint chunks of ``size`` bytes (starting near ``a`` and ``b``) swapped."""
    size = max(1, min(size, len(data) // 2))
    if len(data) < 2 * size:
        return data
    a %= len(data) - 2 * size + 1
    b = a + size + b % (len(data) - a - 2 * size + 1)
    return (data[:a] + data[b:b + size] + data[a + size:b] + data[a:a + size]
            + data[b + size:])


def header_paths(header, prefix: tuple = ()) -> list[tuple]:
    """Every key path (and list index) in a header, leaves and containers alike."""
    paths = [prefix] if prefix else []
    if isinstance(header, dict):
        for key, value in header.items():
            paths += header_paths(value, prefix + (key,))
    elif isinstance(header, list):
        for index, value in enumerate(header):
            paths += header_paths(value, prefix + (index,))
    return paths


def craft(sample: Sample, path_index: int, value, folder: Path) -> bytes:
    """The sample with one header field (the ``path_index``-th of :func:`header_paths`) set to
    ``value``, or deleted when ``value`` is the string ``"<delete>"``; checksums valid."""
    import copy

    from georsic.archive import ArchiveWriter

    header = copy.deepcopy(sample.header)
    paths = header_paths(header)
    path = paths[path_index % len(paths)]
    parent = header
    for key in path[:-1]:
        parent = parent[key]
    if value == "<delete>":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    target = folder / "crafted.grsc"
    with ArchiveWriter(target, header) as writer:
        for tile in sample.tiles:
            writer.add_tile(tile)
    return target.read_bytes()


# ---- the checks

def check(data: bytes, sample: Sample, folder: Path, *, crafted: bool = False,
          decompress: bool = False) -> str:
    """Open, verify and decode a damaged archive: ``"rejected"`` (an ArchiveError) or
    ``"intact"`` (the intact pixels); a :class:`FuzzFailure` for anything else."""
    import georsic
    from georsic.errors import ArchiveError, GeorsicError

    path = folder / "damaged.grsc"
    path.write_bytes(data)
    try:
        with georsic.open(path) as archive:
            problems = archive.verify()
            if any(not isinstance(p, GeorsicError) for p in problems):
                raise FuzzFailure(f"verify returned {problems!r}")
            if decompress:
                out = folder / "damaged.tif"
                georsic.decompress(path, out, device="cpu", overwrite=True, overviews="none")
                import rasterio

                with rasterio.open(out) as src:
                    pixels = src.read()
            else:
                pixels = archive.read(device="cpu")
    except ArchiveError:
        return "rejected"
    except GeorsicError as exc:
        if crafted:  # e.g. weights the crafted header names are not installed
            return "rejected"
        raise FuzzFailure(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - exactly what the fuzzer looks for
        raise FuzzFailure(f"{type(exc).__name__}: {exc}") from exc
    if problems and not crafted:
        raise FuzzFailure(f"verify found {problems[0]} but the archive decoded")
    if crafted or np.array_equal(pixels, sample.pixels):
        return "intact"
    raise FuzzFailure("decoded to other pixels without an error")


def check_recovery(data: bytes, sample: Sample, folder: Path) -> str:
    """Read a damaged archive as ``decompress --ignore-errors`` does: every tile not reported
    lost must give the intact pixels in its cell (where it and the tiles it blends with, above
    and to the left, all survived)."""
    import georsic
    from georsic.errors import ArchiveError, GeorsicError

    path = folder / "damaged.grsc"
    path.write_bytes(data)
    try:
        with georsic.open(path, recover=True) as archive:
            lost: list[int] = []
            out = np.zeros_like(sample.pixels)
            for block, values, invalid in archive.blocks(device="cpu", ignore_errors=True,
                                                         lost=lost):
                y, x = int(block.row_off), int(block.col_off)
                out[:, y:y + int(block.height), x:x + int(block.width)] = \
                    archive.finalize(values, invalid)
            grid = archive.grid
    except ArchiveError:
        return "rejected"
    except GeorsicError as exc:
        raise FuzzFailure(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        raise FuzzFailure(f"{type(exc).__name__}: {exc}") from exc
    for tile in grid:
        near = {tile.index, tile.index - 1, tile.index - grid.cols, tile.index - grid.cols - 1}
        if tile.index in lost or near & set(lost):
            continue
        cell = grid.cell(tile)
        rows = slice(int(cell.row_off), int(cell.row_off + cell.height))
        cols = slice(int(cell.col_off), int(cell.col_off + cell.width))
        if not np.array_equal(out[:, rows, cols], sample.pixels[:, rows, cols]):
            raise FuzzFailure(f"tile {tile.index} was not reported lost but decoded wrong")
    return "recovered" if lost else "intact"


def random_case(sample: Sample, rng: np.random.Generator, folder: Path) -> tuple[str, bytes]:
    """One mutation chosen by ``rng``: (kind, damaged bytes)."""
    data, size = sample.data, len(sample.data)
    kind = KINDS[int(rng.integers(len(KINDS)))]
    if kind == "flip":
        return kind, flip(data, int(rng.integers(size)), int(rng.integers(8)))
    if kind == "run":
        run = bytes([int(rng.integers(256))]) * int(rng.integers(1, 64)) if rng.random() < 0.5 \
            else rng.bytes(int(rng.integers(1, 64)))
        return kind, overwrite(data, int(rng.integers(size)), run)
    if kind == "truncate":
        return kind, truncate(data, int(rng.integers(size)))
    if kind == "insert":
        return kind, insert(data, int(rng.integers(size + 1)), rng.bytes(int(rng.integers(1, 40))))
    if kind == "swap":
        return kind, swap(data, int(rng.integers(size)), int(rng.integers(size)),
                          int(rng.integers(1, 200)))
    value = CRAFTED_VALUES[int(rng.integers(len(CRAFTED_VALUES)))] if rng.random() < 0.9 \
        else "<delete>"
    return kind, craft(sample, int(rng.integers(10_000)), value, folder)


def run(cases: int, seed: int, raster: str | Path) -> dict:
    """``cases`` random damaged archives, each checked plainly and with recovery."""
    rng = np.random.default_rng(seed)
    outcomes: Counter = Counter()
    failures: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sample = make_sample(raster, folder)
        for number in range(cases):
            kind, data = random_case(sample, rng, folder)
            try:
                outcomes[(kind, check(data, sample, folder, crafted=kind == "craft"))] += 1
                if kind != "craft":
                    outcomes[(kind, "recovery " + check_recovery(data, sample, folder))] += 1
            except FuzzFailure as exc:
                failures.append(f"case {number} ({kind}): {exc}")
    return {"cases": cases, "seed": seed, "outcomes": outcomes, "failures": failures,
            "seconds": time.perf_counter() - started, "archive_bytes": len(sample.data)}


def markdown(result: dict, command: str) -> str:
    rows = ["| mutation | outcome | cases |", "|---|---|---|"]
    for (kind, outcome), count in sorted(result["outcomes"].items()):
        rows.append(f"| {kind} | {outcome} | {count} |")
    lines = [
        f"`{command}`", "",
        f"{result['cases']} damaged archives (seed {result['seed']}, from a "
        f"{result['archive_bytes']}-byte archive of four 64-pixel tiles), "
        f"{result['seconds']:.0f} s: **{len(result['failures'])} failures** (another "
        "exception, a hang, or wrong pixels without an error).", "", *rows, ""]
    lines += [f"- {failure}" for failure in result["failures"]]
    return "\n".join(lines) + "\n"


def main(args) -> int:
    from georsic.bench import args as checks

    checks.positive(args.cases, "--cases")
    checks.raster(args.raster, "--raster")
    checks.output_file(args.out, "--out")
    result = run(args.cases, args.seed, args.raster)
    text = markdown(result, f"georsic bench fuzz --cases {args.cases} --seed {args.seed}")
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 1 if result["failures"] else 0


def add_parser(subparsers) -> None:
    default = Path(__file__).resolve().parents[3] / "tests" / "data" / "osbs_aerial_rgb.tif"
    p = subparsers.add_parser("fuzz", help="damage a small archive in N ways: every case must "
                                           "fail cleanly or decode exactly")
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--raster", default=str(default),
                   help="raster whose top-left 96x80 pixels are compressed (default: the "
                        "NEON aerial test image)")
    p.add_argument("--out", help="also write the markdown summary here")
    p.set_defaults(func=main)
