"""Training cost of each candidate ELIC width: parameters, half-precision size, seconds a step.

Part of choosing the model width by measurement: with a fixed training budget (hours of one
machine), a narrower model takes more steps; the weights must also fit the project's 60 MB.

    python benchmarks/train_step_cost.py [--threads 2] [--batch 8] [--patch 128]
"""

from __future__ import annotations

import argparse
import time

import torch

from georsic.models import build_model
from georsic.train.codec import rd_loss

WIDTHS = ((32, 64), (64, 128), (96, 192), (192, 320))  # (N, M); the paper's is 192/320


def step_seconds(N: int, M: int, batch: int, patch: int, repeats: int = 3) -> tuple[int, float]:
    """Parameters of the model and the best time of one optimiser step (after one warm-up)."""
    torch.manual_seed(0)
    model = build_model("elic-vr", {"N": N, "M": M})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, patch, patch)
    quality = torch.randint(0, model.levels, (batch,)).float()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        loss = rd_loss(model, x, quality)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return sum(p.numel() for p in model.parameters()), min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"| N | M | parameters | float16 MB | s/step (batch {args.batch}x{args.patch}^2, "
          f"{args.threads} threads) | steps per hour |")
    print("|---|---|---|---|---|---|")
    for N, M in WIDTHS:
        params, seconds = step_seconds(N, M, args.batch, args.patch)
        print(f"| {N} | {M} | {params / 1e6:.2f} M | {2 * params / 1e6:.1f} | {seconds:.2f} | "
              f"{3600 / seconds:,.0f} |")


if __name__ == "__main__":
    main()
