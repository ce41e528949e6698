"""The manifest of exported weights counts the steps behind the weights a run started from."""

from __future__ import annotations

import json

from georsic.train.export import _init_steps
from georsic.weights import file_sha256


def _weights_with_manifest(folder, training: dict):
    weights = folder / "renamed-copy.safetensors"
    weights.write_bytes(b"not really weights, only bytes to hash")
    entry = {"id": "m", "file": "original.safetensors", "sha256": file_sha256(weights),
             "training": training}
    (folder / "manifest.json").write_text(json.dumps({"models": [entry]}))
    return weights


def test_init_steps_found_by_sha256_even_after_renaming(tmp_path):
    weights = _weights_with_manifest(tmp_path, {"steps": 600})
    assert _init_steps(str(weights)) == 600


def test_init_steps_chain_through_earlier_inits(tmp_path):
    weights = _weights_with_manifest(tmp_path, {"steps": 12000, "total_steps": 12600})
    assert _init_steps(str(weights)) == 12600


def test_init_steps_zero_without_init_or_manifest(tmp_path):
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(b"x")
    assert _init_steps(None) == 0
    assert _init_steps(str(lone)) == 0
