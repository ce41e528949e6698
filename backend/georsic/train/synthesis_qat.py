"""Can ``g_s`` run on 8-bit activations?  Quantisation-aware fine-tuning of the synthesis alone.

An exact synthesis (:mod:`georsic.models.exact_synthesis`) is accurate with 2**15 input levels
per layer but needs two int8 convolutions (or two float32 ones) per layer.  With one byte per
activation, oneDNN's int8 convolution (u8 x s8, int32 sums: exact) would run each layer in one
pass at 2-4x float32's speed.  This experiment measures what one byte costs, before and after
fine-tuning ``g_s`` with every convolution's input rounded to 256 levels (a straight-through
estimator) and its weights to 8-bit integers per output channel, as Ballé, Johnston and Minnen
("Integer Networks for Data Compression with Latent-Variable Models", ICLR 2019) train theirs.

Only ``g_s`` changes: the encoder, the entropy model and so every archive's bits stay as they
are; the loss is the MSE of the decoded crop against its source, over latents that the shipped
codec's exact decoder produces (qualities 0-7).

    python -m georsic.train.synthesis_qat --data ../shared/data/rs --minutes 30 --out runs/qat

On a lent GPU (``MODE=qat bash scripts/gpu_session.sh``, the training pack and CompressAI's
wheel carried in ``gpupack/``): ``--data gpupack/pack --held-out benchmarks/data --device
cuda``; the latents come from the same exact entropy path on the GPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Held-out images of the project's benchmarks (never trained on).
HELD_OUT = ("OSBS_029", "SOAP_031", "australia_uav", "solaris_pan1")


class RoundSTE(torch.autograd.Function):
    """round() forward, identity backward."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        return grad


