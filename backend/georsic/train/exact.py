"""Calibrate the exact integer entropy path of shipped weights and export them as a new model.

The exact path (:mod:`georsic.models.exact`) needs one constant per entropy-model layer: the
range of its input, which sets the integer grid.  It is measured by running the float model on
calibration crops at every quality level and stored beside the weights as ``exact.<layer>``
tensors; the weights themselves are copied unchanged (same integers, same entropy tables).  A
new file means a new sha256 and so a new model id: archives made with the old weights keep
decoding through the float64 path.

    georsic train exact ../shared/data/rs --init resources/weights/elic-vr-s-v4.safetensors \\
        --model-id elic-vr-s-v5 --exclude OSBS_029 SOAP_031 australia_uav solaris_pan1
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from georsic.codec import pad_to_align
from georsic.models import build_model, exact
from georsic.train.data import find_images, load_rgb8
from georsic.weights import (
    MANIFEST,
    dequantized,
    file_sha256,
    manifest_entry_for,
    write_manifest,
)

#: Calibration crops: up to this many per image, of this size, spread over the image.
CROPS_PER_IMAGE = 4
CROP = 256


def _crops(paths: Sequence[Path], crop: int = CROP, per_image: int = CROPS_PER_IMAGE
           ) -> list[torch.Tensor]:
    """Crops (1, 3, crop, crop) in [0, 1] from each image: its corners and centre, as fit."""
    out = []
    for path in paths:
        rgb = load_rgb8(path)  # (3, H, W)
        h, w = rgb.shape[1:]
        size = min(crop, h, w)
        spots = [(0, 0), (h - size, w - size), ((h - size) // 2, (w - size) // 2),
                 (0, w - size), (h - size, 0)][:per_image]
        for top, left in dict.fromkeys(spots):
            patch = rgb[:, top:top + size, left:left + size]
            x = torch.from_numpy(np.ascontiguousarray(patch, dtype=np.float32) / 255.0)
            out.append(pad_to_align(x[None]))
    return out


def calibrate_entry(weights: str | Path, images: Sequence[Path],
                    qualities: Sequence[float] | None = None) -> dict[str, float]:
    """The calibration of the weights file ``weights`` on ``images`` at ``qualities`` (default
    every trained level)."""
    entry = manifest_entry_for(weights)
    if entry is None:
        raise ValueError(f"{weights} is not listed in a manifest beside it")
    raw = load_file(str(weights))
    model = build_model(entry["architecture"], entry["config"])
    state = {k: v for k, v in dequantized(raw).items() if not k.startswith(exact.PREFIX)}
    model.load_state_dict(state)
    model.eval()
    qualities = list(range(model.levels)) if qualities is None else list(qualities)

    def latents():
        with torch.no_grad():
            for x in _crops(images):
                y = model.g_a(x)
                for q in qualities:
                    yield y * model._gain(model.log_gain, q)

    return exact.calibrate(model, latents(), raw)


def export_exact(weights: str | Path, data: Sequence[str | Path], model_id: str,
                 exclude: Sequence[str] = (), out_dir: str | Path | None = None,
                 make_default: bool = True) -> dict:
    """Write ``<out_dir>/<model_id>.safetensors``: ``weights`` plus the exact path's
    calibration, and its manifest entry (the old entry's fields, a new id, file and hash)."""
    started = time.perf_counter()
    weights = Path(weights)
    out_dir = Path(out_dir) if out_dir else weights.parent
    images = find_images(data, exclude)
    if not images:
        raise ValueError("no calibration images found")
    amax = calibrate_entry(weights, images)
    raw = load_file(str(weights))
    tensors = {k: v for k, v in raw.items() if not k.startswith(exact.PREFIX)}
    tensors.update(exact.amax_tensors(amax))
    base = manifest_entry_for(weights)
    path = out_dir / f"{model_id}.safetensors"
    save_file(tensors, str(path), metadata={"model_id": model_id,
                                            "architecture": base["architecture"],
                                            "config": json.dumps(base["config"]),
                                            "entropy": exact.NAME})
    entry = {k: v for k, v in base.items() if k not in ("rd", "measured")}
    entry.update({
        "id": model_id, "file": path.name, "sha256": file_sha256(path),
        "bytes": path.stat().st_size, "entropy": exact.NAME,
        "exact_calibration": {
            "from": base["id"], "from_sha256": base["sha256"],
            "images": [p.name for p in images], "crops_per_image": CROPS_PER_IMAGE,
            "crop": CROP, "qualities": "every trained level", "margin": exact.CALIBRATION_MARGIN,
            "levels": exact.TARGET_LEVELS, "mean_grid": exact.MEAN_GRID,
            "seconds": round(time.perf_counter() - started, 1),
            "command": f"georsic train exact {' '.join(map(str, data))} --init {weights} "
                       f"--model-id {model_id}" + (f" --exclude {' '.join(exclude)}"
                                                   if exclude else ""),
        },
    })
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["models"] = [m for m in manifest["models"] if m["id"] != model_id] + [entry]
    if make_default:
        manifest.setdefault("default", {})["codec"] = model_id
    write_manifest(manifest_path, manifest)
    return entry
