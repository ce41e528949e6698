"""Rate-distortion benchmark (``georsic bench rd``, ``benchmarks/rd.py``).

On remote-sensing images held out from training, measures bits per pixel against PSNR and
MS-SSIM for GeoRSIC and for the classical codecs a GIS analyst would use instead (JPEG, WebP,
JPEG 2000, JPEG-XL, AVIF; see :mod:`georsic.bench.classical`), computes the BD-rate of GeoRSIC
against each, and writes ``rd.md`` (tables), ``rd.png`` (RD curves) and ``rd.json`` (every
measured point) to the output folder. It also times encoding and decoding (megapixels per
second) on the CPU, and on a CUDA GPU when there is one.

Protocol (that of ``ANCHORS.md``): every codec, GeoRSIC included, is given the same 8-bit RGB
pixels (8-bit RGB as is; other rasters mapped to 8 bit by their 0.5-99.5 percentiles, a
single band repeated to 3 channels). For GeoRSIC these pixels are written to an uncompressed
GeoTIFF (with the source's CRS and geotransform, without no-data) which is what
:func:`georsic.compress` is given. PSNR is over all RGB values together; bpp counts the whole
compressed stream (GeoRSIC: the whole ``.grsc`` archive, header included) over the pixels.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rasterio.errors import NotGeoreferencedWarning

from georsic.bench import bdrate
from georsic.bench.classical import (
    CODESTREAM_KEYS,
    GDAL_FILE_KEYS,
    ClassicalCodec,
    build_codecs,
    evaluate,
    sweep,
    time_point,
    unavailable_codecs,
)
from georsic.bench.images import BenchImage, expand_image_args, load_image, read_rgb8, write_geotiff
from georsic.bench.metrics import ms_ssim_db
from georsic.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE

GEORSIC = "georsic"
#: bpp window of the target (BD-rate on PSNR over the anchor's qualities in this window).
WINDOW = (0.1, 0.5)
TARGET_PERCENT = -20.0
#: Rates at which PSNR is tabulated, as in ANCHORS.md.
REPORT_RATES = (0.1, 0.2, 0.3, 0.5, 0.8)
#: Codecs are timed at their sweep point nearest to this rate (log distance).
SPEED_RATE = 0.3
#: GDAL file curve -> the codestream curve made by the same library.
GDAL_PAIRS = {"gtiff-jpeg": "jpeg", "gtiff-webp": "webp", "gdal-jp2": "jpeg2000"}

_COLORS = {
    GEORSIC: "black", "jpeg": "tab:blue", "webp": "tab:orange", "jpeg2000": "tab:green",
    "jpegxl": "tab:red", "avif": "tab:purple", "gtiff-jpeg": "tab:blue",
    "gtiff-webp": "tab:orange", "gdal-jp2": "tab:green",
}


# ------------------------------------------------------------------------------ defaults


def repo_root() -> Path | None:
    """The source checkout this package lives in (editable install), if any."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "benchmarks").is_dir() and (root / "backend").is_dir() else None


def _default_dir(rel: str) -> Path:
    cwd = Path.cwd() / rel
    if cwd.parent.is_dir() and (Path.cwd() / "benchmarks").is_dir():
        return cwd
    root = repo_root()
    return root / rel if root else cwd


def default_images() -> Path:
    return _default_dir("benchmarks/data")


def default_out() -> Path:
    return _default_dir("benchmarks/results")


def parse_qualities(text: str | None, levels: int) -> list[float]:
    """``"0..7"`` (inclusive, step 1), ``"0,2.5,5"`` or a mix; None means every level."""
    if text is None:
        return [float(q) for q in range(levels)]
    out: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if ".." in part:
            a, b = (float(x) for x in part.split(".."))
            q = a
            while q <= b + 1e-9:
                out.append(round(q, 6))
                q += 1.0
        else:
            out.append(float(part))
    bad = [q for q in out if not 0 <= q <= levels - 1]
    if bad or not out:
        raise argparse.ArgumentTypeError(
            f"qualities must lie in [0, {levels - 1}], got {text!r}")
    return sorted(set(out))


# ------------------------------------------------------------------------------- GeoRSIC