class QuantConv(nn.Module):
    """A convolution whose input is rounded to ``levels`` steps of ``amax / levels`` (from 0
    for a ReLU's output, else symmetric) and whose weights are 8-bit integers per output
    channel, both with straight-through gradients."""

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d, amax: float, nonneg: bool,
                 levels: int) -> None:
        super().__init__()
        self.conv = conv
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        self.nonneg = nonneg
        self.high = float(levels) if nonneg else float(levels // 2)
        self.low = 0.0 if nonneg else -float(levels // 2 + 1)
        self.step = max(float(amax), 1e-12) / self.high

    def quantized_weight(self) -> Tensor:
        w = self.conv.weight
        out_dim = 1 if self.transposed else 0
        peak = w.detach().abs().movedim(out_dim, 0).flatten(1).amax(dim=1).clamp_min(1e-30)
        shape = [1] * 4
        shape[out_dim] = -1
        scale = (peak / 127.0).reshape(shape)
        return RoundSTE.apply(w / scale).clamp(-127, 127) * scale

    def forward(self, x: Tensor) -> Tensor:
        a = RoundSTE.apply(x / self.step).clamp(self.low, self.high) * self.step
        c = self.conv
        if self.transposed:
            return F.conv_transpose2d(a, self.quantized_weight(), c.bias, c.stride, c.padding,
                                      c.output_padding)
        return F.conv2d(a, self.quantized_weight(), c.bias, c.stride, c.padding)


def quantized_synthesis(g_s: nn.Sequential, amax: dict[str, float], levels: int = 255
                        ) -> nn.Sequential:
    """A copy of ``g_s`` with every convolution a :class:`QuantConv`."""
    from georsic.models.exact_synthesis import _nonneg_inputs

    nonneg = _nonneg_inputs(g_s)
    model = copy.deepcopy(g_s).float()
    for name, module in list(model.named_modules()):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, QuantConv(module, amax[name], name in nonneg, levels))
    return model


def _images(roots: list[str], exclude: tuple[str, ...]) -> list[Path]:
    from georsic.train.data import find_images

    return find_images(roots, exclude)


def latent_bank(codec, paths: list[Path], crops: int, size: int, qualities: list[float],
                seed: int = 0) -> tuple[list[Tensor], list[Tensor]]:
    """(latents, source crops) that the codec's exact decoder produces."""
    from georsic.train.data import load_rgb8

    model = codec.model
    inner = model._synthesis_runtime or model.g_s
    captured: list[Tensor] = []

    def capture(y_hat: Tensor) -> Tensor:
        captured.append(y_hat.detach().clone())
        return inner(y_hat)

    rng = np.random.default_rng(seed)
    latents, sources = [], []
    model._synthesis_runtime = capture
    try:
        for path in paths:
            rgb = load_rgb8(path)  # (3, H, W)
            h, w = rgb.shape[1:]
            if h < size or w < size:
                continue
            for _ in range(crops):
                y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
                crop = rgb[:, y:y + size, x:x + size].astype(np.float32) / 255
                for q in qualities:
                    codec.decode(codec.encode(crop, q), size, size, q)
                    latents.append(captured.pop())
                    sources.append(torch.from_numpy(crop)[None])
    finally:
        model._synthesis_runtime = inner
    return latents, sources


def psnr_gap(model: nn.Module, reference: nn.Module, latents: list[Tensor],
             sources: list[Tensor]) -> float:
    """Mean PSNR of ``model`` minus that of ``reference`` over the pairs, on 8-bit pixels."""
    gaps = []
    with torch.no_grad():
        for y_hat, x in zip(latents, sources, strict=True):
            values = []
            for net in (model, reference):
                out = torch.round(net(y_hat).clamp(0, 1) * 255)
                mse = float(F.mse_loss(out, torch.round(x * 255)))
                values.append(10 * math.log10(255**2 / max(mse, 1e-12)))
            gaps.append(values[0] - values[1])
    return float(np.mean(gaps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--levels", type=int, default=255)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--held-out", nargs="+", default=None,
                        help="where the held-out images are (default: --data)")
    parser.add_argument("--crops", type=int, default=4, help="training crops per image")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--qualities", type=float, nargs="+",
                        default=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
                        help="qualities whose latents the training sees")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from georsic.codec import TileCodec
    from georsic.models.exact_synthesis import calibrate
    from georsic.weights import find_model

    device = torch.device(args.device)
    codec = TileCodec(find_model(None), args.device, args.threads)
    qualities = list(args.qualities)
    start = time.perf_counter()
    train_paths = _images(args.data, HELD_OUT)
    latents, sources = latent_bank(codec, train_paths, args.crops, 256, qualities)
    held_paths = [p for p in _images(args.held_out or args.data, ())
                  if any(h in p.name for h in HELD_OUT)]
    test_latents, test_sources = latent_bank(codec, held_paths, 1, 256, [1.0, 3.0, 5.0, 7.0],
                                             seed=1)
    print(f"{len(latents)} training and {len(test_latents)} held-out latents in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    if not latents or not test_latents:
        raise SystemExit("no training or no held-out latents: check --data and --held-out")
    latents = [t.float().to(device) for t in latents]
    sources = [t.to(device) for t in sources]
    test_latents = [t.float().to(device) for t in test_latents]
    test_sources = [t.to(device) for t in test_sources]
    reference = copy.deepcopy(codec.model.g_s).float().to(
        device, memory_format=torch.contiguous_format).eval()
    amax = calibrate(reference, latents)
    model = quantized_synthesis(reference, amax, args.levels).to(device)
    before = psnr_gap(model, reference, test_latents, test_sources)
    print(f"post-training {args.levels}-level activations: held-out PSNR {before:+.3f} dB",
          flush=True)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    deadline = time.perf_counter() + 60 * args.minutes
    step, log = 0, []
    while time.perf_counter() < deadline:
        picks = torch.randint(0, len(latents), (args.batch,)).tolist()
        y_hat = torch.cat([latents[i] for i in picks])
        x = torch.cat([sources[i] for i in picks])
        loss = F.mse_loss(model(y_hat), x)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if step % 50 == 0:
            gap = psnr_gap(model, reference, test_latents, test_sources)
            log.append({"step": step, "loss": loss.item(), "held_out_gap_db": gap})
            print(f"step {step}: loss {loss.item():.6f}, held-out PSNR {gap:+.3f} dB", flush=True)
    after = psnr_gap(model, reference, test_latents, test_sources)
    print(f"after {step} steps: held-out PSNR {after:+.3f} dB (before {before:+.3f})")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "qat.json").write_text(json.dumps(
        {"levels": args.levels, "steps": step, "minutes": args.minutes, "lr": args.lr,
         "before_db": before, "after_db": after, "log": log}, indent=1))
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, args.out / "g_s_qat.pt")


if __name__ == "__main__":
    main()
