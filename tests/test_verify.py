"""georsic verify: intact archives pass; damaged tiles, missing weights, non-archives named."""

from __future__ import annotations

from test_errors import run_cli
from testdata import copy_needing_other_weights, damaged_copy

import georsic
from georsic.errors import TileError, WeightsError


def test_intact_archive_has_no_problems(aerial_archive):
    with georsic.open(aerial_archive) as archive:
        assert archive.tile_count > 1
        assert archive.verify() == []
        assert archive.verify(decode=True, device="cpu") == []


def test_damaged_tile_and_missing_weights_are_named(aerial_archive, tmp_path):
    with georsic.open(damaged_copy(aerial_archive, tmp_path / "d.grsc", tile=2)) as archive:
        for decode in (False, True):
            problems = archive.verify(decode=decode, device="cpu")
            assert [type(p) for p in problems] == [TileError], problems
            assert problems[0].tile == 2 and "tile 2" in str(problems[0])
    with georsic.open(copy_needing_other_weights(aerial_archive, tmp_path / "w.grsc")) as archive:
        problems = archive.verify()
        assert [type(p) for p in problems] == [WeightsError]
        assert "elic-vr-future" in str(problems[0])


def test_cli_reports_each_archive_and_exits_with_the_worst(aerial_archive, tmp_path):
    folder = tmp_path / "archives"
    folder.mkdir()
    (folder / "good.grsc").write_bytes(aerial_archive.read_bytes())
    result = run_cli("verify", folder)
    assert result.returncode == 0, result.stderr
    assert "good.grsc: ok" in result.stdout and "intact" in result.stdout

    copy_needing_other_weights(aerial_archive, folder / "other.grsc")
    result = run_cli("verify", folder)
    assert result.returncode == 5, result.stderr
    assert "other.grsc: 1 problem(s)" in result.stderr and "elic-vr-future" in result.stderr

    damaged_copy(aerial_archive, folder / "damaged.grsc", tile=1)
    (folder / "photo.grsc").write_bytes(b"\xff\xd8\xff\xe0 jpeg")
    result = run_cli("verify", folder)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    assert "tile 1" in result.stderr and "not a GeoRSIC archive" in result.stderr
    assert "good.grsc: ok" in result.stdout