def georsic_point(image: BenchImage, src: Path, workdir: Path, quality: float, device: str,
                  tile_size: int, overlap: int, model: str | None, refine: int = 0) -> dict:
    import georsic

    stem = Path(image.name).stem
    archive = workdir / f"{stem}.q{quality:g}.{device.replace(':', '')}.grsc"
    out = workdir / f"{stem}.q{quality:g}.{device.replace(':', '')}.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        t0 = time.perf_counter()
        georsic.compress(src, archive, quality=quality, tile_size=tile_size, overlap=overlap,
                         device=device, model=model, refine=refine, overwrite=True)
        t1 = time.perf_counter()
        georsic.decompress(archive, out, device=device, overwrite=True)
        t2 = time.perf_counter()
        decoded = read_rgb8(out)
    point = {"param": quality, **evaluate(decoded, image, archive.stat().st_size)}
    point["encode_s"] = t1 - t0
    point["decode_s"] = t2 - t1
    archive.unlink()
    out.unlink()
    return point


def warm_up(workdir: Path, device: str, model: str | None) -> None:
    """Load the weights once (cached per device), so that timings do not include it."""
    rng = np.random.default_rng(0)
    tiny = BenchImage("warmup.tif", workdir / "warmup.tif",
                      rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "uint8", 3, "")
    src = write_geotiff(tiny, workdir / "warmup.tif")
    georsic_point(tiny, src, workdir, 3.0, device, 512, 32, model)
    src.unlink()


def model_info(model: str | None) -> dict:
    try:
        from georsic.weights import find_model

        entry = find_model(model)
        return {"id": entry.id, "sha256": entry.sha256, "architecture": entry.architecture}
    except Exception as exc:  # noqa: BLE001 - informational only
        return {"id": model or "default", "error": str(exc)}


# ----------------------------------------------------------------------------- analysis


def _curve(points: list[dict], metric: str) -> tuple[list[float], list[float]]:
    rates, dists = [], []
    for p in points:
        v = p.get(metric)
        if metric == "ms_ssim_db":
            v = ms_ssim_db(p["ms_ssim"]) if p.get("ms_ssim") is not None else None
        if v is None or not math.isfinite(v):
            continue
        rates.append(p["bpp"])
        dists.append(v)
    return rates, dists


def _nan_to_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_nan_to_none(v) for v in x]
    return x


def bd_table(curves: dict[str, list[dict]], test: str = GEORSIC) -> dict[str, dict]:
    """BD figures of ``test`` against every other curve (and the classical envelope)."""
    out: dict[str, dict] = {}
    if test not in curves:
        return out
    tp = _curve(curves[test], "psnr")
    tm = _curve(curves[test], "ms_ssim_db")
    anchors = {k: v for k, v in curves.items() if k != test}
    envelope = [p for k in CODESTREAM_KEYS if k in curves for p in curves[k]]
    if envelope:
        anchors["envelope"] = envelope
    for key, points in anchors.items():
        ap = _curve(points, "psnr")
        am = _curve(points, "ms_ssim_db")
        window = bdrate.bd_rate_window(*ap, *tp, *WINDOW)
        out[key] = {
            "psnr_window": window.percent,
            "psnr_window_range": [window.rate_lo, window.rate_hi],
            "psnr_full": bdrate.bd_rate(*ap, *tp),
            "msssim_full": bdrate.bd_rate(*am, *tm),
            "bd_psnr_db": bdrate.bd_psnr(*ap, *tp),
        }
    return out


def best_classical(bd: dict[str, dict], field: str = "psnr_window") -> tuple[str, float]:
    """The codestream codec GeoRSIC saves least against (the hardest to beat)."""
    cands = [(bd[k][field], k) for k in CODESTREAM_KEYS
             if k in bd and math.isfinite(bd[k][field])]
    if not cands:
        return "", math.nan
    value, key = max(cands)
    return key, value


