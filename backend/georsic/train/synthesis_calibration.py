"""Calibrate the exact synthesis of shipped weights once, on training crops, for every archive.

An exact archive's synthesis (:class:`~georsic.models.exact_synthesis.ExactSynthesis`) needs the
largest |input| of each convolution of ``g_s``: its integer grid.  Measured per raster (on the
latents of a few sample tiles) it cost 7-35 s per archive; measured here once, on the latents of
training crops at every quality level, it is stored in the weights' manifest entry
(``exact_synthesis``) and every new exact or bounded archive uses it (values beyond are clamped,
deterministically).  The weights are unchanged: same file, same sha256.

    georsic train exact-synthesis ../shared/data/rs --model elic-vr-s-v5 \\
        --exclude OSBS_029 SOAP_031 australia_uav solaris_pan1

``benchmarks/exact_synthesis.py`` and ``georsic bench speed --exact --bd`` measure what it
costs in rate-distortion against the float synthesis.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from georsic.codec import TileCodec
from georsic.exactarchive import SYNTHESIS, _short
from georsic.models.exact_synthesis import MARGIN, calibrate
from georsic.train.data import find_images
from georsic.train.exact import CROP, CROPS_PER_IMAGE, _crops
from georsic.weights import MANIFEST, ModelEntry, find_model, read_manifest, write_manifest


def calibrate_synthesis(entry: ModelEntry, images: Sequence[Path],
                        qualities: Sequence[float] | None = None) -> dict[str, float]:
    """The largest |input| of every convolution of ``entry``'s ``g_s`` over the latents an
    exact archive's decoder synthesises (the exact entropy path's ``y_hat`` times the float32
    inverse gain) of :func:`~georsic.train.exact._crops` of ``images`` at ``qualities``
    (default every trained level), as float32 shortest decimals."""
    codec = TileCodec(entry, "cpu", 1)
    model = codec.model
    qualities = list(range(model.levels)) if qualities is None else list(qualities)
    latents = []
    with torch.no_grad():
        for crop in _crops(images):
            image = np.ascontiguousarray(crop[0].numpy())
            for quality in qualities:
                _, y_hat = codec.encode_exact(image, quality)
                gain = model._gain(model.log_inverse_gain, quality).float().cpu()
                latents.append(y_hat.float() * gain)
        amax = calibrate(model.g_s.float().cpu(), latents)
    return {name: _short(value) for name, value in sorted(amax.items())}


def export_synthesis_calibration(data: Sequence[str | Path], model_id: str | None = None,
                                 exclude: Sequence[str] = ()) -> dict:
    """Calibrate ``model_id`` (default: the default model) on the images under ``data`` and
    write the result into its manifest entry (``exact_synthesis``); returns that entry."""
    started = time.perf_counter()
    entry = find_model(model_id)
    images = find_images(data, exclude)
    if not images:
        raise ValueError("no calibration images found")
    amax = calibrate_synthesis(entry, images)
    folder = entry.path.parent
    manifest = read_manifest(folder)
    record = {
        "synthesis": SYNTHESIS, "amax": amax, "margin": MARGIN,
        "images": [p.name for p in images], "crops_per_image": CROPS_PER_IMAGE, "crop": CROP,
        "qualities": "every trained level", "seconds": round(time.perf_counter() - started, 1),
        "command": f"georsic train exact-synthesis {' '.join(map(str, data))} --model "
                   f"{entry.id}" + (f" --exclude {' '.join(exclude)}" if exclude else ""),
    }
    for model in manifest["models"]:
        if model["id"] == entry.id:
            model["exact_synthesis"] = record
    write_manifest(folder / MANIFEST, manifest)
    return record
