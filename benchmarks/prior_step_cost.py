"""Training cost of the Code-RSIC prior's stages at a few widths: seconds per optimiser step.

Each stage's real training step (``georsic.train.prior``: LPIPS-alex, the PatchGAN from its
first step, the codebook's EMA and restarts), batch ``--batch`` of ``--patch``-pixel crops
(random pixels: the cost does not depend on the content), best of ``--repeats`` after one
warm-up, on ``--threads`` threads.  Used to choose the CPU preset.

    python benchmarks/prior_step_cost.py [--threads 1] [--batch 8] [--patch 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from georsic.prior.model import PRESETS, CodePrior
from georsic.prior.vqgan import VQGAN
from georsic.train.prior import PriorTrainConfig, _Trainer

#: (label, overrides of the cpu preset)
WIDTHS = (
    ("width 32, Transformer 192x3", {"width": 32, "d_model": 192, "layers": 3}),
    ("width 48, Transformer 256x4 (cpu preset)", {}),
    ("width 64, Transformer 256x6", {"width": 64, "layers": 6}),
)


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def stage_costs(overrides: dict, batch: int, patch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    x = torch.rand(batch, 3, patch, patch)
    dec = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    with tempfile.TemporaryDirectory() as out:
        common = {"out": out, "overrides": overrides, "batch": batch, "patch": patch,
                  "gan_start": 0, "threads": 0}
        t1 = _Trainer(PriorTrainConfig(stage="1", **common))
        s1 = _best(lambda: t1.step_stage1(x), repeats)
        t1.save()
        res = {"stage 1": s1}
        for stage in ("2", "2,3"):
            t = _Trainer(PriorTrainConfig(stage=stage, **common))
            res[f"stage {stage}"] = _best(lambda t=t: t.step_lookup(x, dec), repeats)
        config = PRESETS["cpu"] | overrides
        res["vqgan params"] = sum(p.numel() for p in VQGAN(
            **{k: config[k] for k in ("width", "embed_dim", "codebook_size", "blocks",
                                      "downs")}).parameters())
        res["prior params"] = sum(p.numel() for p in CodePrior(**config).parameters())
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokens = args.patch // (4 * 2 ** PRESETS["cpu"]["downs"])
    print(f"batch {args.batch} of {args.patch}x{args.patch} crops, {tokens}x{tokens} tokens, "
          f"{args.threads} thread(s), best of {args.repeats} steps after a warm-up\n")
    print("| widths | VQGAN params | prior params | stage 1 s/step | stage 2 s/step "
          "| stages 2,3 s/step | stage-1 steps/hour |")
    print("|---|---|---|---|---|---|---|")
    for label, overrides in WIDTHS:
        r = stage_costs(overrides, args.batch, args.patch, args.repeats)
        print(f"| {label} | {r['vqgan params'] / 1e6:.2f} M | {r['prior params'] / 1e6:.2f} M "
              f"| {r['stage 1']:.2f} | {r['stage 2']:.2f} | {r['stage 2,3']:.2f} "
              f"| {3600 / r['stage 1']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
