"""Distil a narrower synthesis ``g_s`` from shipped weights (``georsic train distill``).

Issue 29's speed budget (``benchmarks/results/width_speed_zen3.md``): on a 2-core AVX2 CPU the
synthesis of ``elic-vr-s-v5`` (N = 64, 31 GMAC per 1024-px tile) is 62 % of decompression; at
N = 32 it is 9.3 GMAC and 0.56 s instead of 1.32 s.  A decoder is all that needs to change for
that: the analysis, the entropy model and so every bitstream stay the teacher's, so the student
is trained on the teacher's own quantised latents, as a decoder alone (no rate term):

    loss = mean over the batch of  lambda_q / lambda_ref * MSE(g_s'(y_hat_q), x)

with ``y_hat_q`` the latent of crop ``x`` at a quality ``q`` drawn uniformly over the trained
range (gains interpolated as in coding), quantised by the teacher's entropy model in eval mode
(``round(y - mu) + mu``, the values a decoder reconstructs) and multiplied by the inverse gain.
The weight ``lambda_q`` is the rate-distortion trade-off the teacher's decoder was trained with,
so the student spends its capacity where the teacher's did.  Every step also measures the
teacher's own MSE on the same latents, so the log shows the gap directly (``gap_db``: the
student's PSNR minus the teacher's, averaged over the batch).

Training resumes from ``OUT/checkpoint.pt``; :func:`export_distilled` writes the teacher's file
with the student's ``g_s`` in place of its own (the other tensors byte for byte, so the entropy
path and its calibration carry over) and a manifest entry that names the teacher.
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

from georsic.train.data import CropPool, find_images

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    data: list[str]
    out: str
    teacher: str = "elic-vr-s-v5"
    N_s: int = 32
    exclude: list[str] = field(default_factory=list)
    steps: int = 20000
    batch: int = 8
    patch: int = 128
    lr: float = 2e-4
    threads: int = 0
    time_limit: float = 0.0
    lr_drop: float = 0.85
    log_every: int = 25
    checkpoint_every: int = 200
    crops_per_image: int = 48
    refresh_every: int = 1000
    seed: int = 0


def load_teacher(model_id: str):
    """The shipped model ``model_id`` in float32 for training: (model in eval mode, its entry)."""
    from georsic.models import build_model
    from georsic.weights import find_model, load_entry_state_dict

    entry = find_model(model_id)
    model = build_model(entry.architecture, entry.config)
    model.load_state_dict(load_entry_state_dict(entry))
    model.update(force=True)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model, entry


def build_student(teacher, N_s: int) -> torch.nn.Sequential:
    """A freshly initialised ``g_s`` of width ``N_s`` for ``teacher``'s latents."""
    from georsic.models.elic import elic_synthesis

    return elic_synthesis(N_s, sum(teacher.groups))


