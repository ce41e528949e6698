"""A small, randomly initialised Code-RSIC prior installed in a weights folder, for tests of the
decoding machinery (windows, blending, tags, options) that do not depend on trained weights.

It is the real :class:`georsic.prior.model.CodePrior`, narrow, with every weight random: HPIN's
output projections start at zero in a fresh model (which would make the fidelity ``w`` a no-op
until trained), so they are drawn at random too.
"""

from __future__ import annotations

import json
from pathlib import Path

TEST_PRIOR_ID = "test-prior-random"
TEST_PRIOR_CONFIG = {"width": 16, "embed_dim": 16, "codebook_size": 32, "blocks": 1, "downs": 1,
                     "d_model": 32, "layers": 1, "heads": 2, "hpin_heads": 2, "window": 8,
                     "default_fidelity": 0.5}


def write_random_prior(folder: Path, seed: int = 0) -> Path:
    """Write a random prior and a manifest naming it the default prior into ``folder``."""
    import torch
    from safetensors.torch import save_file

    from georsic.prior import build_prior
    from georsic.weights import file_sha256

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_prior("code-rsic", TEST_PRIOR_CONFIG)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1 and not param.any():
                param.normal_(0, 0.05)
    path = folder / f"{TEST_PRIOR_ID}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    manifest = {"models": [{"id": TEST_PRIOR_ID, "kind": "prior", "architecture": "code-rsic",
                            "config": TEST_PRIOR_CONFIG, "file": path.name,
                            "sha256": file_sha256(path)}],
                "default": {"prior": TEST_PRIOR_ID}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder


def shipped_prior_id() -> str | None:
    """The default prior in the project's own resources/weights, or None when none ships."""
    root = Path(__file__).resolve().parents[1] / "resources" / "weights" / "manifest.json"
    manifest = json.loads(root.read_text())
    prior = manifest.get("default", {}).get("prior")
    ids = {m["id"] for m in manifest.get("models", []) if m.get("kind") == "prior"}
    return prior if prior in ids else (sorted(ids)[0] if ids else None)
