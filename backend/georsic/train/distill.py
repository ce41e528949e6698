"""Distil narrower transforms from shipped weights (``georsic train distill``).

Issue 29's speed budget (``benchmarks/results/width_speed_zen3.md``): on a 2-core AVX2 CPU the
transforms of ``elic-vr-s-v5`` (N = 64, 31 GMAC each per 1024-px tile) are 62 % of compression
(``g_a``) and of decompression (``g_s``); at N = 32 each is 9.3 GMAC (``g_a`` 0.41 s instead of
1.21, ``g_s`` 0.56 instead of 1.32).  The entropy model need not change, so each transform is
distilled alone against the teacher, which stays frozen:

* ``--part synthesis``: a decoder trained on the teacher's own quantised latents, without a
  rate term::

      loss = mean over the batch of  lambda_q / lambda_ref * MSE(g_s'(y_hat_q), x)

  with ``y_hat_q`` the latent of crop ``x`` at a quality ``q`` drawn uniformly over the trained
  range (gains interpolated as in coding), quantised by the teacher's entropy model in eval
  mode (``round(y - mu) + mu``, the values a decoder reconstructs) and multiplied by the
  inverse gain.  The weight ``lambda_q`` is the trade-off the teacher's decoder was trained
  with, so the student spends its capacity where the teacher's did.  The log's ``gap_db`` is
  the student's PSNR minus the teacher's on the same latents.
* ``--part analysis``: an encoder trained to give the teacher's latent, the error measured in
  quantisation steps at quality ``q`` (``loss = mean((g_a'(x) - g_a(x))^2 * gain_q^2)``); a
  student with errors well below half a step codes nearly the teacher's symbols.  The log's
  ``rms_steps`` is the root of that loss.

Training resumes from ``OUT/checkpoint.pt``.  :func:`export_distilled` writes the teacher's file
with the students' transforms in place of its own (every other tensor byte for byte, so the
entropy path and its calibration carry over) and a manifest entry that names the teacher.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from georsic.train.codec import _save_atomic, scheduled_lr
from georsic.train.data import CropPool, find_images

log = logging.getLogger(__name__)

#: The transform each part replaces: (model attribute, configuration key of its width).
PARTS = {"synthesis": ("g_s", "N_s"), "analysis": ("g_a", "N_a")}


@dataclass
class DistillConfig:
    data: list[str]
    out: str
    teacher: str = "elic-vr-s-v5"
    part: str = "synthesis"
    width: int = 32
    exclude: list[str] = field(default_factory=list)
    steps: int = 20000
    batch: int = 8
    patch: int = 128
    lr: float = 2e-4
    threads: int = 0
    time_limit: float = 0.0
    lr_drop: float = 0.85
    device: str = "auto"
    init: str = "prune"
    start: str | None = None
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


def build_student(part: str, width: int, latent_channels: int) -> torch.nn.Sequential:
    """A freshly initialised transform ``part`` of ``width`` channels for ``latent_channels``."""
    from georsic.models.elic import elic_analysis, elic_synthesis

    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    builder = elic_synthesis if part == "synthesis" else elic_analysis
    return builder(width, latent_channels)


@torch.no_grad()
def teacher_latents(teacher, x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """The decoder input of each crop at its quality: quantised latent times the inverse gain."""
    y = teacher.g_a(x) * teacher._gain(teacher.log_gain, quality)
    y_hat = teacher.latent_codec(y)["y_hat"]
    return y_hat * teacher._gain(teacher.log_inverse_gain, quality)


def quality_weights(teacher, quality: torch.Tensor) -> torch.Tensor:
    """``lambda_q / lambda_ref`` per sample, lambdas interpolated geometrically like the gains."""
    logs = torch.tensor([math.log(v) for v in teacher.lambdas], device=quality.device)
    low = quality.floor().long().clamp(max=len(logs) - 2)
    frac = quality - low.float()
    log_lambda = logs[low] * (1 - frac) + logs[low + 1] * frac
    return (log_lambda - logs.mean()).exp()


def _mean_abs_per_channel(x: torch.Tensor) -> torch.Tensor:
    return x.detach().abs().mean(dim=(0, 2, 3))


#: Each transform's stages for :func:`prune`: (the convolution that writes the stage, its
#: blocks, the convolution that reads it), by index in the ``nn.Sequential``.
SYNTHESIS_STAGES = ((1, (2, 3, 4), 5), (5, (6, 7, 8, 9), 10), (10, (11, 12, 13), 14))
ANALYSIS_STAGES = ((0, (1, 2, 3), 4), (4, (5, 6, 7, 8), 9), (9, (10, 11, 12), 13))


@torch.no_grad()
def prune(net: torch.nn.Sequential, width: int, inputs: torch.Tensor,
          stages=SYNTHESIS_STAGES) -> dict:
    """A state dict of the same transform at ``width`` channels, cut from ``net`` (the teacher's
    ``g_s`` with :data:`SYNTHESIS_STAGES`, or ``g_a`` with :data:`ANALYSIS_STAGES`): the
    channels that carry most of each stage's signal, so that the student starts near the
    teacher.

    Each of the three stages (a convolution, its blocks and the next convolution's input)
    keeps one set of ``width`` channels (the residual sums tie a stage's channels together),
    and each block's inner path its own half as many.  A channel's score is its mean magnitude
    on ``inputs`` (the transform's inputs: the teacher's decoder inputs or images) times the
    norm of the weights that read it.  Layers outside the stages (the attention over the
    latent's channels) are kept whole.
    """
    transposed = isinstance(net[stages[0][0]], torch.nn.ConvTranspose2d)
    seen: dict[str, torch.Tensor] = {}
    hooks = []

    def watch(name: str, module: torch.nn.Module) -> None:
        def hook(_module, args, _output):
            seen[name] = seen.get(name, 0) + args[0].detach().abs().mean(dim=(0, 2, 3))
        hooks.append(module.register_forward_hook(hook))

    readers = {consumer: net[consumer] for _, _, consumer in stages}
    for consumer, module in readers.items():
        watch(str(consumer), module)
    blocks = {index for _, members, _ in stages for index in members}
    inner = {name: module for name, module in net.named_modules()
             if name.endswith(("conv3", "conv.4")) and int(name.split(".")[0]) in blocks}
    for name, module in inner.items():
        watch(name, module)
    net(inputs)
    for hook in hooks:
        hook.remove()

    def top(scores: torch.Tensor, count: int) -> torch.Tensor:
        return scores.topk(count).indices.sort().values

    def reads(weight: torch.Tensor) -> torch.Tensor:  # norm of the weights reading each input
        return (weight.transpose(0, 1) if not transposed else weight).flatten(1).norm(dim=1)

    kept = {producer: top(seen[str(consumer)] * reads(readers[consumer].weight), width)
            for producer, _, consumer in stages}
    kept_inner = {name.rsplit(".", 1)[0]: top(seen[name] * module.weight.flatten(2).norm(
        dim=(0, 2)), width // 2) for name, module in inner.items()}
    outer = {index: kept[producer] for producer, members, _ in stages for index in members}
    read_from = {consumer: kept[producer] for producer, _, consumer in stages}
    state = {}
    for key, value in net.state_dict().items():
        index, rest = int(key.split(".")[0]), key.split(".", 1)[1]
        is_bias = rest.endswith("bias")
        if index in kept or index in read_from:  # a stage's writer or reader
            writes, reads_in = kept.get(index), read_from.get(index)
            out_dim, in_dim = (1, 0) if transposed else (0, 1)
            if writes is not None:
                value = value.index_select(0 if is_bias else out_dim, writes)
            if reads_in is not None and not is_bias:
                value = value.index_select(in_dim, reads_in)
            state[key] = value
            continue
        if index not in outer:
            state[key] = value
            continue
        path = key.rsplit(".", 1)[0]
        owner, kind = path.rsplit(".", 1)
        # a block's conv1/2/3 or an attention unit's conv.0/2/4 (inner path); else the
        # attention's closing 1x1 (conv_b.3), outer to outer
        inner_path = kind in ("conv1", "conv2", "conv3") or path.count(".") >= 3
        mid = kept_inner[owner] if inner_path else None
        rows, cols = {"conv1": (mid, outer[index]), "0": (mid, outer[index]),
                      "conv2": (mid, mid), "2": (mid, mid),
                      "conv3": (outer[index], mid), "4": (outer[index], mid)}.get(
            kind, (outer[index], outer[index]))
        value = value.index_select(0, rows)
        state[key] = value if is_bias else value.index_select(1, cols)
    return state


def _psnr(mse: torch.Tensor) -> torch.Tensor:
    return -10 * torch.log10(mse.clamp_min(1e-10))


def synthesis_step(teacher, student, x: torch.Tensor, quality: torch.Tensor):
    """The synthesis student's loss on crops ``x`` at ``quality``, and what the log shows."""
    latent = teacher_latents(teacher, x, quality)
    x_hat = student(latent)
    mse = (x_hat - x).pow(2).flatten(1).mean(1)
    loss = (quality_weights(teacher, quality) * mse).mean()
    with torch.no_grad():
        teacher_mse = (teacher.g_s(latent).clamp(0, 1) - x).pow(2).flatten(1).mean(1)
        student_mse = (x_hat.detach().clamp(0, 1) - x).pow(2).flatten(1).mean(1)
    return loss, {"loss": float(loss.detach()), "psnr": float(_psnr(student_mse).mean()),
                  "gap_db": float((_psnr(student_mse) - _psnr(teacher_mse)).mean())}


def analysis_step(teacher, student, x: torch.Tensor, quality: torch.Tensor):
    """The analysis student's loss (squared latent error in quantisation steps at ``quality``)."""
    with torch.no_grad():
        target = teacher.g_a(x)
    gain = teacher._gain(teacher.log_gain, quality)
    loss = ((student(x) - target) * gain).pow(2).mean()
    return loss, {"loss": float(loss.detach()), "rms_steps": float(loss.detach().sqrt())}


def start_model(model_id: str | None, teacher_entry):
    """The exported students ``model_id`` (both transforms, distilled from ``teacher_entry``)
    as a model whose entropy model and gains are frozen: the start of a joint run."""
    from georsic.models import build_model
    from georsic.weights import find_model, load_entry_state_dict

    if not model_id:
        raise ValueError("--part joint needs --start MODEL_ID (both students, exported)")
    start = find_model(model_id)
    training = start.info.get("training", {})
    if training.get("teacher_sha256") != teacher_entry.sha256:
        raise ValueError(f"{model_id} was not distilled from {teacher_entry.id}")
    if {p["part"] for p in training.get("parts", [])} != {"g_a", "g_s"}:
        raise ValueError(f"{model_id} does not hold both students (export with --with)")
    model = build_model(start.architecture, start.config)
    model.load_state_dict(load_entry_state_dict(start))
    model.update(force=True)
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def joint_step(teacher, coder, x: torch.Tensor, quality: torch.Tensor):
    """Both students fine-tuned together on the codec's own objective at integer levels
    (``lambda_q * 255^2 * MSE + bpp``, the teacher's entropy model frozen, its noise in place of
    rounding); the log's ``loss_gap`` is the students' loss over the teacher's on the same
    crops and levels."""
    from georsic.train.codec import rd_loss

    levels = quality.round()
    coder.train()
    metrics = rd_loss(coder, x, levels)
    with torch.no_grad():
        teacher.train()
        reference = rd_loss(teacher, x, levels)
        teacher.eval()
    return metrics["loss"], {"loss": float(metrics["loss"].detach()),
                             "bpp": float(metrics["bpp"].detach()),
                             "psnr": float(metrics["psnr"].detach()),
                             "loss_gap": float((metrics["loss"] - reference["loss"]).detach())}


def train_distill(cfg: DistillConfig) -> Path:
    """Run (or resume) the distillation; returns the checkpoint path."""
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else (
        "cpu" if cfg.device == "auto" else cfg.device)
    if ckpt_path.exists() and torch.load(ckpt_path, map_location="cpu",
                                         weights_only=False)["step"] >= cfg.steps:
        return ckpt_path  # nothing left to train: the run as it is
    teacher, entry = load_teacher(cfg.teacher)
    teacher.to(device)
    if cfg.part == "joint":
        coder = start_model(cfg.start, entry).to(device)
        student = torch.nn.ModuleDict({"g_a": coder.g_a, "g_s": coder.g_s})
        for param in student.parameters():
            param.requires_grad_(True)
    else:
        student = build_student(cfg.part, cfg.width, sum(teacher.groups)).to(device)
    optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    step = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        student.load_state_dict(state.get("student", state.get("g_s")))
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        log.info("resumed from %s at step %d", ckpt_path, step)
    first = step
    paths = find_images(cfg.data, cfg.exclude)
    log.info("%d training images; teacher %s", len(paths), entry.id)
    pool = CropPool(paths, cfg.patch, cfg.crops_per_image, seed=cfg.seed + step)
    if step == 0 and cfg.init == "prune" and cfg.part != "joint":
        sample = pool.batch(32).to(device)
        if cfg.part == "synthesis":
            quality = torch.linspace(0, teacher.levels - 1, 32, device=device)
            cut = prune(teacher.g_s, cfg.width, teacher_latents(teacher, sample, quality))
        else:
            cut = prune(teacher.g_a, cfg.width, sample, ANALYSIS_STAGES)
        student.load_state_dict(cut)
        log.info("student cut from the teacher's %s", PARTS[cfg.part][0])
    elif cfg.init not in ("prune", "random"):
        raise ValueError(f"unknown init {cfg.init!r} (prune or random)")
    generator = torch.Generator().manual_seed(cfg.seed + step)
    log_file = (out / "train_log.jsonl").open("a")
    started = time.time()
    running: dict[str, float] = {}
    counted = 0
    student.train()

    def state() -> dict:
        return {"student": student.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "config": asdict(cfg), "teacher_sha256": entry.sha256}

    while step < cfg.steps:
        elapsed = time.time() - started
        if cfg.time_limit and elapsed > cfg.time_limit:
            log.info("time limit reached at step %d", step)
            break
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr(cfg, step, elapsed)
        x = pool.batch(cfg.batch).to(device)
        quality = (torch.rand(cfg.batch, generator=generator) * (teacher.levels - 1)).to(device)
        if cfg.part == "joint":
            loss, metrics = joint_step(teacher, coder, x, quality)
        else:
            step_loss = synthesis_step if cfg.part == "synthesis" else analysis_step
            loss, metrics = step_loss(teacher, student, x, quality)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        step += 1
        for key, value in metrics.items():
            running[key] = running.get(key, 0.0) + value
        counted += 1
        if step % cfg.log_every == 0:
            record = {k: round(v / counted, 5) for k, v in running.items()}
            record.update(step=step, seconds=round(time.time() - started, 1))
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            log.info("step %d %s", step, " ".join(f"{k} {v:.4f}" for k, v in record.items()
                                                  if k not in ("step", "seconds")))
            running, counted = {}, 0
        if step % cfg.checkpoint_every == 0:
            _save_atomic(state(), ckpt_path)
        if cfg.refresh_every and step % cfg.refresh_every == 0:
            pool = CropPool(paths, cfg.patch, cfg.crops_per_image, seed=cfg.seed + step)
    log_file.close()
    if step > first or not ckpt_path.exists():
        _save_atomic(state(), ckpt_path)
    return ckpt_path


def _start_record(model_id: str) -> dict:
    """What a joint run started from: the model and its training record."""
    from georsic.weights import find_model

    try:
        entry = find_model(model_id)
    except Exception:  # noqa: BLE001 - the start may be gone; the export still names it
        return {"model": model_id}
    return {"model": model_id, "sha256": entry.sha256,
            "parts": entry.info.get("training", {}).get("parts", [])}


def _split_joint(state: dict) -> list[dict]:
    """A joint run's checkpoint as one per transform (``part``, ``width`` and the students'
    tensors of each), any other run's as it is."""
    cfg = state["config"]
    if cfg.get("part") != "joint":
        return [state]
    out = []
    for part, (attribute, _) in PARTS.items():
        prefix = f"{attribute}."
        tensors = {k[len(prefix):]: v for k, v in state["student"].items()
                   if k.startswith(prefix)}
        width = tensors["1.weight" if part == "synthesis" else "0.weight"].shape[
            1 if part == "synthesis" else 0]
        out.append({**state, "student": tensors,
                    "config": {**cfg, "part": part, "width": width, "joint": True}})
    return out


def export_distilled(checkpoints: Sequence[str | Path], model_id: str,
                     out_dir: str | Path | None = None, hardware: str | None = None) -> dict:
    """Write the teacher's weights with the distilled transforms as model ``model_id``.

    ``checkpoints`` are runs of one teacher, one per part.  Every tensor of a transform no run
    replaces is copied as the teacher's file stores it, so the entropy model and the exact
    entropy path's calibration are the teacher's bit for bit; the students' layer weights are
    stored as the teacher's are (int8 of the teacher's ``weight_bits``), their other parameters
    in float16.  The manifest entry is the teacher's with the new file, configuration
    (``N_s``, ``N_a``) and training record; it is not made the default, and the exact
    synthesis needs its own calibration (``georsic train exact-synthesis --model MODEL_ID``).
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

    states = [torch.load(c, map_location="cpu", weights_only=False) for c in checkpoints]
    teacher = find_model(states[0]["config"]["teacher"])
    for checkpoint, state in zip(checkpoints, states, strict=True):
        if state["teacher_sha256"] != teacher.sha256:
            raise ValueError(f"{checkpoint} was distilled from other weights than the installed "
                             f"{teacher.id}")
    states = [split for state in states for split in _split_joint(state)]
    parts = [s["config"].get("part", "synthesis") for s in states]
    if len(set(parts)) != len(parts):
        raise ValueError(f"one run per part, not {', '.join(parts)}")
    bits = WeightBits.of(teacher.info.get("weight_bits", "8"))
    raw = load_entry_raw_tensors(teacher)
    prefixes = tuple(f"{PARTS[part][0]}." for part in parts)
    tensors = {k: v for k, v in raw.items() if not k.startswith(prefixes)}
    config = dict(teacher.config)
    parameters = teacher.info.get("parameters", 0) - sum(
        v.numel() for k, v in raw.items()
        if k.startswith(prefixes) and not k.endswith(INT8_SCALE_SUFFIX))
    records = []
    for part, state in zip(parts, states, strict=True):
        cfg = state["config"]
        attribute, key = PARTS[part]
        width = cfg.get("width", cfg.get("N_s"))
        student = build_student(part, width, teacher.config["M"])
        student.load_state_dict(state.get("student", state.get("g_s")))
        parameters += sum(p.numel() for p in student.parameters())
        config[key] = width
        layers = {f"{name}.weight" for name, module in student.named_modules()
                  if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))}
        for name, value in student.state_dict().items():
            full = f"{attribute}.{name}"
            if name in layers:
                values, scales = quantize_int8(value, bits.for_name(full))
                tensors[full], tensors[full + INT8_SCALE_SUFFIX] = values, scales
            else:
                tensors[full] = value.to(torch.float16)
        records.append({
            "part": attribute, "width": width, "steps": state["step"], "data": cfg["data"],
            "exclude": cfg["exclude"], "images": len(find_images(cfg["data"], cfg["exclude"])),
            "batch": cfg["batch"], "patch": cfg["patch"], "lr": cfg["lr"],
            "threads": cfg["threads"],
            "command": f"georsic train distill {' '.join(cfg['data'])} --out {cfg['out']} "
                       f"--teacher {teacher.id} " + (
                           f"--part joint --start {cfg['start']}" if cfg.get("joint") else
                           f"--part {part} --width {width}") + f" --steps {cfg['steps']}"
                       + (f" --exclude {' '.join(cfg['exclude'])}" if cfg["exclude"] else ""),
            **({"joint_after": _start_record(cfg["start"])} if cfg.get("joint") else {}),
        })
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    folder = Path(out_dir) if out_dir else teacher.path.parent
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{model_id}.safetensors"
    save_file(tensors, str(path), metadata={"model_id": model_id, "architecture":
                                            teacher.architecture, "config": json.dumps(config)})
    manifest_path = folder / MANIFEST
    manifest = read_manifest(folder) if manifest_path.exists() else {"models": []}
    base = {k: v for k, v in teacher.info.items()
            if k not in ("rd", "exact_synthesis", "training", "note")}
    entry = {
        **base, "id": model_id, "kind": "codec", "architecture": teacher.architecture,
        "config": config, "file": path.name, "sha256": file_sha256(path),
        "bytes": path.stat().st_size, "parameters": parameters,
        "training": {"distilled_from": teacher.id, "teacher_sha256": teacher.sha256,
                     "hardware": hardware, "parts": records,
                     "steps": sum(r["steps"] for r in records)},
    }
    manifest["models"] = [m for m in manifest.get("models", []) if m["id"] != model_id] + [entry]
    write_manifest(manifest_path, manifest)
    return entry
