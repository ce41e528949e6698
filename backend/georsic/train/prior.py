"""Train the Code-RSIC prior (``georsic train prior``), stage by stage, resumably.

Stage 1 (VQGAN: E_H, codebook, D_H) learns to reconstruct original crops: L1 + LPIPS-alex +
commitment, plus a hinge PatchGAN loss after ``gan_start`` steps.  Stage 2 freezes the
codebook and D_H and trains E_L + the Transformer to predict, from the ELIC-decoded crop, the
codes E_H gives the original: cross-entropy + a feature loss.  Stage 3 trains the HPIN (and
goes on training E_L and the Transformer) so that D_H's output at a fidelity weight drawn per
batch is close to the original: L1 + LPIPS + cross-entropy (+ GAN).  ``--stages 2,3`` runs
stages 2 and 3 as one run (both losses from the first step).  Li & Hou 2024
(arXiv 2407.12295); Zhou et al. 2022 (CodeFormer); Esser et al. 2021 (VQGAN).

Each stage keeps ``OUT/stage<k>.pt`` and resumes from it; SIGTERM (or SIGINT) saves a
checkpoint and stops; SIGSTOP/SIGCONT (others pausing the run while they time things) do no
harm.  ``OUT/train_log.jsonl`` holds the losses, LPIPS, perplexity and codes in use.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from georsic.prior.model import PRESETS, VQGAN_KEYS, CodePrior
from georsic.prior.vqgan import VQGAN, PatchDiscriminator

log = logging.getLogger(__name__)

STAGES = ("1", "2", "3", "2,3")


@dataclass
class PriorTrainConfig:
    out: str
    stage: str = "1"
    data: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    cache: str | None = None
    preset: str = "cpu"
    overrides: dict = field(default_factory=dict)
    steps: int = 1000
    batch: int = 8
    patch: int = 128
    lr: float = 4e-4
    device: str = "cpu"
    threads: int = 1
    time_limit: float = 0.0
    log_every: int = 10
    checkpoint_every: int = 50
    lpips_weight: float = 1.0
    commit_weight: float = 0.25
    gan_start: int = 1500
    gan_weight: float = 0.05
    ce_weight: float = 0.5
    feat_weight: float = 1.0
    seed: int = 0
    command: str = ""

    def prior_config(self) -> dict:
        config = dict(PRESETS[self.preset])
        config.update(self.overrides)
        return config


class _Stop:
    """Set by SIGTERM/SIGINT: the loop saves a checkpoint and returns."""

    def __init__(self) -> None:
        self.requested = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (tests): no handler
                pass
        return self

    def _handle(self, signum, frame) -> None:
        log.info("signal %d: saving a checkpoint and stopping", signum)
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def hardware(device: str, threads: int) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, {threads} thread(s) used"


def stage_checkpoint(out: str | Path, stage: str) -> Path:
    return Path(out) / f"stage{stage.replace(',', '')}.pt"


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b).clamp_min(1e-10)
    return float(-10 * torch.log10(mse))


def _hinge_d(disc, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - disc(real)).mean() + F.relu(1 + disc(fake.detach())).mean()


class _Trainer:
    """The state of one stage's run: models, optimisers, step, and its checkpoint file."""

    def __init__(self, cfg: PriorTrainConfig) -> None:
        from georsic.perceptual import LPIPS

        if cfg.stage not in STAGES:
            raise ValueError(f"unknown stage {cfg.stage!r}; use one of {', '.join(STAGES)}")
        if cfg.preset not in PRESETS:
            raise ValueError(f"unknown preset {cfg.preset!r}; use one of {', '.join(PRESETS)}")
        self.cfg = cfg
        self.device = cfg.device
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt = stage_checkpoint(self.out, cfg.stage)
        self.config = cfg.prior_config()
        self.lpips = LPIPS("alexnet").to(self.device)
        self.disc = PatchDiscriminator().to(self.device)
        self.step = 0
        self.seconds = 0.0
        self.history: dict = {}
        vq_config = {k: self.config[k] for k in VQGAN_KEYS}
        self.vqgan = VQGAN(**vq_config).to(self.device)
        self.prior: CodePrior | None = None
        if cfg.stage == "1":
            params = list(self.vqgan.parameters())
        else:
            self._load_previous()
            self.vqgan.eval().requires_grad_(False)
            self.prior.codebook.eval()
            self.prior.decoder.requires_grad_(False)
            params = [p for n, p in self.prior.named_parameters()
                      if not n.startswith(("decoder.", "codebook."))
                      and (cfg.stage != "2" or not n.startswith("hpin."))]
        self.params = params
        self.opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        if self.ckpt.exists():
            self._resume()

    def _load_previous(self) -> None:
        """Stage 2 (and 2,3) starts from stage 1's VQGAN; stage 3 from stage 2's prior."""
        previous = "2" if self.cfg.stage == "3" else "1"
        path = stage_checkpoint(self.out, previous)
        if not path.exists():
            raise FileNotFoundError(f"stage {self.cfg.stage} needs {path}: train stage "
                                    f"{previous} first")
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.history = dict(state.get("history", {}))
        self.vqgan.load_state_dict(state["vqgan"])
        if previous == "1":
            self.prior = CodePrior.from_vqgan(self.vqgan, self.config).to(self.device)
            self.disc.load_state_dict(state["disc"])
        else:
            self.prior = CodePrior(**self.config).to(self.device)
            self.prior.load_state_dict(state["prior"])
            self.disc.load_state_dict(state["disc"])

    def _resume(self) -> None:
        state = torch.load(self.ckpt, map_location=self.device, weights_only=False)
        self.vqgan.load_state_dict(state["vqgan"])
        if self.prior is not None:
            self.prior.load_state_dict(state["prior"])
        self.disc.load_state_dict(state["disc"])
        self.opt.load_state_dict(state["optimizer"])
        self.opt_d.load_state_dict(state["optimizer_d"])
        self.step, self.seconds = state["step"], state.get("seconds", 0.0)
        self.history = dict(state.get("history", {}))
        log.info("resumed stage %s from %s at step %d", self.cfg.stage, self.ckpt, self.step)

    def save(self) -> None:
        history = dict(self.history)
        history[self.cfg.stage] = {"steps": self.step, "seconds": round(self.seconds, 1),
                                   "command": self.cfg.command, "batch": self.cfg.batch,
                                   "patch": self.cfg.patch, "lr": self.cfg.lr,
                                   "device": self.device,
                                   "hardware": hardware(self.device, self.cfg.threads)}
        _save_atomic({"vqgan": self.vqgan.state_dict(),
                      "prior": self.prior.state_dict() if self.prior is not None else None,
                      "disc": self.disc.state_dict(), "optimizer": self.opt.state_dict(),
                      "optimizer_d": self.opt_d.state_dict(), "step": self.step,
                      "seconds": self.seconds, "config": asdict(self.cfg),
                      "prior_config": self.config, "history": history}, self.ckpt)

    # -- one step per stage ---------------------------------------------------------------

    def _gan_on(self) -> bool:
        return self.cfg.gan_weight > 0 and self.step >= self.cfg.gan_start

    def _finish(self, loss: torch.Tensor, fake: torch.Tensor | None, real: torch.Tensor,
                metrics: dict) -> None:
        if fake is not None and self._gan_on():
            g = -self.disc(fake).mean()
            loss = loss + self.cfg.gan_weight * g
            metrics["gan_g"] = float(g.detach())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        if fake is not None and self._gan_on():
            d = _hinge_d(self.disc, real, fake)
            self.opt_d.zero_grad(set_to_none=True)
            d.backward()
            self.opt_d.step()
            metrics["gan_d"] = float(d.detach())
        metrics["loss"] = float(loss.detach())

    def step_stage1(self, x: torch.Tensor) -> dict:
        self.vqgan.train()
        x_hat, idx, commit = self.vqgan(x)
        l1 = (x_hat - x).abs().mean()
        lp = self.lpips(x_hat, x).mean()
        loss = l1 + self.cfg.lpips_weight * lp + self.cfg.commit_weight * commit
        usage = self.vqgan.codebook.usage(idx, self.vqgan.codebook.size)
        metrics = {"l1": float(l1.detach()), "lpips": float(lp.detach()),
                   "commit": float(commit.detach()), "psnr": _psnr(x_hat.detach(), x),
                   **usage,
                   "codes_alive": int((self.vqgan.codebook.cluster_size
                                       >= self.vqgan.codebook.restart_below).sum()),
                   "restarts": self.vqgan.codebook.last_restarts}
        self._finish(loss, x_hat, x, metrics)
        return metrics

    def _targets(self, orig: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            z = self.vqgan.encoder(orig)
            b, d, h, w = z.shape
            idx = self.vqgan.codebook.nearest(z.permute(0, 2, 3, 1).reshape(-1, d)).view(b, h, w)
            return idx, self.vqgan.codebook.lookup(idx)

    def step_lookup(self, orig: torch.Tensor, dec: torch.Tensor) -> dict:
        """Stage 2, and stage 3 (HPIN) when the stage says so."""
        prior = self.prior
        prior.enc_l.train()
        prior.lookup.train()
        gt_idx, gt_q = self._targets(orig)
        with_hpin = self.cfg.stage in ("3", "2,3")
        if with_hpin:
            w = 1.0 if torch.rand(()) < 0.5 else float(torch.rand(()))
            out = prior.run(dec, w, "full")
        else:
            z = prior.enc_l(dec)
            out = {"z": z, "logits": prior.lookup(z), "idx": None}
        ce = F.cross_entropy(out["logits"], gt_idx)
        acc = float((out["logits"].argmax(1) == gt_idx).float().mean())
        loss = self.cfg.ce_weight * ce
        metrics = {"ce": float(ce.detach()), "code_acc": acc}
        if self.cfg.stage != "3":
            feat = F.mse_loss(out["z"], gt_q)
            loss = loss + self.cfg.feat_weight * feat
            metrics["feat"] = float(feat.detach())
        fake = None
        if with_hpin:
            fake = out["x_hat"]
            l1 = (fake - orig).abs().mean()
            lp = self.lpips(fake, orig).mean()
            loss = loss + l1 + self.cfg.lpips_weight * lp
            metrics.update(l1=float(l1.detach()), lpips=float(lp.detach()), w=w,
                           psnr=_psnr(fake.detach(), orig), psnr_decoded=_psnr(dec, orig))
        self._finish(loss, fake, orig, metrics)
        return metrics


def _stage1_pool(cfg: PriorTrainConfig, step: int):
    from georsic.train.data import CropPool, find_images

    paths = find_images(cfg.data, cfg.exclude)
    log.info("%d training images", len(paths))
    return CropPool(paths, cfg.patch, crops_per_image=48, max_downscale=1.5,
                    seed=cfg.seed + step)


def train_prior(cfg: PriorTrainConfig) -> Path:
    """Run (or resume) one stage (or stages "2,3"); returns its checkpoint path."""
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    trainer = _Trainer(cfg)
    if cfg.stage == "1":
        pool = _stage1_pool(cfg, trainer.step)
        pairs = None
    else:
        from georsic.train.prior_data import BENCHMARK_EXCLUDE, PairPool, build_pair_cache

        cache = Path(cfg.cache or Path(cfg.out) / "cache")
        if not any(cache.glob("*.npz")):
            if not cfg.data:
                raise ValueError("no pair cache yet: give training data to build it from")
            build_pair_cache(cfg.data, cache, exclude=cfg.exclude or BENCHMARK_EXCLUDE)
        pairs = PairPool(cache, cfg.patch, seed=cfg.seed + trainer.step)
        pool = None
    log_path = trainer.out / "train_log.jsonl"
    running: dict[str, float] = {}
    counted = 0
    with _Stop() as stop, log_path.open("a") as log_file:
        last = time.monotonic()
        session = 0.0
        while trainer.step < cfg.steps and not stop.requested:
            if cfg.time_limit and session >= cfg.time_limit:
                log.info("time limit reached at step %d", trainer.step)
                break
            if pool is not None:
                metrics = trainer.step_stage1(pool.batch(cfg.batch).to(cfg.device))
            else:
                orig, dec, _ = pairs.batch(cfg.batch)
                metrics = trainer.step_lookup(orig.to(cfg.device), dec.to(cfg.device))
            now = time.monotonic()
            # a step that took over 10 minutes was stopped (SIGSTOP) meanwhile: count 10 s
            spent = now - last if now - last < 600 else 10.0
            last = now
            trainer.seconds += spent
            session += spent
            trainer.step += 1
            for key, value in metrics.items():
                running[key] = running.get(key, 0.0) + float(value)
            counted += 1
            if trainer.step % cfg.log_every == 0:
                record = {k: round(v / counted, 5) for k, v in running.items()}
                record.update(stage=cfg.stage, step=trainer.step,
                              seconds=round(trainer.seconds, 1))
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                log.info("stage %s step %d %s", cfg.stage, trainer.step,
                         " ".join(f"{k} {v:.4g}" for k, v in record.items()
                                  if k not in ("stage", "step")))
                running, counted = {}, 0
            if trainer.step % cfg.checkpoint_every == 0:
                trainer.save()
            if pool is not None and trainer.step % 1000 == 0:
                pool = _stage1_pool(cfg, trainer.step)
        trainer.save()
    return trainer.ckpt