@torch.no_grad()
def teacher_latents(teacher, x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """The decoder input of each crop at its quality: quantised latent times the inverse gain."""
    y = teacher.g_a(x) * teacher._gain(teacher.log_gain, quality)
    y_hat = teacher.latent_codec(y)["y_hat"]
    return y_hat * teacher._gain(teacher.log_inverse_gain, quality)


def quality_weights(teacher, quality: torch.Tensor) -> torch.Tensor:
    """``lambda_q / lambda_ref`` per sample, lambdas interpolated geometrically like the gains."""
    logs = torch.tensor([math.log(v) for v in teacher.lambdas])
    low = quality.floor().long().clamp(max=len(logs) - 2)
    frac = quality - low.float()
    log_lambda = logs[low] * (1 - frac) + logs[low + 1] * frac
    return (log_lambda - logs.mean()).exp()


def _psnr(mse: torch.Tensor) -> torch.Tensor:
    return -10 * torch.log10(mse.clamp_min(1e-10))


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_distill(cfg: DistillConfig) -> Path:
    """Run (or resume) the distillation; returns the checkpoint path."""
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    teacher, entry = load_teacher(cfg.teacher)
    student = build_student(teacher, cfg.N_s)
    optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    step = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        student.load_state_dict(state["g_s"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        log.info("resumed from %s at step %d", ckpt_path, step)
    paths = find_images(cfg.data, cfg.exclude)
    log.info("%d training images; teacher %s", len(paths), entry.id)
    pool = CropPool(paths, cfg.patch, cfg.crops_per_image, seed=cfg.seed + step)
    generator = torch.Generator().manual_seed(cfg.seed + step)
    log_file = (out / "train_log.jsonl").open("a")
    started = time.time()
    running: dict[str, float] = {}
    counted = 0
    student.train()

    def state() -> dict:
        return {"g_s": student.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "config": asdict(cfg), "teacher_sha256": entry.sha256}

    while step < cfg.steps:
        elapsed = time.time() - started
        if cfg.time_limit and elapsed > cfg.time_limit:
            log.info("time limit reached at step %d", step)
            break
        late = step >= cfg.lr_drop * cfg.steps or (
            cfg.time_limit and elapsed >= cfg.lr_drop * cfg.time_limit)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * (0.1 if late else 1.0)
        x = pool.batch(cfg.batch)
        quality = torch.rand(cfg.batch, generator=generator) * (teacher.levels - 1)
        latent = teacher_latents(teacher, x, quality)
        weight = quality_weights(teacher, quality)
        x_hat = student(latent)
        mse = (x_hat - x).pow(2).flatten(1).mean(1)
        loss = (weight * mse).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        step += 1
        with torch.no_grad():
            teacher_mse = (teacher.g_s(latent).clamp(0, 1) - x).pow(2).flatten(1).mean(1)
            student_mse = (x_hat.detach().clamp(0, 1) - x).pow(2).flatten(1).mean(1)
        metrics = {"loss": float(loss.detach()), "psnr": float(_psnr(student_mse).mean()),
                   "gap_db": float((_psnr(student_mse) - _psnr(teacher_mse)).mean())}
        for key, value in metrics.items():
            running[key] = running.get(key, 0.0) + value
        counted += 1
        if step % cfg.log_every == 0:
            record = {k: round(v / counted, 5) for k, v in running.items()}
            record.update(step=step, seconds=round(time.time() - started, 1))
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            log.info("step %d loss %.5f psnr %.2f gap %.3f dB", step, record["loss"],
                     record["psnr"], record["gap_db"])
            running, counted = {}, 0
        if step % cfg.checkpoint_every == 0:
            _save_atomic(state(), ckpt_path)
        if cfg.refresh_every and step % cfg.refresh_every == 0:
            pool = CropPool(paths, cfg.patch, cfg.crops_per_image, seed=cfg.seed + step)
    log_file.close()
    _save_atomic(state(), ckpt_path)
    return ckpt_path


def export_distilled(checkpoint: str | Path, model_id: str, out_dir: str | Path | None = None,
                     hardware: str | None = None) -> dict:
    """Write the teacher's weights with the distilled ``g_s`` as model ``model_id``.

    Every tensor but ``g_s``'s is copied as the teacher's file stores it, so the analysis, the
    entropy model and the exact entropy path's calibration are the teacher's bit for bit; the
    student's layer weights are stored as the teacher's ``g_s`` is (int8 of the teacher's
    ``weight_bits``), its other parameters in float16.  The manifest entry is the teacher's
    with the new file, configuration (``N_s``) and training record; it is not made the
    default, and the exact synthesis needs its own calibration (``georsic train
    exact-synthesis --model MODEL_ID``).
    """
    from safetensors.torch import save_file

    from georsic.weights import (
        INT8_SCALE_SUFFIX,
        MANIFEST,
        WeightBits,
        file_sha256,
        find_model,
        load_entry_raw_tensors,
        quantize_int8,
        read_manifest,
        write_manifest,
    )

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = state["config"]
    teacher = find_model(cfg["teacher"])
    if teacher.sha256 != state["teacher_sha256"]:
        raise ValueError(f"{checkpoint} was distilled from other weights than the installed "
                         f"{teacher.id}")
    bits = WeightBits.of(teacher.info.get("weight_bits", "8"))
    tensors = {k: v for k, v in load_entry_raw_tensors(teacher).items()
               if not k.startswith("g_s.")}
    student = build_student_for(teacher, cfg["N_s"])
    student.load_state_dict(state["g_s"])
    layers = {f"{name}.weight" for name, module in student.named_modules()
              if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))}
    for name, value in student.state_dict().items():
        key = f"g_s.{name}"
        if name in layers:
            values, scales = quantize_int8(value, bits.for_name(key))
            tensors[key], tensors[key + INT8_SCALE_SUFFIX] = values, scales
        else:
            tensors[key] = value.to(torch.float16)
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    config = {**teacher.config, "N_s": cfg["N_s"]}
    folder = Path(out_dir) if out_dir else teacher.path.parent
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{model_id}.safetensors"
    save_file(tensors, str(path), metadata={"model_id": model_id, "architecture":
                                            teacher.architecture, "config": json.dumps(config)})
    manifest_path = folder / MANIFEST
    manifest = read_manifest(folder) if manifest_path.exists() else {"models": []}
    base = {k: v for k, v in teacher.info.items()
            if k not in ("rd", "exact_synthesis", "training", "note")}
    teacher_g_s = sum(v.numel() for k, v in load_entry_raw_tensors(teacher).items()
                      if k.startswith("g_s.") and not k.endswith(INT8_SCALE_SUFFIX))
    parameters = (teacher.info.get("parameters", 0) - teacher_g_s
                  + sum(p.numel() for p in student.parameters()))
    entry = {
        **base, "id": model_id, "kind": "codec", "architecture": teacher.architecture,
        "config": config, "file": path.name, "sha256": file_sha256(path),
        "bytes": path.stat().st_size, "parameters": parameters,
        "training": {
            "distilled_from": teacher.id, "teacher_sha256": teacher.sha256,
            "part": "g_s", "width": cfg["N_s"], "steps": state["step"], "data": cfg["data"],
            "exclude": cfg["exclude"], "images": len(find_images(cfg["data"], cfg["exclude"])),
            "batch": cfg["batch"], "patch": cfg["patch"], "lr": cfg["lr"],
            "threads": cfg["threads"], "hardware": hardware,
            "command": f"georsic train distill {' '.join(cfg['data'])} --out {cfg['out']} "
                       f"--teacher {teacher.id} --width {cfg['N_s']} --steps {cfg['steps']}"
                       + (f" --exclude {' '.join(cfg['exclude'])}" if cfg["exclude"] else ""),
        },
    }
    manifest["models"] = [m for m in manifest.get("models", []) if m["id"] != model_id] + [entry]
    write_manifest(manifest_path, manifest)
    return entry


def build_student_for(teacher_entry, N_s: int) -> torch.nn.Sequential:
    """An untrained ``g_s`` of width ``N_s`` for the latents of manifest entry ``teacher_entry``."""
    from georsic.models.elic import default_groups, elic_synthesis

    config = teacher_entry.config
    groups = config.get("groups") or default_groups(config["M"])
    return elic_synthesis(N_s, sum(groups))
