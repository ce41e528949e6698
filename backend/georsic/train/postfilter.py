"""Train the quality-conditioned post-filter of a frozen codec (``georsic train postfilter``).

The codec codes every training image, tile by tile and at each trained quality level, through
the same :class:`~georsic.codec.TileCodec` that compression uses (real rANS streams, the
decoded tile as decompression sees it before any filter). Those (decoded, original) pairs are
cached in ``OUT/pairs.pt`` and the filter learns, by plain MSE on random crops with flips and
90-degree rotations, the correction that brings each decoded crop back towards its original.
Training resumes from ``OUT/checkpoint.pt``; the codec is never changed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from georsic.models.postfilter import QualityPostFilter
from georsic.train.data import find_images, load_rgb8

log = logging.getLogger(__name__)


@dataclass
class PostFilterTrainConfig:
    data: list[str]
    out: str
    codec: str | None = None            # model id of the frozen codec (default: the default)
    exclude: list[str] = field(default_factory=list)
    channels: int = 32
    blocks: int = 3
    steps: int = 3000
    batch: int = 16
    patch: int = 96
    lr: float = 2e-3
    tile: int = 512
    threads: int = 0
    seed: int = 0
    time_limit: float = 0.0
    log_every: int = 50
    checkpoint_every: int = 250


def decoded_pairs(paths: list[Path], codec, tile: int, levels: int) -> list[dict]:
    """Every ``tile``-sized piece of every image, with its decoding at each quality level.

    Returns dicts ``{"name", "original": (3, h, w) uint8, "decoded": (levels, 3, h, w)
    float16, "bytes": [stream bytes per level]}``; pieces under 96 pixels are left out.
    """
    pairs = []
    for path in paths:
        image = load_rgb8(path)
        height, width = image.shape[1:]
        for y in range(0, height, tile):
            for x in range(0, width, tile):
                piece = np.ascontiguousarray(image[:, y:y + tile, x:x + tile])
                h, w = piece.shape[1:]
                if min(h, w) < 96:
                    continue
                values = piece.astype(np.float32) / 255
                decoded, sizes = [], []
                for quality in range(levels):
                    streams = codec.encode(values, float(quality))
                    decoded.append(torch.from_numpy(
                        codec.decode(streams, h, w, float(quality), postfilter=False)).half())
                    sizes.append(sum(map(len, streams)))
                pairs.append({"name": path.name, "original": torch.from_numpy(piece),
                              "decoded": torch.stack(decoded), "bytes": sizes})
        log.info("decoded %s (%d pieces so far)", path.name, len(pairs))
    return pairs


class PairSampler:
    """Random aligned crops of (decoded, original) pairs at random quality levels."""

    def __init__(self, pairs: list[dict], patch: int, seed: int) -> None:
        self.pairs = [p for p in pairs if min(p["original"].shape[1:]) >= patch]
        if not self.pairs:
            raise ValueError(f"no training piece is {patch} pixels or larger")
        self.patch = patch
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(decoded, original, quality)``: (B, 3, P, P) float32 twice, (B,) float32."""
        decoded, original, quality = [], [], []
        for _ in range(size):
            pair = self.pairs[int(self.rng.integers(len(self.pairs)))]
            level = int(self.rng.integers(pair["decoded"].shape[0]))
            h, w = pair["original"].shape[1:]
            y = int(self.rng.integers(0, h - self.patch + 1))
            x = int(self.rng.integers(0, w - self.patch + 1))
            crops = [pair["decoded"][level].float(), pair["original"].float() / 255]
            crops = [c[:, y:y + self.patch, x:x + self.patch] for c in crops]
            turns, flip = int(self.rng.integers(4)), self.rng.random() < 0.5
            crops = [torch.rot90(c, turns, (1, 2)) for c in crops]
            if flip:
                crops = [c.flip(2) for c in crops]
            decoded.append(crops[0])
            original.append(crops[1])
            quality.append(float(level))
        return torch.stack(decoded), torch.stack(original), torch.tensor(quality)


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _pairs(cfg: PostFilterTrainConfig, codec, out: Path) -> list[dict]:
    cache = out / "pairs.pt"
    if cache.exists():
        return torch.load(cache, weights_only=False)
    paths = find_images(cfg.data, cfg.exclude)
    if not paths:
        raise ValueError("no training images found")
    log.info("coding %d training images at %d quality levels", len(paths), codec.levels)
    pairs = decoded_pairs(paths, codec, cfg.tile, codec.levels)
    _save_atomic(pairs, cache)
    return pairs


