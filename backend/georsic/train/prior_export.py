"""Export a trained Code-RSIC prior: float16 safetensors plus a ``kind: "prior"`` manifest entry.

The codec stays the manifest's default model (``default.codec``); ``default.prior`` names the
prior that decoding with the prior uses when none is asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from georsic.prior.model import CodePrior
from georsic.train.prior import stage_checkpoint
from georsic.weights import MANIFEST, file_sha256, write_manifest

#: Buffers that only training needs (the codebook's EMA state).
TRAINING_ONLY = ("codebook.cluster_size", "codebook.embed_sum", "codebook.initted")


def latest_checkpoint(run: str | Path) -> Path:
    """The checkpoint of the last stage trained in ``run`` that holds a whole prior."""
    for stage in ("4", "3", "2,3", "2"):
        path = stage_checkpoint(run, stage)
        if path.exists():
            return path
    raise FileNotFoundError(f"{run} has no stage 2 or 3 checkpoint: train stages 2 and 3 "
                            "before exporting a prior")


def prior_tensors(prior: CodePrior) -> dict[str, torch.Tensor]:
    """The state dict as shipped: parameters and the codebook in float16."""
    out = {}
    for name, value in prior.state_dict().items():
        if name in TRAINING_ONLY:
            continue
        out[name] = (value.half() if value.is_floating_point() else value).contiguous()
    return out


def bench_figures(result: dict) -> dict:
    """The manifest's summary of a `georsic bench prior` result: means per set, verdicts."""
    keep = ("quality", "method", "mode", "fidelity", "bpp", "psnr", "ms_ssim", "lpips",
            "dists", "fid", "images")
    meta = result.get("meta", {})
    return {"measured_by": meta.get("command") or "georsic bench prior",
            "date": meta.get("date"), "loadavg": [meta.get("loadavg_start"),
                                                  meta.get("loadavg_end")],
            "means": {key: {k: row.get(k) for k in keep}
                      for key, row in result["summary"]["table"].items()},
            "target_verdicts": result["summary"]["verdicts"]}


def export_prior(run: str | Path, out_dir: str | Path, model_id: str,
                 make_default: bool = False, figures: str | Path | dict | None = None,
                 default_fidelity: float | None = None) -> dict:
    """Write ``OUT/<model_id>.safetensors`` and its manifest entry; returns the entry.

    ``default_fidelity`` is recorded in the config as the ``w`` its benchmark reports at
    (default: the trained preset's).
    """
    ckpt = latest_checkpoint(run)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    config = dict(state["prior_config"])
    if default_fidelity is not None:
        if not 0.0 <= default_fidelity <= 1.0:
            raise ValueError(f"the default fidelity must be between 0 and 1, not "
                             f"{default_fidelity}")
        config["default_fidelity"] = float(default_fidelity)
    prior = CodePrior(**config)
    prior.load_state_dict(state["prior"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{model_id}.safetensors"
    save_file(prior_tensors(prior), str(path),
              metadata={"model_id": model_id, "architecture": "code-rsic",
                        "config": json.dumps(config)})
    cfg = state["config"]
    if isinstance(figures, (str, Path)):
        figures = json.loads(Path(figures).read_text())
    if figures and "summary" in figures:  # the prior.json of `georsic bench prior`
        figures = bench_figures(figures)
    base = state.get("base_training")  # stage 4 on an installed prior: what it was trained on
    if base is not None:
        data = {"data": base.get("data"), "exclude": base.get("exclude")}
    else:
        stage1 = torch.load(stage_checkpoint(run, "1"), map_location="cpu", weights_only=False)
        data = stage1["config"]
    cache_index = Path(cfg.get("cache") or Path(run) / "cache") / "index.json"
    entry = {
        "id": model_id, "kind": "prior", "architecture": "code-rsic", "config": config,
        "file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
        "parameters": sum(p.numel() for p in prior.parameters()), "dtype": "float16",
        "stride": prior.stride,
        "training": {
            "stages": state["history"],
            "data": data["data"], "exclude": data["exclude"],
            "pairs": (json.loads(cache_index.read_text()) | {"files": None}
                      if cache_index.exists() else None),
            "total_steps": sum(int(s["steps"]) for s in state["history"].values()),
        },
        **({"figures": figures} if figures else {}),
    }
    if base is not None:
        entry["training"]["base"] = {"id": base.get("base"), "sha256": base.get("base_sha256")}
    if entry["training"]["pairs"]:
        entry["training"]["pairs"].pop("files")
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest["models"] = [m for m in manifest.get("models", []) if m["id"] != model_id] + [entry]
    if make_default or not manifest.get("default", {}).get("prior"):
        manifest.setdefault("default", {})["prior"] = model_id
    write_manifest(manifest_path, manifest)
    return entry
