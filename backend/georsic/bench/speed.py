"""Whole-pipeline speed against raster size (``georsic bench speed``).

For each size an aerial GeoTIFF is assembled from the held-out aerial images
(:data:`georsic.bench.images.AERIAL_RGB`, mirrored to fill the size, so that every pixel is real
aerial texture), then ``georsic.compress`` and ``georsic.decompress`` are timed on it at each
quality: reading, band mapping, tiling, coding, blending and GeoTIFF writing all count.  AVIF
(speed 6) and JPEG XL (effort 7) encode and decode the same pixels in the same run
(imagecodecs, all cores).  ``--profile`` adds where the time goes (cProfile of one run with
one thread, by pipeline stage), and ``--bd`` the BD-rate of the default model's entropy path
against another model's on the held-out images (``--bd-against``, default the float64 path's
``elic-vr-s-v4``).  ``--exact`` times exact archives (``compress(..., exact=True)``: the same
pixels on every machine, a digest per tile) beside the default ones in the same run, and with
``--bd`` gives the BD-rate of exact archives against the default ones of the same model.

    georsic bench speed --out benchmarks/results/speed.md

Time nothing while other work shares the CPU: the table records the load average.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DATA = Path(__file__).resolve().parents[3] / "benchmarks" / "data"

#: Pipeline stages of ``--profile`` and the functions whose cumulative time each one takes.
STAGES = {
    "read raster": [("rasterio", "read")],
    "band mapping": [("bandmap.py", "encode"), ("bandmap.py", "decode"),
                     ("source.py", "band_mapping"), ("source.py", "validity"),
                     ("masks.py", "encode_mask"), ("masks.py", "decode_mask")],
    "g_a (analysis)": [("elic.py", "compress")],
    "entropy parameters": [("exact.py", "forward"), ("exact.py", "_indexes"),
                           ("exact.py", "_unembed"), ("exact.py", "_embed")],
    "rANS": [("streams.py", "encode"), ("streams.py", "decode"), ("streams.py", "flush")],
    "g_s (synthesis)": [("elic.py", "decompress")],
    "blending": [("tiling.py", "blend")],
    "GeoTIFF writing": [("rasterio", "write"), ("rasterio", "write_mask"),
                        ("rasterio", "build_overviews"), ("rasterio", "close")],
}


def aerial_mosaic(megapixels: float) -> np.ndarray:
    """(H, W, 3) uint8 of about ``megapixels``: the held-out aerial images side by side,
    mirrored to fill the square."""
    from georsic.bench.images import AERIAL_RGB, load_image

    tiles = [load_image(BENCH_DATA / name).rgb for name in AERIAL_RGB]
    side = int(math.sqrt(megapixels * 1e6))
    height = min(t.shape[0] for t in tiles)
    strip = np.concatenate([t[:height] for t in tiles], axis=1)
    reps = (-(-side // strip.shape[0]), -(-side // strip.shape[1]))
    rows = [np.concatenate([strip if (i + j) % 2 == 0 else strip[:, ::-1]
                            for j in range(reps[1])], axis=1) for i in range(reps[0])]
    rows = [r if i % 2 == 0 else r[::-1] for i, r in enumerate(rows)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:side, :side])


def write_raster(rgb: np.ndarray, path: Path) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    h, w = rgb.shape[:2]
    profile = {"driver": "GTiff", "width": w, "height": h, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32617", "transform": from_origin(400000, 3300000, 0.1, 0.1),
               "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
               "photometric": "RGB"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rgb.transpose(2, 0, 1))
    return path


def time_georsic(raster: Path, workdir: Path, quality: float, threads: int | None,
                 **options) -> dict:
    import georsic

    archive, restored = workdir / "a.grsc", workdir / "r.tif"
    started = time.perf_counter()
    summary = georsic.compress(raster, archive, quality=quality, overwrite=True,
                               threads=threads, **options)
    encode = time.perf_counter() - started
    started = time.perf_counter()
    georsic.decompress(archive, restored, overwrite=True, threads=threads)
    decode = time.perf_counter() - started
    pixels = summary.width * summary.height
    return {"encode_s": encode, "decode_s": decode, "encode_mps": pixels / encode / 1e6,
            "decode_mps": pixels / decode / 1e6, "bpp": summary.bpp, "tiles": summary.tiles,
            "pixels": pixels}


def time_georsic_repeated(raster: Path, workdir: Path, quality: float, threads: int | None,
                          repeat: int = 1, **options) -> dict:
    """:func:`time_georsic` ``repeat`` times: the median seconds (and the MP/s from them), the
    slowest and fastest MP/s, and every run's seconds."""
    runs = [time_georsic(raster, workdir, quality, threads, **options)
            for _ in range(max(repeat, 1))]
    pixels = runs[0]["pixels"]
    out = {"bpp": runs[0]["bpp"], "tiles": runs[0]["tiles"], "pixels": pixels, "runs": len(runs)}
    for way in ("encode", "decode"):
        seconds = sorted(r[f"{way}_s"] for r in runs)
        out[f"{way}_s"] = float(np.median(seconds))
        out[f"{way}_mps"] = pixels / out[f"{way}_s"] / 1e6
        out[f"{way}_mps_range"] = [pixels / seconds[-1] / 1e6, pixels / seconds[0] / 1e6]
        out[f"{way}_runs_s"] = [r[f"{way}_s"] for r in runs]
    return out


