"""Train HPIN's image scale (``georsic train prior --stage 4``) on top of a trained prior.

The rest of the prior (E_L, the Transformer, the codebook, D_H and HPIN's feature scales) is
frozen: each step runs it without gradients on the ELIC-decoded crop at ``w = 1`` and trains
only :class:`~georsic.prior.hpin.ImageFusion`, whose output ``f = d + net(d, p)`` is fitted
to the original with L1 + LPIPS-alex (+ a hinge PatchGAN after ``gan_start`` steps), as
CodeFormer trains its fusion at ``w = 1`` (Zhou et al. 2022).  At decode time
``out = p + w * (f - p)`` interpolates between the prior alone and ``f``.

Starts from an installed prior (``--init MODEL_ID``) or from ``OUT``'s stage 3
checkpoint; keeps ``OUT/stage4.pt`` and resumes from it; SIGTERM saves and stops.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from georsic.prior.model import CodePrior
from georsic.prior.vqgan import PatchDiscriminator
from georsic.train.prior import _hinge_d, _psnr, _save_atomic, _Stop, hardware

log = logging.getLogger(__name__)

CHECKPOINT = "stage4.pt"


@dataclass
class FusionTrainConfig:
    out: str
    cache: str
    init: str | None = None
    width: int = 48
    blocks: int = 4
    steps: int = 3000
    batch: int = 8
    patch: int = 128
    lr: float = 2e-4
    lpips_weight: float = 1.0
    gan_start: int = 500
    gan_weight: float = 0.02
    device: str = "cpu"
    threads: int = 1
    time_limit: float = 0.0
    log_every: int = 10
    checkpoint_every: int = 50
    seed: int = 0
    command: str = ""


def _base_prior(cfg: FusionTrainConfig) -> tuple[CodePrior, dict, dict]:
    """The frozen prior to start from, its config and what is known of its training."""
    out = Path(cfg.out)
    if cfg.init is None:
        path = out / "stage3.pt" if (out / "stage3.pt").exists() else out / "stage23.pt"
        if not path.exists():
            raise FileNotFoundError(f"stage 4 needs --init MODEL or {path}: train stages 2 "
                                    "and 3 first")
        state = torch.load(path, map_location="cpu", weights_only=False)
        prior = CodePrior(**state["prior_config"])
        prior.load_state_dict(state["prior"])
        return prior, dict(state["prior_config"]), {"stages": state["history"]}
    from georsic.prior.model import load_prior
    from georsic.weights import find_model

    entry = find_model(cfg.init, kind="prior")
    prior = load_prior(entry)
    training = dict(entry.info.get("training", {})) | {"base": entry.id,
                                                         "base_sha256": entry.sha256}
    return prior, dict(entry.config), training


class FusionTrainer:
    """Models, optimisers and step count of one stage-4 run."""

    def __init__(self, cfg: FusionTrainConfig) -> None:
        from georsic.perceptual import LPIPS

        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt = self.out / CHECKPOINT
        base, config, self.base_training = _base_prior(cfg)
        self.config = {k: v for k, v in config.items()
                       if k not in ("image_fusion", "fusion_blocks")}
        self.config.update(image_fusion=cfg.width, fusion_blocks=cfg.blocks)
        self.prior = CodePrior(**self.config)
        base_state = {k: v for k, v in base.state_dict().items() if not k.startswith("fusion.")}
        missing, unexpected = self.prior.load_state_dict(base_state, strict=False)
        if unexpected or any(not k.startswith("fusion.") for k in missing):
            raise ValueError(f"the base prior does not fit: {unexpected[:3]} {missing[:3]}")
        self.prior.to(cfg.device).eval().requires_grad_(False)
        self.prior.fusion.requires_grad_(True)
        self.lpips = LPIPS("alexnet").to(cfg.device)
        self.disc = PatchDiscriminator().to(cfg.device)
        self.params = list(self.prior.fusion.parameters())
        self.opt = torch.optim.Adam(self.params, lr=cfg.lr, betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        self.step, self.seconds = 0, 0.0
        if self.ckpt.exists():
            state = torch.load(self.ckpt, map_location=cfg.device, weights_only=False)
            self.prior.load_state_dict(state["prior"])
            self.disc.load_state_dict(state["disc"])
            self.opt.load_state_dict(state["optimizer"])
            self.opt_d.load_state_dict(state["optimizer_d"])
            self.step, self.seconds = state["step"], state["seconds"]
            log.info("resumed stage 4 from %s at step %d", self.ckpt, self.step)

    def history(self) -> dict:
        stages = dict(self.base_training.get("stages", {}))
        stages["4"] = {"steps": self.step, "seconds": round(self.seconds, 1),
                       "command": self.cfg.command, "batch": self.cfg.batch,
                       "patch": self.cfg.patch, "lr": self.cfg.lr, "device": self.cfg.device,
                       "hardware": hardware(self.cfg.device, self.cfg.threads),
                       "trains": "HPIN's image scale only (the rest frozen)"}
        return stages

    def save(self) -> None:
        _save_atomic({"prior": self.prior.state_dict(), "prior_config": self.config,
                      "disc": self.disc.state_dict(), "optimizer": self.opt.state_dict(),
                      "optimizer_d": self.opt_d.state_dict(), "step": self.step,
                      "seconds": self.seconds, "config": asdict(self.cfg),
                      "history": self.history(),
                      "base_training": self.base_training}, self.ckpt)

    def train_step(self, orig: torch.Tensor, dec: torch.Tensor) -> dict:
        cfg = self.cfg
        with torch.no_grad():
            x_prior = self.prior.run(dec, 1.0, "hpin")["x_prior"]
            lp_dec = float(self.lpips(dec, orig).mean())
        self.prior.fusion.train()
        fused = self.prior.fusion(dec, x_prior, 1.0)
        l1 = (fused - orig).abs().mean()
        lp = self.lpips(fused, orig).mean()
        loss = l1 + cfg.lpips_weight * lp
        gan = cfg.gan_weight > 0 and self.step >= cfg.gan_start
        metrics = {"l1": float(l1.detach()), "lpips": float(lp.detach()),
                   "lpips_decoded": lp_dec, "psnr": _psnr(fused.detach(), orig),
                   "psnr_decoded": _psnr(dec, orig), "psnr_prior": _psnr(x_prior, orig)}
        if gan:
            g = -self.disc(fused).mean()
            loss = loss + cfg.gan_weight * g
            metrics["gan_g"] = float(g.detach())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        if gan:
            d = _hinge_d(self.disc, orig, fused)
            self.opt_d.zero_grad(set_to_none=True)
            d.backward()
            self.opt_d.step()
            metrics["gan_d"] = float(d.detach())
        metrics["loss"] = float(loss.detach())
        return metrics


def train_fusion(cfg: FusionTrainConfig) -> Path:
    """Run (or resume) stage 4; returns its checkpoint path."""
    from georsic.train.prior_data import PairPool

    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    trainer = FusionTrainer(cfg)
    pairs = PairPool(cfg.cache, cfg.patch, seed=cfg.seed + trainer.step)
    running: dict[str, float] = {}
    counted, session = 0, 0.0
    with _Stop() as stop, (trainer.out / "train_log.jsonl").open("a") as log_file:
        last = time.monotonic()
        while trainer.step < cfg.steps and not stop.requested:
            if cfg.time_limit and session >= cfg.time_limit:
                break
            orig, dec, _ = pairs.batch(cfg.batch)
            metrics = trainer.train_step(orig.to(cfg.device), dec.to(cfg.device))
            now = time.monotonic()
            spent = now - last if now - last < 600 else 10.0  # SIGSTOP meanwhile: count 10 s
            last = now
            trainer.seconds += spent
            session += spent
            trainer.step += 1
            for key, value in metrics.items():
                running[key] = running.get(key, 0.0) + value
            counted += 1
            if trainer.step % cfg.log_every == 0:
                record = {k: round(v / counted, 5) for k, v in running.items()}
                record.update(stage="4", step=trainer.step, seconds=round(trainer.seconds, 1))
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                log.info("stage 4 step %d %s", trainer.step,
                         " ".join(f"{k} {v:.4g}" for k, v in record.items()
                                  if k not in ("stage", "step")))
                running, counted = {}, 0
            if trainer.step % cfg.checkpoint_every == 0:
                trainer.save()
        trainer.save()
    return trainer.ckpt
