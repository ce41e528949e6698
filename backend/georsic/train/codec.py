"""Train the variable-rate ELIC codec (``georsic train codec``).

Loss per sample: ``lambda_q * 255^2 * MSE + bpp`` with the quality level ``q`` drawn at random
for each sample, so that one network learns every level [Cui2021].  Adam at 1e-4 as in ELIC's
recipe; the entropy bottleneck's quantiles have their own optimiser (CompressAI's aux loss).

Training resumes from ``OUT/checkpoint.pt`` when it exists, so that it can go on across runs;
``--init`` starts from shipped weights (fine-tuning on a user's own archive).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from georsic.models import build_model
from georsic.train.data import CropPool, find_images

log = logging.getLogger(__name__)


@dataclass
class CodecTrainConfig:
    data: list[str]
    out: str
    exclude: list[str] = field(default_factory=list)
    steps: int = 1000
    batch: int = 8
    patch: int = 128
    lr: float = 1e-4
    architecture: str = "elic-vr"
    N: int = 64
    M: int = 128
    lambdas: list[float] | None = None
    init: str | None = None
    device: str = "auto"
    threads: int = 0
    log_every: int = 10
    checkpoint_every: int = 50
    crops_per_image: int = 48
    refresh_every: int = 400
    seed: int = 0
    time_limit: float = 0.0
    lr_drop: float = 0.9
    gray_fraction: float = 0.0


def _flatten(tree) -> list[torch.Tensor]:
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in _flatten(v)]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in _flatten(v)]
    return [tree]


def bits_per_pixel(likelihoods, num_pixels: int) -> torch.Tensor:
    """Per-sample rate in bits per pixel from CompressAI's likelihood tree."""
    total = 0
    for tensor in _flatten(likelihoods):
        total = total + torch.log(tensor).flatten(1).sum(1)
    return total / (-math.log(2) * num_pixels)


def rd_loss(model, x: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
    out = model(x, quality)
    num_pixels = x.shape[-2] * x.shape[-1]
    bpp = bits_per_pixel(out["likelihoods"], num_pixels)
    mse = (out["x_hat"] - x).pow(2).flatten(1).mean(1)
    lambdas = torch.tensor(model.lambdas, device=x.device)[quality.long()]
    loss = (lambdas * 255**2 * mse + bpp).mean()
    psnr = (-10 * torch.log10(mse.clamp_min(1e-10))).mean()
    return {"loss": loss, "bpp": bpp.mean(), "mse": mse.mean(), "psnr": psnr}


def scheduled_lr(cfg, step: int, elapsed: float) -> float:
    """``cfg.lr``, a tenth of it once ``step`` or ``elapsed`` passes ``cfg.lr_drop`` of the run's
    steps or time limit (every training loop here steps its rate this way)."""
    late = step >= cfg.lr_drop * cfg.steps or (
        cfg.time_limit and elapsed >= cfg.lr_drop * cfg.time_limit)
    return cfg.lr * (0.1 if late else 1.0)


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def model_config(cfg: CodecTrainConfig | dict) -> dict:
    """The architecture configuration a training run builds (and its export records)."""
    values = asdict(cfg) if isinstance(cfg, CodecTrainConfig) else cfg
    config = {"N": values["N"], "M": values["M"]}
    if values.get("lambdas"):
        config["lambdas"] = [float(v) for v in values["lambdas"]]
    return config


def _init_state(init: str, lambdas: tuple[float, ...]) -> dict[str, torch.Tensor]:
    """The state dict of weights ``init``, its gain tables moved onto the ladder ``lambdas``."""
    from georsic.models.elic import DEFAULT_LAMBDAS, remap_gains
    from georsic.weights import load_state_dict_file, manifest_entry_for

    state = load_state_dict_file(init)
    entry = manifest_entry_for(init) if Path(init).suffix == ".safetensors" else None
    old = tuple(entry.get("lambdas", DEFAULT_LAMBDAS)) if entry else DEFAULT_LAMBDAS
    if tuple(old) != tuple(lambdas) and "log_gain" in state:
        log.info("gain tables moved from lambdas %s to %s", list(old), list(lambdas))
        state = remap_gains(state, old, lambdas)
    return state


def train_codec(cfg: CodecTrainConfig) -> Path:
    """Run (or resume) training; returns the checkpoint path."""
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else (
        "cpu" if cfg.device == "auto" else cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"

    config = model_config(cfg)
    model = build_model(cfg.architecture, config).to(device)
    step = 0
    main_params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    optimizer = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_optimizer = torch.optim.Adam(aux_params, lr=1e-3)
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        aux_optimizer.load_state_dict(state["aux_optimizer"])
        step = state["step"]
        log.info("resumed from %s at step %d", ckpt_path, step)
    elif cfg.init:
        model.load_state_dict(_init_state(cfg.init, model.lambdas), strict=False)
        log.info("initialised from %s", cfg.init)

    paths = find_images(cfg.data, cfg.exclude)
    log.info("%d training images", len(paths))
    pool = CropPool(paths, cfg.patch, cfg.crops_per_image, seed=cfg.seed + step,
                    gray_fraction=cfg.gray_fraction)
    log_file = (out / "train_log.jsonl").open("a")
    model.train()
    started = time.time()
    running: dict[str, float] = {}
    counted = 0
    while step < cfg.steps:
        elapsed = time.time() - started
        if cfg.time_limit and elapsed > cfg.time_limit:
            log.info("time limit reached at step %d", step)
            break
        lr = scheduled_lr(cfg, step, elapsed)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = pool.batch(cfg.batch).to(device)
        quality = torch.randint(0, model.levels, (cfg.batch,), device=device).float()
        metrics = rd_loss(model, x, quality)
        optimizer.zero_grad(set_to_none=True)
        metrics["loss"].backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        optimizer.step()
        aux_loss = model.aux_loss()
        aux_optimizer.zero_grad(set_to_none=True)
        aux_loss.backward()
        aux_optimizer.step()
        step += 1
        for key, value in metrics.items():
            running[key] = running.get(key, 0.0) + float(value.detach())
        counted += 1
        if step % cfg.log_every == 0:  # a mean over the steps since the last record (or resume)
            record = {k: v / counted for k, v in running.items()}
            record.update(step=step, aux=float(aux_loss.detach()),
                          seconds=round(time.time() - started, 1))
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            log.info("step %d loss %.3f bpp %.3f psnr %.2f", step, record["loss"],
                     record["bpp"], record["psnr"])
            running, counted = {}, 0
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "aux_optimizer": aux_optimizer.state_dict(), "step": step,
                          "config": asdict(cfg)}, ckpt_path)
        if cfg.refresh_every and step % cfg.refresh_every == 0:
            pool = CropPool(paths, cfg.patch, cfg.crops_per_image, seed=cfg.seed + step,
                    gray_fraction=cfg.gray_fraction)
    log_file.close()
    _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "aux_optimizer": aux_optimizer.state_dict(), "step": step,
                  "config": asdict(cfg)}, ckpt_path)
    return ckpt_path