def target_summary(bd: dict[str, dict], images: Sequence[str]) -> dict:
    """BD-rate (PSNR, rate window) of GeoRSIC against the hardest codestream codec per image.

    On an image where the window BD-rate against some codestream codec is undefined (the
    curves do not overlap), the hardest codec is unknown: that image is left out of the mean
    and the target is "undetermined" rather than judged against the easier codecs only.
    """
    per_image: dict[str, tuple[str, float, list[str]]] = {}
    for name, table in bd.items():
        missing = [k for k in CODESTREAM_KEYS
                   if k in table and not math.isfinite(table[k]["psnr_window"])]
        key, value = best_classical(table)
        per_image[name] = (key, math.nan if missing else value, missing)
    values = [per_image[n][1] for n in images if n in per_image]
    finite = [v for v in values if math.isfinite(v)]
    mean = statistics.fmean(finite) if finite else math.nan
    if not values or len(finite) < len(values):
        status = "undetermined"
    else:
        status = "met" if mean <= TARGET_PERCENT else "not met"
    env = [bd[n]["envelope"]["psnr_window"] for n in images if n in bd and "envelope" in bd[n]]
    return {"per_image": per_image, "mean": mean, "determined": len(finite),
            "status": status, "envelope_mean": _mean(env)}


def pick_speed_point(points: list[dict], rate: float = SPEED_RATE) -> dict:
    return min(points, key=lambda p: abs(math.log(p["bpp"] / rate)) if p["bpp"] > 0 else 1e9)


def _is_rgb8(meta: dict) -> bool:
    return meta["source_dtype"] == "uint8" and meta["source_bands"] == 3


# ------------------------------------------------------------------------------- output


def _fmt(v, spec: str = ".2f", unit: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:{spec}}{unit}"


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else math.nan