def time_classical(rgb: np.ndarray) -> dict:
    """AVIF and JPEG XL on the same pixels, at settings near 0.3 bpp on aerial images."""
    try:
        import imagecodecs
    except ImportError:
        return {}
    threads = os.cpu_count() or 1
    runs = {
        "avif (speed 6)": (lambda: imagecodecs.avif_encode(rgb, level=30, speed=6,
                                                           numthreads=threads),
                           lambda b: imagecodecs.avif_decode(b, numthreads=threads)),
        "jpegxl (effort 7)": (lambda: imagecodecs.jpegxl_encode(rgb, effort=7, distance=3.0,
                                                                numthreads=threads),
                              lambda b: imagecodecs.jpegxl_decode(b, numthreads=threads)),
    }
    pixels = rgb.shape[0] * rgb.shape[1]
    out = {}
    for name, (encode, decode) in runs.items():
        started = time.perf_counter()
        data = encode()
        encode_s = time.perf_counter() - started
        started = time.perf_counter()
        decode(data)
        decode_s = time.perf_counter() - started
        out[name] = {"encode_mps": pixels / encode_s / 1e6, "decode_mps": pixels / decode_s / 1e6,
                     "bpp": 8 * len(data) / pixels}
    return out


def _matches(key: tuple, wanted: tuple[str, str]) -> bool:
    """A cProfile key (file, line, name) is ``wanted`` (a file part, a function name); methods
    of extension types show as ``~`` with ``<method 'read' of 'rasterio._io...' objects>``."""
    file, _, name = key
    where, function = wanted
    if file == "~":
        return name.startswith(f"<method '{function}' of '{where}")
    return where in file and name == function


def profile_stages(raster: Path, workdir: Path, quality: float, model: str | None = None
                   ) -> dict:
    """Seconds per pipeline stage of one compress and one decompress, one thread, inline."""
    import georsic

    result = {}
    for action in ("compress", "decompress"):
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        if action == "compress":
            georsic.compress(raster, workdir / "p.grsc", quality=quality, overwrite=True,
                             threads=1, model=model)
        else:
            georsic.decompress(workdir / "p.grsc", workdir / "p.tif", overwrite=True, threads=1)
        profiler.disable()
        total = time.perf_counter() - started
        stats = pstats.Stats(profiler).stats
        stages = {}
        for stage, keys in STAGES.items():
            seconds = 0.0
            for key, (_, _, _, cumulative, callers) in stats.items():
                if not any(_matches(key, k) for k in keys):
                    continue
                # count a function once: not when it is called from itself or a stage function
                inner = any(any(_matches(c, k) for k in keys) for c in callers)
                if not inner:
                    seconds += cumulative
            stages[stage] = seconds
        if action == "compress":
            stages["g_a (analysis)"] -= stages["entropy parameters"] + stages["rANS"]
        else:
            stages["g_s (synthesis)"] -= stages["entropy parameters"] + stages["rANS"]
        stages["other"] = total - sum(stages.values())
        result[action] = {"total_s": total, "stages": stages}
    return result


def bd_change(against: str, qualities: tuple[float, ...] = (0, 1, 2, 3, 4, 5, 6, 7),
              exact: bool = False, model: str | None = None) -> dict:
    """BD-rate (PSNR, per held-out image, and mean) of ``model`` (default: the default model)
    against ``against``, from real archives; ``exact``: of ``model``'s exact archives against
    ``against``'s default ones (``against`` ``None``: ``model``'s own)."""
    import georsic
    from georsic.bench.bdrate import bd_rate
    from georsic.bench.images import AERIAL_RGB, load_image, write_geotiff
    from georsic.weights import default_model_id

    ours = model or default_model_id()
    against = against or ours
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in AERIAL_RGB:
            image = load_image(BENCH_DATA / name)
            src = write_geotiff(image, Path(tmp) / "src.tif")
            curves = {}
            ways = {"ours": (ours, exact), "against": (against, False)}
            for way, (model, exact_way) in ways.items():
                rates, psnrs = [], []
                for q in qualities:
                    summary = georsic.compress(src, Path(tmp) / "a.grsc", quality=q, model=model,
                                               overwrite=True, exact=exact_way)
                    with georsic.open(summary.path) as archive:
                        decoded = archive.read().transpose(1, 2, 0).astype(np.float64)
                    mse = np.mean((decoded - image.rgb) ** 2)
                    rates.append(summary.bpp)
                    psnrs.append(10 * math.log10(255**2 / mse))
                curves[way] = (rates, psnrs)
            rows[name] = bd_rate(*curves["against"], *curves["ours"])  # in percent
    rows["mean"] = float(np.mean(list(rows.values())))
    if exact:
        return {"model": f"{ours} exact archives", "against": f"{against} default archives",
                "bd_rate_pct": rows}
    return {"model": ours, "against": against, "bd_rate_pct": rows}