def train_postfilter(cfg: PostFilterTrainConfig) -> Path:
    """Run (or resume) training; returns the checkpoint path."""
    from georsic.codec import get_codec
    from georsic.weights import find_model

    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    entry = find_model(cfg.codec)
    codec = get_codec(entry, "cpu")
    pairs = _pairs(cfg, codec, out)
    model = QualityPostFilter(cfg.channels, cfg.blocks, codec.levels)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        log.info("resumed from %s at step %d", ckpt_path, step)
    sampler = PairSampler(pairs, cfg.patch, cfg.seed + step)

    def checkpoint() -> None:
        _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "step": step, "config": asdict(cfg), "codec_id": entry.id,
                      "codec_sha256": entry.sha256}, ckpt_path)

    started, running, counted = time.time(), 0.0, 0
    with (out / "train_log.jsonl").open("a") as log_file:
        while step < cfg.steps:
            if cfg.time_limit and time.time() - started > cfg.time_limit:
                log.info("time limit reached at step %d", step)
                break
            lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            decoded, original, quality = sampler.batch(cfg.batch)
            loss = (model(decoded, quality) - original).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            running += float(loss.detach())
            counted += 1
            if step % cfg.log_every == 0:
                record = {"step": step, "mse": running / counted, "lr": lr,
                          "seconds": round(time.time() - started, 1)}
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                log.info("step %d mse %.6f", step, record["mse"])
                running, counted = 0.0, 0
            if step % cfg.checkpoint_every == 0:
                checkpoint()
    checkpoint()
    return ckpt_path


def export_postfilter(checkpoint: str | Path, out_dir: str | Path, model_id: str,
                      training: dict | None = None, make_default: bool = True) -> dict:
    """Write ``OUT/<model_id>.safetensors`` (half precision) and its manifest entry.

    The entry is of kind ``postfilter`` and names the codec weights it was trained for
    (``codec_sha256``): :func:`georsic.weights.find_postfilter` pairs them by that hash.
    """
    from safetensors.torch import save_file

    from georsic.weights import MANIFEST, file_sha256

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = state["config"]
    model = QualityPostFilter(cfg["channels"], cfg["blocks"],
                              state["model"]["log_block_gain"].shape[0])
    model.load_state_dict(state["model"])
    config = {"channels": cfg["channels"], "blocks": cfg["blocks"], "levels": model.levels}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{model_id}.safetensors"
    tensors = {name: value.detach().half().contiguous()
               for name, value in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"model_id": model_id, "architecture": "qpf",
                                            "config": json.dumps(config)})
    entry = {
        "id": model_id, "kind": "postfilter", "architecture": "qpf", "config": config,
        "file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
        "parameters": sum(p.numel() for p in model.parameters()), "dtype": "float16",
        "codec_id": state["codec_id"], "codec_sha256": state["codec_sha256"],
        "training": {"steps": state["step"], "data": cfg["data"], "exclude": cfg["exclude"],
                     "images": len(find_images(cfg["data"], cfg["exclude"])),
                     "batch": cfg["batch"], "patch": cfg["patch"], "lr": cfg["lr"],
                     "tile": cfg["tile"], **(training or {})},
    }
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest["models"] = [m for m in manifest.get("models", []) if m["id"] != model_id] + [entry]
    if make_default:
        manifest.setdefault("default", {})["postfilter"] = model_id
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, manifest_path)
    return entry


def measure_postfilter_rd(out_dir: str | Path, model_id: str, images: list[str | Path],
                          qualities: tuple[int, ...] = tuple(range(8))) -> dict:
    """PSNR with and without the exported post-filter, recorded in its manifest entry.

    Each image goes through the real pipeline: ``georsic.compress`` (default tiling, the
    archive naming the post-filter), then ``georsic.decompress`` twice, with the filter and
    with ``postfilter=False``. The rate is the archive's size over the pixels (the same for
    both), the PSNR that of :func:`georsic.metrics.compare_rasters`; ``bd_rate`` per image is
    the BD-rate (PSNR) of the filtered decoding against the plain one.
    """
    import tempfile

    import georsic
    from georsic.bench.bdrate import bd_rate
    from georsic.metrics import compare_rasters
    from georsic.weights import MANIFEST

    out_dir = Path(out_dir)
    previous = os.environ.get("GEORSIC_WEIGHTS")
    os.environ["GEORSIC_WEIGHTS"] = str(out_dir)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            archive, plain, filtered = (Path(tmp) / n for n in ("a.grsc", "p.tif", "f.tif"))
            for image in images:
                for quality in qualities:
                    summary = georsic.compress(image, archive, quality=quality)
                    georsic.decompress(archive, plain, postfilter=False)
                    georsic.decompress(archive, filtered)
                    rows.append({"image": Path(image).name, "quality": quality,
                                 "bpp": round(summary.bpp, 4),
                                 "psnr_plain": round(compare_rasters(image, plain)["psnr"], 3),
                                 "psnr": round(compare_rasters(image, filtered)["psnr"], 3)})
    finally:
        if previous is None:
            os.environ.pop("GEORSIC_WEIGHTS", None)
        else:
            os.environ["GEORSIC_WEIGHTS"] = previous
    gains = {}
    for name in dict.fromkeys(row["image"] for row in rows):
        mine = [row for row in rows if row["image"] == name]
        rates = [row["bpp"] for row in mine]
        gains[name] = round(bd_rate(rates, [r["psnr_plain"] for r in mine], rates,
                                    [r["psnr"] for r in mine]), 2)
    rd = {"measured_by": "georsic.train.postfilter.measure_postfilter_rd (compress, then "
                         "decompress with and without the post-filter; default tiling, CPU)",
          "points": rows, "bd_rate_vs_plain": gains}
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["models"]:
        if entry["id"] == model_id:
            entry["rd"] = rd
    tmp_path = manifest_path.with_suffix(".tmp")
    tmp_path.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp_path, manifest_path)
    return rd
