"""Encoder-side latent refinement: never a costlier latent, archives that decode as any other."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window
from test_errors import assert_clean_failure, leftovers, run_cli

import georsic
from georsic.codec import get_codec
from georsic.metrics import compare_rasters
from georsic.models.refine import lambda_at, rd_cost, refine_latent
from georsic.weights import find_model


def test_lambda_interpolates_log_linearly_between_levels():
    lambdas = (0.001, 0.004, 0.016)
    assert lambda_at(lambdas, 0) == pytest.approx(0.001)
    assert lambda_at(lambdas, 1.5) == pytest.approx(0.008)
    assert lambda_at(lambdas, 2) == pytest.approx(0.016)
    assert lambda_at(lambdas, 9) == pytest.approx(0.016)


def test_refined_latent_costs_less_than_the_analysis_transforms(aerial):
    codec = get_codec(find_model(), "cpu")
    with rasterio.open(aerial) as src:
        image = src.read(window=Window(64, 64, 150, 120)).astype(np.float32) / 255.0
    x = codec._pad(image)
    model = codec.model
    with torch.no_grad():
        dtype = next(model.latent_codec.parameters()).dtype  # float32 beside the exact path
        start = (model.g_a(x) * model._gain(model.log_gain, 3.0)).to(dtype)
        before = rd_cost(model, start, x, 3.0, 120, 150).item()
        refined = refine_latent(model, x, 3.0, steps=10, height=120, width=150)
        after = rd_cost(model, refined, x, 3.0, 120, 150).item()
    assert refined.shape == start.shape and refined.dtype == start.dtype
    assert after < before
    assert not any(p.grad is not None for p in model.parameters())  # weights untouched


def test_refined_archive_decodes_like_any_other(tmp_path, aerial):
    plain, refined = tmp_path / "plain.grsc", tmp_path / "refined.grsc"
    a = georsic.compress(aerial, plain, quality=2, tile_size=256, overlap=16)
    b = georsic.compress(aerial, refined, quality=2, tile_size=256, overlap=16, refine=5)
    georsic.decompress(plain, tmp_path / "plain.tif")
    georsic.decompress(refined, tmp_path / "refined.tif")
    plain_psnr = compare_rasters(aerial, tmp_path / "plain.tif")["psnr"]
    refined_psnr = compare_rasters(aerial, tmp_path / "refined.tif")["psnr"]
    assert b.tiles == a.tiles
    # the same trade-off, found more cheaply: within 0.1 dB, and not more bits than 0.1 dB buys
    assert refined_psnr > plain_psnr - 0.1
    assert b.bytes < a.bytes * 1.02
    with rasterio.open(tmp_path / "refined.tif") as out, rasterio.open(aerial) as src:
        assert out.crs == src.crs and out.transform == src.transform


def test_refine_out_of_range_is_a_clean_error(tmp_path, aerial):
    result = run_cli("compress", aerial, tmp_path / "x.grsc", "--refine", "-3")
    assert_clean_failure(result, 2, "refine must be between 0 and")
    assert leftovers(tmp_path) == []
