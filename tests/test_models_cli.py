"""``georsic models``: what is installed, which is the default, and whether files are intact."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from georsic.weights import default_model_id, installed_models


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
