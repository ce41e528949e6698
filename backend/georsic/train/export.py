"""Export a training checkpoint as shipped weights: safetensors plus a manifest entry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from georsic.models import build_model
from georsic.train.codec import model_config
from georsic.train.data import find_images
from georsic.weights import (
    INT8_SCALE_SUFFIX,
    MANIFEST,
    WeightBits,
    dequantized,
    file_sha256,
    manifest_entry_for,
    quantize_int8,
    write_manifest,
)


def fit_quantiles(model, steps: int = 3000, lr: float = 0.1) -> float:
    """Fit the entropy bottleneck's quantiles (CompressAI's aux loss) to convergence.

    The quantiles only set the range of the z CDF tables; they depend on no data, so a few
    thousand cheap steps at export finish what training left.
    """
    quantiles = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    for param in model.parameters():
        param.requires_grad_(False)
    for param in quantiles:
        param.requires_grad_(True)
    optimizer = torch.optim.Adam(quantiles, lr=lr)
    for _ in range(steps):
        loss = model.aux_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for param in model.parameters():
        param.requires_grad_(True)
    return float(model.aux_loss().detach())


def _init_steps(init: str | None) -> int:
    """Training steps behind the weights a run started from, per the manifest beside them.

    The entry is found by sha256, so a renamed copy of exported weights still counts; weights
    without such a manifest count as 0.
    """
    entry = manifest_entry_for(init) if init else None
    if entry is None:
        return 0
    training = entry.get("training", {})
    return int(training.get("total_steps", training.get("steps", 0)))


def _init_sha256(init: str | None) -> str | None:
    """sha256 of the weights a run started from (the path alone may later hold other weights)."""
    return file_sha256(Path(init)) if init and Path(init).is_file() else None


_WEIGHT_LAYERS = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)


def int8_parameter_names(model: torch.nn.Module) -> set[str]:
    """The parameters int8 export stores as int8: the weights of convolutions and linear layers.

    Biases, gains and the entropy models' own parameters stay in half precision.
    """
    return {f"{name}.weight" if name else "weight" for name, module in model.named_modules()
            if isinstance(module, _WEIGHT_LAYERS)}


def stored_tensors(model: torch.nn.Module, dtype: torch.dtype,
                   bits: int | str | WeightBits = 8) -> dict[str, torch.Tensor]:
    """The state dict as written: parameters in ``dtype``, buffers in their own types.

    With ``torch.int8``, layer weights are integers of the width ``bits`` gives their name
    (see `WeightBits` and `quantize_int8`).
    """
    bits = WeightBits.of(bits)
    parameters = {name for name, _ in model.named_parameters()}
    int8 = int8_parameter_names(model) if dtype == torch.int8 else set()
    tensors = {}
    for name, value in model.state_dict().items():
        if name in int8:
            values, scales = quantize_int8(value, bits.for_name(name))
            tensors[name], tensors[name + INT8_SCALE_SUFFIX] = values, scales
        elif name in parameters:
            tensors[name] = value.to(torch.float16 if dtype == torch.int8 else dtype)
        else:
            tensors[name] = value
    return {name: value.detach().contiguous() for name, value in tensors.items()}


def round_parameters(model: torch.nn.Module, dtype: torch.dtype,
                     bits: int | str | WeightBits = 8) -> None:
    """Set every parameter to what a file written in ``dtype`` loads back (it stays float32).

    The values come from `stored_tensors` through the loader's own `dequantized`, so the
    rounding and the file can never disagree.
    """
    loaded = dequantized(stored_tensors(model, dtype, bits))
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(loaded[name])


def export_codec(checkpoint: str | Path, out_dir: str | Path, model_id: str,
                 training: dict | None = None, make_default: bool = True,
                 dtype: torch.dtype = torch.float16, quantile_steps: int = 3000,
                 bits: int | str | WeightBits = 8) -> dict:
    """Write ``OUT/<model_id>.safetensors`` with its entropy tables and add it to the manifest.

    Parameters are stored in ``dtype`` (half precision by default: half the size, and the
    rounding is done before the entropy tables are built, so they match the weights as
    loaded).  ``torch.int8`` stores convolution weights as int8 with per-channel scales and
    the other parameters in half precision.  Buffers (entropy tables, scale table) keep their
    own types.  ``bits`` (with ``torch.int8``) narrows the integers further, per layer if
    asked (`WeightBits`).
    """
    bits = WeightBits.of(bits)
    if bits != WeightBits() and dtype != torch.int8:
        raise ValueError("weight bits other than 8 need dtype int8")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = state["config"]
    config = model_config(cfg)
    model = build_model(cfg["architecture"], config)
    model.load_state_dict(state["model"])
    round_parameters(model, dtype, bits)
    aux = fit_quantiles(model, steps=quantile_steps)
    round_parameters(model, dtype, bits)
    model.update(force=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{model_id}.safetensors"
    tensors = stored_tensors(model, dtype, bits)
    save_file(tensors, str(path), metadata={"model_id": model_id, "architecture":
                                            cfg["architecture"], "config": json.dumps(config)})
    init_steps = _init_steps(cfg.get("init"))
    entry = {
        "id": model_id, "kind": "codec", "architecture": cfg["architecture"], "config": config,
        "file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "aux_loss": round(aux, 4), "dtype": str(dtype).removeprefix("torch."),
        **({"weight_bits": str(bits)} if dtype == torch.int8 else {}),
        "lambdas": list(model.lambdas),
        "training": {"steps": state["step"], "data": cfg["data"], "exclude": cfg["exclude"],
                     "images": len(find_images(cfg["data"], cfg["exclude"])),
                     "device": str(cfg.get("device", "auto")),
                     "threads": cfg.get("threads", 0), "init": cfg.get("init"),
                     "init_sha256": _init_sha256(cfg.get("init")),
                     "init_steps": init_steps, "total_steps": init_steps + state["step"],
                     "batch": cfg["batch"], "patch": cfg["patch"], "lr": cfg["lr"],
                     "gray_fraction": cfg.get("gray_fraction", 0.0),
                     **(training or {})},
    }
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    models = [m for m in manifest.get("models", []) if m["id"] != model_id]
    old = next((m for m in manifest.get("models", []) if m["id"] == model_id), None)
    if old and "rd" in old and old["sha256"] == entry["sha256"]:
        entry["rd"] = old["rd"]
    manifest["models"] = models + [entry]
    if make_default:
        manifest.setdefault("default", {})["codec"] = model_id
    write_manifest(manifest_path, manifest)
    return entry


def _nodata_note(image: str | Path) -> str | None:
    """What a declared nodata value costs in the rates measured on ``image``, if it has one."""
    import numpy as np
    import rasterio

    with rasterio.open(image) as src:
        if src.nodata is None:
            return None
        count = int(np.count_nonzero(src.read() == src.nodata))
    return (f"{Path(image).name} declares nodata={src.nodata:g}: its {count} pixel values equal "
            "to it are kept exactly by the archive's lossless nodata mask, included in these bpp.")


def measure_rd(out_dir: str | Path, model_id: str, images: list[str | Path],
               qualities: tuple[int, ...] = tuple(range(8))) -> list[dict]:
    """Measure the exported model's rate-distortion and record it in its manifest entry.

    Each image goes through the real pipeline (``georsic.compress`` then ``georsic.decompress``,
    default tiling); the rate is the archive's size over the pixels and the PSNR is over the
    valid pixels of all bands (peak 255 for 8-bit images).
    """
    import tempfile

    import georsic
    from georsic.metrics import compare_rasters

    out_dir = Path(out_dir)
    previous = os.environ.get("GEORSIC_WEIGHTS")
    os.environ["GEORSIC_WEIGHTS"] = str(out_dir)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for image in images:
                for quality in qualities:
                    archive, decoded = Path(tmp) / "a.grsc", Path(tmp) / "b.tif"
                    summary = georsic.compress(image, archive, quality=quality, model=model_id,
                                               overwrite=True)
                    georsic.decompress(archive, decoded, overwrite=True)
                    psnr = compare_rasters(image, decoded)["psnr"]
                    rows.append({"image": Path(image).name, "quality": quality,
                                 "bpp": round(summary.bpp, 4), "psnr": round(psnr, 2)})
    finally:
        if previous is None:
            os.environ.pop("GEORSIC_WEIGHTS", None)
        else:
            os.environ["GEORSIC_WEIGHTS"] = previous
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    notes = [note for note in map(_nodata_note, images) if note]
    for entry in manifest["models"]:
        if entry["id"] == model_id:
            entry["rd"] = {"measured_by": "georsic.train.export.measure_rd (compress + "
                                          f"decompress, tile {georsic.DEFAULT_TILE_SIZE}, overlap "
                                          f"{georsic.DEFAULT_OVERLAP}, CPU)",
                           "points": rows, **({"note": " ".join(notes)} if notes else {})}
    write_manifest(manifest_path, manifest)
    return rows
