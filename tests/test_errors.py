"""Bad input: one-line errors, non-zero exit codes, no traceback, no partial output."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from testdata import copy_needing_other_weights, damaged_copy

import georsic
from georsic.errors import ArchiveError, Cancelled, InputError, OutputError, WeightsError


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "georsic.cli", *map(str, args)],
                          capture_output=True, text=True)


def assert_clean_failure(result: subprocess.CompletedProcess, code: int, words: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("georsic: error")]
    assert len(lines) == 1, result.stderr
    assert words in lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_missing_file(tmp_path):
    result = run_cli("compress", tmp_path / "nope.tif", tmp_path / "out.grsc")
    assert_clean_failure(result, 2, "does not exist")
    assert leftovers(tmp_path) == []


def test_not_a_raster(tmp_path):
    (tmp_path / "notes.tif").write_text("these are not pixels")
    result = run_cli("compress", tmp_path / "notes.tif", tmp_path / "out.grsc")
    assert_clean_failure(result, 2, "not a raster")
    assert leftovers(tmp_path) == ["notes.tif"]


def test_zero_size_raster(tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(InputError, match="not a raster"):
        georsic.compress(tmp_path / "empty.tif", tmp_path / "out.grsc")
    vrt = ('<VRTDataset rasterXSize="0" rasterYSize="0"><VRTRasterBand dataType="Byte" '
           'band="1"/></VRTDataset>')
    (tmp_path / "zero.vrt").write_text(vrt)
    result = run_cli("compress", tmp_path / "zero.vrt", tmp_path / "out.grsc")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (tmp_path / "out.grsc").exists()


def test_unsupported_dtype(tmp_path):
    profile = {"driver": "GTiff", "width": 16, "height": 16, "count": 1, "dtype": "complex64",
               "crs": "EPSG:32633", "transform": from_origin(0, 16, 1, 1)}
    with rasterio.open(tmp_path / "complex.tif", "w", **profile) as dst:
        dst.write(np.ones((1, 16, 16), dtype=np.complex64))
    result = run_cli("compress", tmp_path / "complex.tif", tmp_path / "out.grsc")
    assert_clean_failure(result, 2, "complex64")
    assert not (tmp_path / "out.grsc").exists()


def test_flipped_byte_names_the_tile(tmp_path, aerial, aerial_archive):
    damaged = damaged_copy(aerial_archive, tmp_path / "damaged.grsc", tile=2)
    result = run_cli("decompress", damaged, tmp_path / "out.tif")
    assert_clean_failure(result, 4, "tile 2")
    assert not (tmp_path / "out.tif").exists()
    assert leftovers(tmp_path) == ["damaged.grsc"]
    # recovery: the other tiles decode, the damaged one becomes no-data
    result = run_cli("decompress", damaged, tmp_path / "out.tif", "--ignore-errors")
    assert result.returncode == 0, result.stderr
    with rasterio.open(tmp_path / "out.tif") as out:
        masks = out.read_masks(1)
    with rasterio.open(aerial) as src:
        source_masks = src.read_masks(1)
    assert np.array_equal(masks[:200, :200], source_masks[:200, :200])
    assert not masks[-100:, :100].any()


def test_truncated_archive(tmp_path, aerial_archive):
    truncated = tmp_path / "cut.grsc"
    truncated.write_bytes(aerial_archive.read_bytes()[:-100])
    result = run_cli("decompress", truncated, tmp_path / "out.tif")
    assert_clean_failure(result, 4, "truncated")
    assert not (tmp_path / "out.tif").exists()


def test_unknown_version_and_not_an_archive(tmp_path, aerial_archive):
    data = bytearray(aerial_archive.read_bytes())
    data[8] = 99
    (tmp_path / "future.grsc").write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="version 99"):
        georsic.open(tmp_path / "future.grsc")
    (tmp_path / "photo.grsc").write_bytes(b"\xff\xd8\xff\xe0 jpeg")
    result = run_cli("info", tmp_path / "photo.grsc")
    assert_clean_failure(result, 4, "not a GeoRSIC archive")


def test_archive_needing_missing_weights(tmp_path, aerial_archive):
    copy_needing_other_weights(aerial_archive, tmp_path / "other.grsc")
    result = run_cli("decompress", tmp_path / "other.grsc", tmp_path / "out.tif")
    assert_clean_failure(result, 5, "elic-vr-future")
    assert "not installed" in result.stderr
    assert not (tmp_path / "out.tif").exists()
    with pytest.raises(WeightsError):
        georsic.open(tmp_path / "other.grsc").read()


def test_unwritable_output(tmp_path, aerial):
    (tmp_path / "file.txt").write_text("x")
    result = run_cli("compress", aerial, tmp_path / "file.txt" / "out.grsc")
    assert_clean_failure(result, 3, "does not exist")


def test_unwritable_decompress_output(tmp_path, aerial_archive):
    with pytest.raises(OutputError, match="does not exist"):
        georsic.decompress(aerial_archive, tmp_path / "no" / "such" / "dir" / "out.tif")
    result = run_cli("decompress", aerial_archive, tmp_path)
    assert_clean_failure(result, 3, "is a folder")


def test_cancel_leaves_nothing(tmp_path, aerial, aerial_archive):
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        georsic.compress(aerial, tmp_path / "c.grsc", tile_size=128, cancel=cancel)
    with pytest.raises(Cancelled):
        georsic.decompress(aerial_archive, tmp_path / "c.tif", cancel=lambda: True)
    assert leftovers(tmp_path) == []


def test_existing_output_is_replaced_only_on_success(tmp_path, aerial):
    target = tmp_path / "keep.grsc"
    target.write_bytes(b"previous")
    with pytest.raises(Cancelled):
        georsic.compress(aerial, target, cancel=lambda: True, overwrite=True)
    assert target.read_bytes() == b"previous"


def test_batch_continues_past_bad_files(tmp_path, data_dir):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(data_dir / "solaris_rgb_unmasked.tif", inputs / "a.tif")
    shutil.copy(data_dir / "spacenet_pan_uint16.tif", inputs / "b.tif")
    (inputs / "broken.tif").write_text("not a raster")
    result = run_cli("batch", "compress", inputs, "--out-dir", tmp_path / "out", "-q", "2")
    assert result.returncode == 6
    assert "broken.tif: error" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.grsc", "b.grsc"]
    result = run_cli("batch", "decompress", tmp_path / "out", "--out-dir", tmp_path / "back")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["a.tif", "b.tif"]


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """`georsic models | head -1`: the pipe closes before georsic has written everything."""
    process = subprocess.Popen([sys.executable, "-m", "georsic.cli", "models"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # as `head` does once it has what it wants
    stderr = process.stderr.read().decode()
    process.wait(timeout=120)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert process.returncode == 141
