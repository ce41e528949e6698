"""Rate control: the quality that meets a target PSNR or bit rate."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from testdata import DATA

import georsic
from georsic import pyramid
from georsic.archive import _ENTRY, _RECORD
from georsic.defaults import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE
from georsic.errors import InputError
from georsic.metrics import compare_rasters
from georsic.ratecontrol import Probe, sample_windows, search_quality

AERIAL = DATA / "osbs_aerial_rgb.tif"  # 400x400, nodata 255: small enough to probe whole


def curve(quality: float) -> Probe:
    """A made-up rate-distortion curve, increasing in quality (the search's only assumption)."""
    return Probe(quality, 0.05 * 2 ** (quality / 1.2), 18.0 + 2.0 * quality)


def test_search_finds_the_lowest_quality_reaching_a_psnr():
    fit = search_quality(curve, target_psnr=27.0)
    assert fit.reached and fit.psnr >= 27.0
    assert 4.5 <= fit.quality <= 4.5 + 7 / 2**6  # 27 dB is quality 4.5 on this curve
    assert fit.probes == 3  # the two ends, then the line through them lands on it


def test_search_on_a_bent_curve_stays_bracketed_and_bounded():
    def bent(quality: float) -> Probe:
        return Probe(quality, 0.05 * 2 ** (quality / 1.2), 18.0 + 4.0 * math.sqrt(quality))

    for target in (20.0, 25.0, 28.0):
        fit = search_quality(bent, target_psnr=target)
        lowest = ((target - 18.0) / 4.0) ** 2  # the lowest quality that meets it
        assert fit.reached and fit.psnr >= target and fit.probes <= 8
        assert lowest <= fit.quality
        assert fit.quality <= lowest + 7 / 2**6 or fit.psnr - target <= 0.1


def test_search_finds_the_highest_quality_within_a_rate():
    fit = search_quality(curve, target_bpp=0.4)
    assert fit.reached and fit.bpp <= 0.4
    assert 3.6 - 7 / 2**6 <= fit.quality <= 3.6  # 0.4 bpp is quality 3.6


def test_search_takes_the_nearest_end_when_out_of_reach():
    high = search_quality(curve, target_psnr=60.0)
    assert (high.quality, high.reached, high.probes) == (7.0, False, 1)
    low = search_quality(curve, target_bpp=0.01)
    assert (low.quality, low.reached) == (0.0, False)
    assert search_quality(curve, target_psnr=10.0).quality == 0.0  # met everywhere
    assert search_quality(curve, target_bpp=50.0).quality == 7.0
    with pytest.raises(ValueError):
        search_quality(curve, target_psnr=30.0, target_bpp=0.3)


def test_sample_windows_cover_small_rasters_and_spread_over_large_ones():
    assert sample_windows(400, 300) == [(0, 0, 400, 300)]
    assert len(sample_windows(4_000, 4_000)) == 9  # about 2**19 pixels in windows of 256
    windows = sample_windows(10_000, 2_000)
    assert 6 <= len(windows) <= 9
    assert all(0 <= x <= 10_000 - 256 and 0 <= y <= 2_000 - 256 and w == h == 256
               for x, y, w, h in windows)
    assert max(x for x, *_ in windows) - min(x for x, *_ in windows) > 5_000  # spread out
    thin = sample_windows(100_000, 100)
    assert len(thin) == 8 and all(y == 0 and (w, h) == (256, 100) for _, y, w, h in thin)


def test_compress_to_a_target_psnr_meets_it_on_the_decoded_raster(tmp_path):
    summary = georsic.compress(AERIAL, tmp_path / "a.grsc", target_psnr=20.5)
    georsic.decompress(tmp_path / "a.grsc", tmp_path / "a.tif")
    measured = compare_rasters(AERIAL, tmp_path / "a.tif")["psnr"]
    assert 20.5 <= measured < 21.5  # met, with the lowest quality that meets it
    assert 0 < summary.quality < 7 and summary.fit.reached
    assert summary.fit.quality == summary.quality and summary.fit.psnr >= 20.5
    with georsic.open(tmp_path / "a.grsc") as archive:  # the header says how it was chosen
        assert archive.codec_info["fit"]["target_psnr"] == 20.5
        assert archive.codec_info["fit"]["target_bpp"] is None
        assert "fitted to PSNR 20.5 dB: measured" in archive.describe()
    lower = georsic.compress(AERIAL, tmp_path / "b.grsc", quality=summary.quality - 0.25)
    georsic.decompress(tmp_path / "b.grsc", tmp_path / "b.tif")
    assert compare_rasters(AERIAL, tmp_path / "b.tif")["psnr"] < 20.5
    assert lower.bytes < summary.bytes


def test_compress_to_a_target_rate_stays_near_it(tmp_path):
    summary = georsic.compress(AERIAL, tmp_path / "a.grsc", target_bpp=0.45)
    # the fit counts tiles and mask, not the few hundred bytes of header and index
    header_bpp = 8 * 400 / (400 * 400)
    assert 0.38 < summary.bpp <= 0.45 + header_bpp
    plain = georsic.compress(AERIAL, tmp_path / "b.grsc", quality=summary.quality)
    assert plain.fit is None
    with georsic.open(tmp_path / "b.grsc") as archive:
        assert "fit" not in archive.codec_info and "fitted" not in archive.describe()


def test_targets_are_checked():
    with pytest.raises(InputError, match="not both"):
        georsic.compress(AERIAL, "unused.grsc", quality=3, target_psnr=30)
    with pytest.raises(InputError, match="positive"):
        georsic.fit_quality(AERIAL, target_bpp=-1)
    with pytest.raises(InputError, match="one target"):
        georsic.fit_quality(AERIAL)
    with pytest.raises(InputError, match="does not exist"):
        georsic.fit_quality(DATA / "missing.tif", target_psnr=30)


def test_cli_warns_when_the_target_is_out_of_reach(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "georsic.cli", "compress", str(AERIAL), str(tmp_path / "a.grsc"),
         "--target-psnr", "60"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "out of reach" in result.stderr and "quality 7" in result.stderr
    assert "quality 7.00" in result.stdout
    info = subprocess.run([sys.executable, "-m", "georsic.cli", "info", str(tmp_path / "a.grsc")],
                          capture_output=True, text=True)
    assert "fitted to PSNR 60 dB, out of reach" in info.stdout
    both = subprocess.run(
        [sys.executable, "-m", "georsic.cli", "compress", str(AERIAL), str(tmp_path / "b.grsc"),
         "--quality", "3", "--target-bpp", "0.3"], capture_output=True, text=True)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    assert not (tmp_path / "b.grsc").exists()


def test_estimate_matches_the_archive_it_predicts(tmp_path):
    guess = georsic.estimate(AERIAL, quality=3)
    summary = georsic.compress(AERIAL, tmp_path / "a.grsc", quality=3)
    assert guess.pixels == 400 * 400 and guess.quality == 3
    assert abs(guess.bytes - summary.bytes) < 100  # probed whole: only the header is guessed
    georsic.decompress(tmp_path / "a.grsc", tmp_path / "a.tif")
    assert guess.psnr == pytest.approx(compare_rasters(AERIAL, tmp_path / "a.tif")["psnr"],
                                       abs=0.01)
    fitted = georsic.estimate(AERIAL, target_bpp=0.3)
    assert fitted.bpp <= 0.3 and 0 < fitted.quality < 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.grsc", "a.tif"]  # estimate: none


@pytest.mark.slow
@pytest.mark.parametrize("levels", ["auto", "none"])
def test_estimate_counts_the_pyramid_compress_stores(tmp_path, levels):
    uav = DATA / "deepforest_australia_uav.tif"  # 751x708: sampled in windows, a 4x level
    guess = georsic.estimate(uav, device="cpu", pyramid_levels=levels)
    summary = georsic.compress(uav, tmp_path / "a.grsc", device="cpu", pyramid_levels=levels)
    assert abs(guess.bytes - summary.bytes) <= 0.03 * summary.bytes, (guess, summary.bytes)
    assert bool(guess.pyramid_bytes) == bool(summary.pyramid_factors) == (levels == "auto")
    records = sum(len(pyramid.level_grid(751, 708, f, DEFAULT_TILE_SIZE, DEFAULT_OVERLAP))
                  for f in summary.pyramid_factors)
    coded = summary.pyramid_bytes - records * (_RECORD.size + _ENTRY.size)
    assert abs(guess.pyramid_bytes - coded) <= 0.15 * max(coded, 1), (guess, coded)


def test_cli_estimate_over_a_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("osbs_aerial_rgb.tif", "solaris_rgb_unmasked.tif"):
        (folder / name).write_bytes((DATA / name).read_bytes())
    (folder / "broken.tif").write_bytes(b"not a raster")
    result = subprocess.run([sys.executable, "-m", "georsic.cli", "estimate", str(folder),
                             "-q", "2"], capture_output=True, text=True)
    assert result.returncode == 6  # one file failed, the others were estimated
    assert "broken.tif: error:" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.count("quality 2.00, about") == 2
    assert "2 raster(s): about" in result.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["broken.tif", "osbs_aerial_rgb.tif",
                                                       "solaris_rgb_unmasked.tif"]
