"""Installed models: ``georsic models``, and archives of an earlier default that still decode."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import rasterio
from testdata import psnr

import georsic
from georsic.weights import default_model_id, find_model, installed_models

# earlier defaults (elic-vr-s until stop 11, elic-vr-s-v2 until stop 12): their archives must keep
# decoding
PREVIOUS_MODELS = ("elic-vr-s", "elic-vr-s-v2")


def run_models(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "georsic.cli", "models", *args],
                          capture_output=True, text=True, env=env)


def test_lists_the_shipped_models_and_marks_the_default():
    result = run_models("--verify")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    default = default_model_id()
    for entry in installed_models():
        line = next(line for line in lines if f" {entry.id} " in line)
        assert entry.sha256[:12] in line and line.endswith("ok")
        assert line.startswith("*") == (entry.id == default)


def test_a_damaged_weights_file_fails_verification(tmp_path):
    (tmp_path / "broken.safetensors").write_bytes(b"not the weights")
    manifest = {"models": [{"id": "broken", "kind": "codec", "architecture": "elic-vr",
                            "config": {}, "file": "broken.safetensors", "sha256": "0" * 64}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    env = {**os.environ, "GEORSIC_WEIGHTS": str(tmp_path)}
    assert run_models(env=env).returncode == 0  # listing alone does not hash files
    result = run_models("--verify", env=env)
    assert result.returncode == 5
    assert "Traceback" not in result.stderr
    assert "broken: weights file" in result.stderr and "damaged" in result.stderr
    assert any(" broken " in line and "damaged" in line for line in result.stdout.splitlines())


@pytest.mark.parametrize("model_id", PREVIOUS_MODELS)
def test_archives_of_earlier_shipped_models_still_decode(tmp_path, aerial, model_id):
    earlier = find_model(model_id)
    assert default_model_id() != model_id
    summary = georsic.compress(aerial, tmp_path / "a.grsc", quality=3, model=model_id)
    with georsic.open(tmp_path / "a.grsc") as archive:
        assert archive.header["codec"]["weights_sha256"] == earlier.sha256
    georsic.decompress(tmp_path / "a.grsc", tmp_path / "b.tif")
    with rasterio.open(aerial) as a, rasterio.open(tmp_path / "b.tif") as b:
        assert summary.bpp < 1.0 and psnr(a.read(), b.read()) > 18