def render_markdown(result: dict) -> str:
    meta = result["meta"]
    images = result["images"]
    names = [im["name"] for im in images]
    codecs = result["codecs"]
    curves = result["curves"]
    bd = result["bd"]
    rgb = [im["name"] for im in images if _is_rgb8(im)]
    unavailable = result.get("unavailable", {})
    lines = ["# Rate-distortion benchmark: GeoRSIC against classical codecs", ""]
    m = meta.get("model") or {}
    if meta.get("model"):
        run_georsic = (
            f"GeoRSIC {meta['georsic_version']}, model `{m.get('id', '-')}` (weights "
            f"{str(m.get('sha256', '-'))[:12]}), qualities {meta.get('qualities')}, tile "
            f"{meta.get('tile_size')} overlap {meta.get('overlap')}, encoder refinement "
            f"{meta.get('refine', 0)} steps, device "
            f"`{meta.get('device')}`"
            f"{', also timed on ' + meta['gpu'] if meta.get('gpu') else ''}.")
    else:
        run_georsic = "GeoRSIC itself was not run (classical codecs only)."
    lines.append(
        f"Run {meta['date']} on {meta['cpu_count']} CPU cores ({meta['machine']}), load "
        f"average {meta['loadavg_start']} at start, {meta['seconds']:.0f} s in all. "
        + run_georsic)
    if meta.get("command"):
        lines += ["", "Produced by (from the repository root):", "",
                  f"    {meta['command']}"]
    lines += ["", "| image | size | source | given to every codec as |", "|---|---|---|---|"]
    for im in images:
        lines.append(f"| {im['name']} | {im['width']}x{im['height']} | {im['source_bands']} x "
                     f"{im['source_dtype']} | {im['mapping']} |")
    lines.append("")

    if bd:
        lines += ["## Target", ""]
        target = target_summary(bd, rgb)
        status = target["status"]
        lines.append(
            f"BD-rate (PSNR, over the anchor's qualities at {WINDOW[0]}-{WINDOW[1]} bpp) of "
            f"GeoRSIC against the best classical codec on each 8-bit aerial RGB image, mean "
            f"over the {target['determined']} of {len(rgb)} image(s) where it is determined: "
            f"**{_fmt(target['mean'], '+.1f', ' %')}** (target <= {TARGET_PERCENT:.0f} %: "
            f"**{status}**). Against the envelope of all classical codecs (the best one at "
            f"each rate): {_fmt(target['envelope_mean'], '+.1f', ' %')}.")
        if status == "undetermined":
            lines += ["", "Undetermined: on some image GeoRSIC's PSNR range does not overlap "
                      "that of some classical codec inside the window, so the best codec "
                      "cannot be compared with; see the BD-PSNR table (compared at equal "
                      "rate) and the fixed-rate PSNR table."]
        lines += ["", "| image | hardest codec | BD-rate vs it | vs envelope |",
                  "|---|---|---|---|"]
        for n in names:
            if n not in bd:
                continue
            key, val, missing = target["per_image"][n]
            if missing:
                hardest = "undetermined (no overlap with " + ", ".join(
                    codecs.get(k, {}).get("label", k) for k in missing) + ")"
            else:
                hardest = codecs.get(key, {}).get("label", key or "-")
            env_v = bd[n].get("envelope", {}).get("psnr_window")
            lines.append(f"| {n} | {hardest} | {_fmt(val, '+.1f', ' %')} | "
                         f"{_fmt(env_v, '+.1f', ' %')} |")
        lines.append("")

        tables = [
            ("psnr_window", f"BD-rate of GeoRSIC, PSNR, anchor's {WINDOW[0]}-{WINDOW[1]} bpp "
                            "(bpp range actually covered in brackets)"),
            ("psnr_full", "BD-rate of GeoRSIC, PSNR, whole overlapping range"),
            ("msssim_full", "BD-rate of GeoRSIC, MS-SSIM (dB), whole overlapping range"),
            ("bd_psnr_db", "BD-PSNR of GeoRSIC (dB gained at equal rate)"),
        ]
        keys = [k for k in codecs if k != GEORSIC] + ["envelope"]
        for field, title in tables:
            lines += [f"## {title}", "", "Negative BD-rate: GeoRSIC needs fewer bits. "
                      "\"-\": the curves do not overlap." if field != "bd_psnr_db" else
                      "Positive: GeoRSIC is better.", ""]
            lines.append("| anchor | " + " | ".join(names) + " | mean RGB | mean all |")
            lines.append("|---" * (len(names) + 3) + "|")
            for k in keys:
                if not any(k in bd.get(n, {}) for n in names):
                    continue
                label = "classical envelope" if k == "envelope" else codecs[k]["label"]
                cells, vals_all, vals_rgb = [], [], []
                for n in names:
                    entry = bd.get(n, {}).get(k)
                    v = entry[field] if entry else math.nan
                    spec, unit = (".2f", " dB") if field == "bd_psnr_db" else ("+.1f", " %")
                    cell = _fmt(v, spec, unit)
                    if field == "psnr_window" and entry and cell != "-":
                        lo, hi = entry["psnr_window_range"]
                        cell += f" ({_fmt(lo)}-{_fmt(hi)})"
                    cells.append(cell)
                    vals_all.append(v)
                    if n in rgb:
                        vals_rgb.append(v)
                spec, unit = (".2f", " dB") if field == "bd_psnr_db" else ("+.1f", " %")
                lines.append(f"| {label} | " + " | ".join(cells) +
                             f" | {_fmt(_mean(vals_rgb), spec, unit)} | "
                             f"{_fmt(_mean(vals_all), spec, unit)} |")
            if field == "psnr_window":
                for u in unavailable.values():
                    lines.append(f"| {u['label']} | " + " | ".join(
                        ["not available"] * (len(names) + 2)) + " |")
            lines.append("")

    lines += ["## PSNR (dB) at fixed rates", "",
              "PCHIP-interpolated in log-bpp; \"-\": the codec does not reach that rate.", ""]
    lines.append("| image | codec | " + " | ".join(f"{r:.2f} bpp" for r in REPORT_RATES) + " |")
    lines.append("|---" * (len(REPORT_RATES) + 2) + "|")
    for n in names:
        for k in codecs:
            pts = curves.get(n, {}).get(k)
            if not pts:
                continue
            r, d = _curve(pts, "psnr")
            vals = [bdrate.dist_at_rate(r, d, x) for x in REPORT_RATES]
            lines.append(f"| {n} | {codecs[k]['label']} | " +
                         " | ".join(_fmt(v) for v in vals) + " |")
    lines.append("")

    speed = result.get("speed", {})
    if speed:
        busy = (f"; other processes were using them (load average "
                f"{meta['loadavg_start'][0]:g} at start, {meta['loadavg_end'][0]:g} at the end), "
                f"so these are lower bounds" if meta.get("busy_note") else "")
        lines += ["## Speed", "",
                  f"Megapixels per second over all images, each codec timed at its point "
                  f"nearest {SPEED_RATE} bpp (classical: best of 3 runs, in memory; GeoRSIC: "
                  f"best of 2 runs of the whole `georsic.compress` / `georsic.decompress`, "
                  f"GeoTIFF reading/writing included, weights already loaded, "
                  f"{meta.get('torch_threads', '?')} torch thread(s)). "
                  f"{meta['cpu_count']} CPU cores"
                  f"{busy}.",
                  "", "| codec | device | encode MP/s | decode MP/s | mean bpp timed |",
                  "|---|---|---|---|---|"]
        for s in speed.values():
            label = codecs.get(s["codec"], {}).get("label", s["codec"])
            lines.append(f"| {label} | {s['device']} | {_fmt(s['encode_mps'], '.3g')} | "
                         f"{_fmt(s['decode_mps'], '.3g')} | {_fmt(s['bpp'], '.3f')} |")
        lines.append("")

    overhead = result.get("gdal_overhead", {})
    if overhead:
        lines += ["## GDAL files against bare codestreams", "",
                  "BD-rate (PSNR, whole overlap) of the whole GDAL-written file against the "
                  "bare codestream of the same library: the cost of the container, "
                  "georeferencing and 256x256 tile padding (large on these small images).", "",
                  "| GDAL file | vs | " + " | ".join(names) + " |",
                  "|---" * (len(names) + 2) + "|"]
        for k, per in overhead.items():
            lines.append(f"| {codecs[k]['label']} | {codecs[GDAL_PAIRS[k]]['label']} | " +
                         " | ".join(_fmt(per.get(n), '+.1f', ' %') for n in names) + " |")
        lines.append("")

    lines += ["## Codecs", "", "| key | codec | library | settings | swept parameter |",
              "|---|---|---|---|---|"]
    for k, c in codecs.items():
        lines.append(f"| {k} | {c['label']} | {c['library']} | {c['settings']} | "
                     f"{c['param']} |")
    for k, u in unavailable.items():
        lines.append(f"| {k} | {u['label']} | **not available here**: {u['reason']} | - | - |")
    lines += ["", "## Protocol", "",
              "- Every codec, GeoRSIC included, codes the same 8-bit RGB pixels: 8-bit RGB as "
              "is; uint16 (or other) rasters mapped to 8 bit by their 0.5-99.5 percentiles, a "
              "single band repeated to 3 channels (the protocol of ANCHORS.md). GeoRSIC is "
              "given these pixels as an uncompressed GeoTIFF with the source's CRS and "
              "geotransform and no no-data value.",
              "- PSNR: over all RGB values together. MS-SSIM: Wang et al. 2003, 5 scales, "
              "standard weights, per channel then averaged; shown in dB as "
              "-10 log10(1 - MS-SSIM).",
              "- bpp: whole compressed stream x 8 / pixels. Classical codestreams come from "
              "imagecodecs (no container); GeoRSIC counts its whole .grsc archive, header "
              "and per-tile framing included; GDAL rows count the whole file.",
              "- BD-rate: log-rate interpolated as a function of quality with piecewise cubic "
              "(PCHIP) interpolation, integrated over the overlapping quality range (JVET "
              "method), on each curve's rate-distortion front; no extrapolation. The "
              f"{WINDOW[0]}-{WINDOW[1]} bpp figure restricts the quality range to what the "
              "anchor reaches between those rates.",
              "- Each classical codec is swept over its quality parameter, and the sweep is "
              "refined where neighbouring points are more than 30 % apart in bpp "
              "(0.04-1.6 bpp).", ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'georsic[bench]')",
              file=sys.stderr)
        return False
    images = [im["name"] for im in result["images"]]
    curves = result["curves"]
    codecs = result["codecs"]
    fig, axes = plt.subplots(2, len(images), figsize=(5 * len(images), 8.5), squeeze=False)
    for col, name in enumerate(images):
        for row, metric in enumerate(("psnr", "ms_ssim_db")):
            ax = axes[row][col]
            ax.axvspan(*WINDOW, color="0.93", zorder=0)
            ys = []
            for k, pts in curves.get(name, {}).items():
                r, d = bdrate.rd_front(*_curve(pts, metric))
                if len(r) == 0:
                    continue
                sel = r <= 1.6
                if k == GEORSIC:
                    style = {"color": "black", "lw": 2.2, "marker": "o", "ms": 4, "zorder": 5}
                elif codecs[k]["container"] == "file":
                    style = {"color": _COLORS.get(k), "lw": 1, "ls": "--", "alpha": 0.7}
                else:
                    style = {"color": _COLORS.get(k), "lw": 1.4, "marker": ".", "ms": 3}
                ax.plot(r[sel], d[sel], label=codecs[k]["label"], **style)
                ys.extend(d[sel].tolist())
            ax.set_xlim(0, 1.6)
            if ys:
                lo, hi = np.percentile(ys, [1, 100])
                ax.set_ylim(lo - 0.5, hi + 0.5)
            ax.grid(alpha=0.3)
            ax.set_xlabel("bpp")
            ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "MS-SSIM (dB)")
            if row == 0:
                ax.set_title(name, fontsize=10)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 9), fontsize=9)
    fig.suptitle("GeoRSIC vs classical codecs (shaded: 0.1-0.5 bpp; dashed: whole GDAL files)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------- run


def run(
    images: Sequence[str | Path] | None = None,
    qualities: Sequence[float] | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    codec_keys: Sequence[str] | None = None,
    with_georsic: bool = True,
    gpu_speed: bool = True,
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    refine: int = 0,
    model: str | None = None,
    refine_rounds: int = 3,
    command: str | None = None,
    log=print,
) -> dict:
    """Run the benchmark and write rd.md, rd.json and rd.png to ``out``; returns the result.

    ``codec_keys`` defaults to every classical codec; those that cannot run here (see
    :func:`georsic.bench.classical.unavailable_codecs`) are listed as not available instead.
    ``command`` is the command line recorded in rd.md.
    """
    started = time.perf_counter()
    loadavg = [round(x, 2) for x in os.getloadavg()]
    paths = expand_image_args(list(images) if images else [default_images()])
    if not paths:
        raise SystemExit("no benchmark images found")
    out = Path(out) if out else default_out()
    out.mkdir(parents=True, exist_ok=True)
    all_codecs = build_codecs()
    missing = unavailable_codecs()
    keys = list(codec_keys) if codec_keys else list(CODESTREAM_KEYS + GDAL_FILE_KEYS)
    unknown = [k for k in keys if k not in all_codecs and k not in missing]
    if unknown:
        raise SystemExit(f"unknown codec(s) {unknown}; known: "
                         f"{list(CODESTREAM_KEYS + GDAL_FILE_KEYS)}")
    codecs: dict[str, ClassicalCodec] = {k: all_codecs[k] for k in keys if k in all_codecs}
    unavailable = {k: {"label": missing[k][0], "reason": missing[k][1]}
                   for k in keys if k in missing}
    for u in unavailable.values():
        log(f"[rd] {u['label']}: not available here ({u['reason']})")

    import georsic

    levels = georsic.QUALITY_LEVELS
    qualities = list(qualities) if qualities is not None else [float(q) for q in range(levels)]
    codec_meta = {k: c.describe() for k, c in codecs.items()}
    if with_georsic:
        mi = model_info(model)
        codec_meta = {GEORSIC: {
            "key": GEORSIC, "label": "GeoRSIC", "library": f"georsic {georsic.__version__} "
            f"model {mi.get('id')}", "settings":
            f"tile {tile_size}, overlap {overlap}, refine {refine}",
            "param": "quality", "params": qualities, "container": "archive"}, **codec_meta}

    loaded = [load_image(p) for p in paths]
    curves: dict[str, dict[str, list[dict]]] = {}
    speed_samples: dict[str, list[tuple[int, float, float, float]]] = {}
    gpu = None
    with tempfile.TemporaryDirectory(prefix="georsic-rd-") as tmp:
        work = Path(tmp)
        if with_georsic:
            log(f"[rd] loading GeoRSIC weights on {device}")
            warm_up(work, device, model)
            if gpu_speed and device == "cpu":
                import torch

                if torch.cuda.is_available():
                    gpu = "cuda"
                    warm_up(work, gpu, model)
        for image in loaded:
            log(f"[rd] {image.name}: {image.width}x{image.height}, {image.mapping}")
            per: dict[str, list[dict]] = {}
            if with_georsic:
                src = write_geotiff(image, work / (Path(image.name).stem + ".src.tif"))
                pts = []
                for q in qualities:
                    p = georsic_point(image, src, work, q, device, tile_size, overlap, model,
                                      refine)
                    pts.append(p)
                    log(f"[rd]   GeoRSIC q={q:g}: {p['bpp']:.3f} bpp {p['psnr']:.2f} dB "
                        f"({p['encode_s']:.1f} s + {p['decode_s']:.1f} s)")
                per[GEORSIC] = pts
                sp = pick_speed_point(pts)
                again = georsic_point(image, src, work, sp["param"], device, tile_size,
                                      overlap, model, refine)
                speed_samples.setdefault(f"{GEORSIC}|{device}", []).append(
                    (image.pixels, min(sp["encode_s"], again["encode_s"]),
                     min(sp["decode_s"], again["decode_s"]), sp["bpp"]))
                if gpu:
                    g = [georsic_point(image, src, work, sp["param"], gpu, tile_size, overlap,
                                       model, refine) for _ in range(2)]
                    speed_samples.setdefault(f"{GEORSIC}|{gpu}", []).append(
                        (image.pixels, min(x["encode_s"] for x in g),
                         min(x["decode_s"] for x in g), g[0]["bpp"]))
            for key, codec in codecs.items():
                t0 = time.perf_counter()
                pts = sweep(codec, image, rounds=refine_rounds)
                per[key] = pts
                sp = pick_speed_point(pts)
                enc, dec = time_point(codec, image, sp["param"])
                speed_samples.setdefault(f"{key}|cpu", []).append(
                    (image.pixels, enc, dec, sp["bpp"]))
                log(f"[rd]   {codec.label}: {len(pts)} points, "
                    f"{min(p['bpp'] for p in pts):.3f}-{max(p['bpp'] for p in pts):.3f} bpp "
                    f"({time.perf_counter() - t0:.1f} s)")
            curves[image.name] = per

    speed = {}
    for key, samples in speed_samples.items():
        codec, dev = key.split("|")
        px = sum(s[0] for s in samples) / 1e6
        speed[key] = {
            "codec": codec, "device": dev,
            "encode_mps": px / sum(s[1] for s in samples),
            "decode_mps": px / sum(s[2] for s in samples),
            "bpp": statistics.fmean(s[3] for s in samples),
            "per_image": [{"pixels": s[0], "encode_s": s[1], "decode_s": s[2], "bpp": s[3]}
                          for s in samples],
        }
    bd = {name: bd_table(c) for name, c in curves.items()} if with_georsic else {}
    rgb_names = [im.name for im in loaded if _is_rgb8(im.describe())]
    target = target_summary(bd, rgb_names) if bd else None
    overhead: dict[str, dict[str, float]] = {}
    for gk, ck in GDAL_PAIRS.items():
        if gk in codecs and ck in codecs:
            overhead[gk] = {
                name: bdrate.bd_rate(*_curve(c[ck], "psnr"), *_curve(c[gk], "psnr"))
                for name, c in curves.items()}
    import rasterio
    import torch

    from georsic.bench.classical import imagecodecs

    result = {
        "meta": {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command,
            "seconds": time.perf_counter() - started,
            "cpu_count": os.cpu_count(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "loadavg_start": loadavg,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "busy_note": loadavg[0] > 0.5 * (os.cpu_count() or 1),
            "georsic_version": georsic.__version__,
            "model": model_info(model) if with_georsic else None,
            "device": device,
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if gpu else None,
            "qualities": qualities if with_georsic else None,
            "tile_size": tile_size,
            "overlap": overlap,
            "refine": refine,
            "window_bpp": list(WINDOW),
            "target_percent": TARGET_PERCENT,
            "versions": {"imagecodecs": imagecodecs.__version__ if imagecodecs else None,
                         "gdal": rasterio.__gdal_version__, "rasterio": rasterio.__version__,
                         "torch": torch.__version__, "numpy": np.__version__},
        },
        "images": [im.describe() for im in loaded],
        "codecs": codec_meta,
        "unavailable": unavailable,
        "curves": curves,
        "bd": bd,
        "target": target,
        "speed": speed,
        "gdal_overhead": overhead,
    }
    md = render_markdown(result)
    (out / "rd.md").write_text(md)
    (out / "rd.json").write_text(json.dumps(_nan_to_none(result), indent=1))
    if plot(result, out / "rd.png"):
        log(f"[rd] wrote {out / 'rd.png'}")
    log(f"[rd] wrote {out / 'rd.md'} and {out / 'rd.json'} "
        f"({time.perf_counter() - started:.0f} s)")
    result["markdown"] = md
    return result


# ---------------------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--images", nargs="+", metavar="PATH",
                   help="image files or folders (default: benchmarks/data, the held-out set)")
    p.add_argument("--qualities", help="GeoRSIC qualities, e.g. '0..7' (default) or '0,2.5,5'")
    p.add_argument("--out", help="output folder (default: benchmarks/results)")
    p.add_argument("--device", default="cpu",
                   help="device for GeoRSIC (default cpu; a CUDA GPU, when present, is also "
                        "timed unless --no-gpu-speed)")
    p.add_argument("--no-gpu-speed", action="store_true", help="do not time on a CUDA GPU")
    p.add_argument("--quick", action="store_true",
                   help="fast run: first image only, qualities 0,2,4,6,7, codestreams only, "
                        "one refinement round")
    p.add_argument("--codecs", help="comma-separated classical codecs (default: all of "
                                    f"{','.join(CODESTREAM_KEYS + GDAL_FILE_KEYS)} that can "
                                    "run here)")
    p.add_argument("--no-georsic", action="store_true", help="classical codecs only")
    p.add_argument("--model", help="GeoRSIC model id (default: the default codec)")
    p.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE)
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    p.add_argument("--refine", type=int, default=0,
                   help="GeoRSIC encoder refinement steps per tile (georsic compress --refine)")
    p.set_defaults(func=_cmd)
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``rd`` under a ``georsic bench`` subparser group."""
    p = subparsers.add_parser("rd", help="rate-distortion benchmark against classical codecs",
                              description=__doc__.splitlines()[0])
    return configure_parser(p)


def _cmd(args: argparse.Namespace) -> int:
    import georsic

    qualities = parse_qualities(args.qualities, georsic.QUALITY_LEVELS)
    images = args.images
    codec_keys = args.codecs.split(",") if args.codecs else None
    rounds = 3
    if args.quick:
        paths = expand_image_args(images or [default_images()])
        images = paths[:1]
        if args.qualities is None:
            qualities = [q for q in (0.0, 2.0, 4.0, 6.0, 7.0) if q <= georsic.QUALITY_LEVELS - 1]
        codec_keys = codec_keys or list(CODESTREAM_KEYS)
        rounds = 1
    result = run(images=images, qualities=qualities, out=args.out, device=args.device,
                 codec_keys=codec_keys, with_georsic=not args.no_georsic,
                 gpu_speed=not args.no_gpu_speed, tile_size=args.tile_size,
                 overlap=args.overlap, refine=args.refine, model=args.model,
                 refine_rounds=rounds,
                 command=getattr(args, "rd_command", None) or command_line())
    print()
    print(result["markdown"])
    return 0


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command line this process was started with, as one would type it."""
    argv = list(sys.argv if argv is None else argv)
    name = Path(argv[0]).name if argv else ""
    if name.startswith("georsic"):
        return shlex.join(["georsic", *argv[1:]])
    if name.endswith(".py"):
        try:
            script = os.path.relpath(argv[0])
        except ValueError:
            script = argv[0]
        return shlex.join(["python", script, *argv[1:]])
    return shlex.join(argv)


def main(argv: list[str] | None = None) -> int:
    parser = configure_parser(argparse.ArgumentParser(
        prog="georsic bench rd", description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    if argv is not None:
        args.rd_command = shlex.join(["georsic", "bench", "rd", *argv])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