def cpu_description() -> str:
    """The CPU the figures come from: its name, family and model, and the vector units that
    decide float32 throughput (machines of one name differ: AMD EPYC family 23 (Zen 1/2) runs
    the transforms at about half the speed of family 25 (Zen 3) here)."""
    import platform

    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if key.strip() == "flags":
                    break
    except OSError:
        return platform.processor() or platform.machine()
    units = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
             if f in fields.get("flags", "").split()]
    name = fields.get("model name", platform.machine())
    return (f"{name} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')}"
            f"; {' '.join(units) or 'no AVX2'})")


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def run(sizes: list[float], qualities: list[float], threads: int | None, profile: bool,
        bd: bool, against: str | None, repeat: int = 1, exact: bool = False,
        model: str | None = None, baseline: str | None = None) -> dict:
    """The speed table's figures for ``model`` (default: the default model); ``baseline``, a
    model timed in the same runs (its default archives), for a comparison on one machine."""
    from georsic.codec import resolve_device
    from georsic.models.runtime import cpu_transforms_description
    from georsic.weights import default_model_id

    model = model or default_model_id()
    results = {"model": model, **({"baseline": baseline} if baseline else {}),
               "threads": threads or os.cpu_count(),
               "cores": os.cpu_count(), "cpu": cpu_description(),
               "device": resolve_device("auto"), "transforms": cpu_transforms_description(),
               "repeat": max(repeat, 1), "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # loading the weights (once per process and thread) is timed apart: a one-tile raster
        # (its tile coded on every thread) and the same in small tiles (one a thread)
        started = time.perf_counter()
        warm = write_raster(aerial_mosaic(0.05), workdir / "warm.tif")
        time_georsic(warm, workdir, 3.0, threads, model=model)
        time_georsic(warm, workdir, 3.0, threads, tile_size=128, model=model)
        if exact:
            time_georsic(warm, workdir, 3.0, threads, exact=True, model=model)
        if baseline:
            time_georsic(warm, workdir, 3.0, threads, model=baseline)
        results["warm_up_s"] = time.perf_counter() - started
        for megapixels in sizes:
            rgb = aerial_mosaic(megapixels)
            raster = write_raster(rgb, workdir / "src.tif")
            row = {"megapixels": rgb.shape[0] * rgb.shape[1] / 1e6,
                   "size": f"{rgb.shape[1]}x{rgb.shape[0]}", "load_before": _load(),
                   "georsic": {}}
            for q in qualities:
                if baseline:
                    row.setdefault("baseline", {})[str(q)] = time_georsic_repeated(
                        raster, workdir, q, threads, repeat, model=baseline)
                row["georsic"][str(q)] = time_georsic_repeated(raster, workdir, q, threads,
                                                               repeat, model=model)
                if exact:
                    row.setdefault("georsic_exact", {})[str(q)] = time_georsic_repeated(
                        raster, workdir, q, threads, repeat, exact=True, model=model)
            row["classical"] = time_classical(rgb)
            row["load_after"] = _load()
            results["sizes"].append(row)
            print(json.dumps(row), flush=True)
        if profile:
            rgb = aerial_mosaic(min(max(sizes), 4.0))
            raster = write_raster(rgb, workdir / "src.tif")
            results["profile"] = {"size": f"{rgb.shape[1]}x{rgb.shape[0]}", "quality": 3.0,
                                  "load_before": _load(),
                                  **profile_stages(raster, workdir, 3.0, model),
                                  "load_after": _load()}
    if bd:
        results["bd"] = bd_change(against, exact=exact, model=model)
    return results


def markdown(results: dict, command: str) -> str:
    lines = [f"# Whole-pipeline speed ({results['model']})", "",
             f"`{command}`", "",
             f"{results['cores']} CPU cores ({results.get('cpu', 'CPU not recorded')}), "
             f"codec on {results.get('device', 'cpu')} (transforms: "
             f"{results.get('transforms', 'not recorded')}), "
             f"{results['threads']} tiles at a time, one torch "
             "thread each (a raster of fewer tiles: its tiles share the threads); MP/s = "
             "megapixels of the raster / wall seconds of "
             "`georsic.compress` or `georsic.decompress` (GeoTIFF in, archive, GeoTIFF out), "
             f"after a warm-up that loads the weights ({results['warm_up_s']:.1f} s for a "
             "0.05 MP raster in one tile, then in 128-px tiles)."]
    repeat = results.get("repeat", 1)
    if repeat > 1:
        lines[-1] += (f"  Each figure is the median of {repeat} runs, the slowest and fastest "
                      "in brackets (the first run of a raster size pays for its new shapes).")
    lines += ["", "| raster | MP | quality | archive | bpp | compress MP/s | decompress MP/s "
              "| load avg |", "|---|---|---|---|---|---|---|---|"]

    def cell(r: dict, way: str) -> str:
        text = f"{r[f'{way}_mps']:.3f}"
        if r.get("runs", 1) > 1:
            low, high = r[f"{way}_mps_range"]
            text += f" ({low:.2f}-{high:.2f})"
        return text

    for row in results["sizes"]:
        for q, r in row["georsic"].items():
            kinds = [("default", r)]
            if q in row.get("baseline", {}):
                kinds.insert(0, (f"{results['baseline']} default", row["baseline"][q]))
            if q in row.get("georsic_exact", {}):
                kinds.append(("exact", row["georsic_exact"][q]))
            for kind, k in kinds:
                lines.append(f"| {row['size']} | {row['megapixels']:.2f} | {q} | {kind} | "
                             f"{k['bpp']:.4f} | {cell(k, 'encode')} | {cell(k, 'decode')} | "
                             f"{row['load_before']} |")
    lines += ["", "Classical codecs on the same pixels (imagecodecs, all cores):", "",
              "| raster | codec | bpp | encode MP/s | decode MP/s |", "|---|---|---|---|---|"]
    for row in results["sizes"]:
        for name, r in row["classical"].items():
            lines.append(f"| {row['size']} | {name} | {r['bpp']:.3f} | {r['encode_mps']:.2f} | "
                         f"{r['decode_mps']:.2f} |")
    if "profile" in results:
        p = results["profile"]
        lines += ["", f"## Where the time goes ({p['size']}, quality {p['quality']}, one thread, "
                  f"tiles inline; load {p['load_before']})", "",
                  "| stage | compress s | share | decompress s | share |", "|---|---|---|---|---|"]
        c, d = p["compress"], p["decompress"]
        for stage in c["stages"]:
            cs, ds = c["stages"][stage], d["stages"][stage]
            lines.append(f"| {stage} | {cs:.3f} | {cs / c['total_s']:.0%} | {ds:.3f} | "
                         f"{ds / d['total_s']:.0%} |")
        lines.append(f"| total | {c['total_s']:.2f} | | {d['total_s']:.2f} | |")
    if "bd" in results:
        b = results["bd"]
        lines += ["", f"## BD-rate of {b['model']} against {b['against']} (PSNR, qualities 0-7, "
                  "real archives; negative: fewer bits)", "", "| image | BD-rate |", "|---|---|"]
        lines += [f"| {k} | {v:+.2f} % |" for k, v in b["bd_rate_pct"].items()]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    against = args.bd_against
    if against is None and not args.exact:
        against = "elic-vr-s-v4"
    results = run(args.sizes, args.qualities, args.threads, args.profile, args.bd,
                  against, args.repeat, args.exact, args.model, args.baseline)
    text = markdown(results, "georsic " + " ".join(sys.argv[1:]))
    print(text)
    if args.out:
        out = Path(args.out)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("speed", help="whole-pipeline MP/s against raster size, with "
                              "AVIF and JPEG XL on the same pixels")
    p.add_argument("--sizes", type=float, nargs="+", default=[0.5, 2.0, 4.0, 16.0],
                   help="raster sizes in megapixels (default 0.5 2 4 16)")
    p.add_argument("--qualities", type=float, nargs="+", default=[1.0, 3.0, 5.0])
    p.add_argument("--threads", type=int, default=None,
                   help="tiles coded at once (default one per core)")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per raster and quality: the table gives their median and range")
    p.add_argument("--profile", action="store_true", help="add the time per pipeline stage")
    p.add_argument("--model", help="the model timed (default: the default model)")
    p.add_argument("--baseline", metavar="MODEL",
                   help="also time this model's default archives in the same runs")
    p.add_argument("--bd", action="store_true",
                   help="add the BD-rate of the model against --bd-against")
    p.add_argument("--bd-against", default=None, metavar="MODEL",
                   help="default elic-vr-s-v4; with --exact: the model's own default archives")
    p.add_argument("--exact", action="store_true",
                   help="time exact archives too (and with --bd: their BD-rate against the "
                   "default ones)")
    p.add_argument("--out", help="write the markdown table here (and .json beside it)")
    p.set_defaults(func=lambda args: main(args))
