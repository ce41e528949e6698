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


def test_rd_note_names_a_declared_nodata_value(tmp_path):
    import numpy as np
    import rasterio

    from georsic.train.export import _nodata_note

    data = np.full((3, 8, 8), 7, dtype="uint8")
    data[:, 0, :3] = 255
    for nodata, name in ((255, "with.tif"), (None, "without.tif")):
        with rasterio.open(tmp_path / name, "w", driver="GTiff", width=8, height=8, count=3,
                           dtype="uint8", nodata=nodata) as dst:
            dst.write(data)
    note = _nodata_note(tmp_path / "with.tif")
    assert "nodata=255" in note and "its 9 pixel values" in note
    assert _nodata_note(tmp_path / "without.tif") is None


def test_init_weights_are_recorded_by_their_hash(tmp_path):
    from georsic.train.export import _init_sha256

    weights = _weights_with_manifest(tmp_path, {"steps": 600})
    assert _init_sha256(str(weights)) == file_sha256(weights)
    assert _init_sha256(None) is None
    assert _init_sha256(str(tmp_path / "gone.safetensors")) is None
