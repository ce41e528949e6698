"""``georsic bench speed``: one small raster through the whole pipeline, the table it writes."""

from __future__ import annotations

import pytest

from georsic.bench import speed

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def test_speed_bench_times_georsic_and_the_classical_codecs_and_names_the_cpu():
    results = speed.run([0.05], [3.0], threads=1, profile=False, bd=False, against="")
    row = results["sizes"][0]
    timed = row["georsic"]["3.0"]
    assert timed["encode_mps"] > 0 and timed["decode_mps"] > 0 and 0 < timed["bpp"] < 24
    assert isinstance(results["cpu"], str) and results["cpu"]
    text = speed.markdown(results, "georsic bench speed --sizes 0.05 --qualities 3")
    assert f"| {row['size']} | 0.05 | 3.0 | default | {timed['bpp']:.4f} |" in text
    assert results["cpu"] in text
    for name in row["classical"]:
        assert f"| {row['size']} | {name} |" in text


def test_speed_bench_repeats_each_timing_and_gives_the_median_and_range():
    results = speed.run([0.05], [3.0], threads=1, profile=False, bd=False, against="",
                        repeat=3)
    timed = results["sizes"][0]["georsic"]["3.0"]
    for way in ("encode", "decode"):
        runs = timed[f"{way}_runs_s"]
        assert len(runs) == 3 and timed[f"{way}_s"] == sorted(runs)[1]
        low, high = timed[f"{way}_mps_range"]
        assert low <= timed[f"{way}_mps"] <= high
    text = speed.markdown(results, "georsic bench speed --sizes 0.05 --repeat 3")
    assert "median of 3 runs" in text
    assert f"{timed['decode_mps']:.3f} ({low:.2f}-{high:.2f})" in text


def test_speed_bench_times_exact_archives_beside_the_default_ones():
    results = speed.run([0.05], [3.0], threads=1, profile=False, bd=False, against="",
                        exact=True)
    row = results["sizes"][0]
    default, exact = row["georsic"]["3.0"], row["georsic_exact"]["3.0"]
    assert exact["encode_mps"] > 0 and exact["decode_mps"] > 0
    # the same streams plus a 16-byte digest per tile and the calibration in the header
    assert 0 < exact["bpp"] - default["bpp"] < 1.0
    text = speed.markdown(results, "georsic bench speed --sizes 0.05 --exact")
    assert f"| {row['size']} | 0.05 | 3.0 | exact | {exact['bpp']:.4f} |" in text


def test_speed_bench_times_a_named_model_beside_a_baseline():
    """``--model`` and ``--baseline``: two models' archives timed in the same runs, each row
    named; the archives are each model's (the shipped v4 and v5 code the same crop to other
    sizes)."""
    results = speed.run([0.05], [3.0], threads=1, profile=False, bd=False, against="",
                        model="elic-vr-s-v5", baseline="elic-vr-s-v4")
    assert results["model"] == "elic-vr-s-v5" and results["baseline"] == "elic-vr-s-v4"
    row = results["sizes"][0]
    ours, baseline = row["georsic"]["3.0"], row["baseline"]["3.0"]
    assert ours["decode_mps"] > 0 and baseline["decode_mps"] > 0
    assert ours["bpp"] != baseline["bpp"]
    text = speed.markdown(results, "georsic bench speed --model elic-vr-s-v5 --baseline v4")
    assert f"| 3.0 | elic-vr-s-v4 default | {baseline['bpp']:.4f} |" in text
    assert f"| 3.0 | default | {ours['bpp']:.4f} |" in text
