#!/usr/bin/env python
"""What narrower transforms would cost a CPU: multiply-adds and one-thread time of ``g_a`` and
``g_s`` for one 1024-px tile, per width N of ``elic-vr`` (untrained weights: the time does not
depend on them), float32 torch, channels-last, best of ``--repeat``.

    python benchmarks/width_speed.py [--widths 64 48 32] [--repeat 3]

The entropy parameters (M and the channel context) are not in it: they do not scale with N.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from georsic.models import build_model
from georsic.models.runtime import cpu_transforms_description

LAMBDAS = [5e-05, 0.0001, 0.00023, 0.0005, 0.0011, 0.0024, 0.0051, 0.011]


def multiply_adds(net: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """The multiply-adds of ``net``'s convolutions on ``x``, and its output."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        w = module.weight
        values = inputs[0] if isinstance(module, nn.ConvTranspose2d) else output
        total += values.numel() * w.shape[1] * w.shape[2] * w.shape[3]

    hooks = [m.register_forward_hook(count) for m in net.modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        out = net(x)
    finally:
        for hook in hooks:
            hook.remove()
    return total, out


def best_seconds(net: nn.Module, x: torch.Tensor, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        net(x)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 48, 32])
    parser.add_argument("--latent", type=int, default=128, help="M (default 128)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}"
          f", one thread (the codec's transforms here: {cpu_transforms_description()})")
    print("| N / M | g_a GMAC | g_a s | g_s GMAC | g_s s | parameters (M) |")
    print("|---|---|---|---|---|---|")
    x = torch.rand(1, 3, 1024, 1024).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for width in args.widths:
            model = build_model("elic-vr", {"N": width, "M": args.latent, "lambdas": LAMBDAS})
            g_a = copy.deepcopy(model.g_a).eval().to(memory_format=torch.channels_last)
            g_s = copy.deepcopy(model.g_s).eval().to(memory_format=torch.channels_last)
            macs_a, y = multiply_adds(g_a, x)
            y = y.contiguous(memory_format=torch.channels_last)
            macs_s, _ = multiply_adds(g_s, y)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"| {width} / {args.latent} | {macs_a / 1e9:.1f} | "
                  f"{best_seconds(g_a, x, args.repeat):.2f} | {macs_s / 1e9:.1f} | "
                  f"{best_seconds(g_s, y, args.repeat):.2f} | {params:.2f} |")


if __name__ == "__main__":
    main()
