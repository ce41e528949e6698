"""Training the Code-RSIC prior: steps learn, runs resume, signals save, export verifies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from georsic.cli import main
from georsic.prior import load_prior
from georsic.train.prior import PriorTrainConfig, _Trainer, train_prior
from georsic.train.prior_data import PairPool, build_pair_cache
from georsic.train.prior_export import export_prior
from georsic.weights import _verified, find_model

TINY = {"width": 8, "embed_dim": 8, "codebook_size": 16, "blocks": 1, "downs": 1,
        "d_model": 32, "layers": 1, "heads": 2, "hpin_heads": 2, "window": 4}
SMALL_IMAGE = Path(__file__).parent / "data" / "solaris_rgb_unmasked.tif"  # 200x200 RGB


@pytest.fixture(autouse=True)
def one_thread():
    """As training runs (``--threads 1``): two threads on a busy 2-core machine are far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(out: Path, stage: str, **kw) -> PriorTrainConfig:
    base = {"out": str(out), "stage": stage, "data": [str(SMALL_IMAGE)], "exclude": [],
            "overrides": TINY, "batch": 2, "patch": 64, "threads": 1, "log_every": 1,
            "checkpoint_every": 1000, "gan_start": 2}
    base.update(kw)
    return PriorTrainConfig(**base)


def test_stage1_steps_reduce_the_loss(tmp_path):
    torch.manual_seed(0)
    trainer = _Trainer(_cfg(tmp_path, "1", lr=5e-3, gan_weight=0.0, patch=48))
    from georsic.train.data import load_rgb8

    image = torch.from_numpy(load_rgb8(SMALL_IMAGE)).float()[None] / 255
    x = torch.cat([image[..., :48, :48], image[..., 100:148, 80:128]])
    losses = [trainer.step_stage1(x)["loss"] for _ in range(12)]
    assert sum(losses[-3:]) / 3 < 0.85 * losses[0]
    metrics = trainer.step_stage1(x)
    assert 1 <= metrics["perplexity"] <= 16 and 1 <= metrics["codes_used"] <= 16


def test_resume_continues_the_step_count(tmp_path):
    train_prior(_cfg(tmp_path, "1", steps=3))
    path = train_prior(_cfg(tmp_path, "1", steps=5))
    state = torch.load(path, weights_only=False)
    assert state["step"] == 5
    steps = [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").open()]
    assert steps == [1, 2, 3, 4, 5]
    assert state["history"]["1"]["steps"] == 5


def test_later_stage_first_is_a_clear_error(tmp_path, capsys):
    rc = main(["train", "prior", "--out", str(tmp_path), "--stage", "2"])
    assert rc == 2
    assert "train stage 1 first" in capsys.readouterr().err


def test_pairs_stages_2_3_export_and_verify(tmp_path, monkeypatch, capsys):
    cache = build_pair_cache([SMALL_IMAGE], tmp_path / "cache", exclude=[], qualities=(0.0,),
                             between=1, region=64, regions_per_image=1)
    pool = PairPool(cache, patch=32)
    orig, dec, quality = pool.batch(2)
    assert orig.shape == dec.shape == (2, 3, 32, 32)
    assert float((orig - dec).abs().mean()) > 0  # the codec's decoding differs from the original
    assert 0.0 <= float(quality.min()) and float(quality.max()) <= 1.0
    run = tmp_path / "run"
    train_prior(_cfg(run, "1", steps=2))
    path = train_prior(_cfg(run, "2,3", steps=2, patch=32, cache=str(cache)))
    state = torch.load(path, weights_only=False)
    assert set(state["history"]) == {"1", "2,3"}
    weights = tmp_path / "weights"
    bench = {"meta": {"command": "georsic bench prior"}, "summary": {"verdicts": [], "table": {
        "q0/elic": {"quality": 0.0, "method": "elic", "psnr": 20.0, "lpips": 0.5}}}}
    entry = export_prior(run, weights, "prior-test", make_default=True, figures=bench)
    assert entry["kind"] == "prior" and entry["training"]["total_steps"] == 4
    assert entry["figures"]["means"]["q0/elic"]["lpips"] == 0.5
    manifest = json.loads((weights / "manifest.json").read_text())
    assert manifest["default"]["prior"] == "prior-test"
    monkeypatch.setenv("GEORSIC_WEIGHTS", str(weights))
    assert main(["models", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "prior-test" in out and "default prior" in out
    prior = load_prior(find_model("prior-test", kind="prior"))
    assert prior(torch.rand(1, 3, 40, 40), 0.5).shape == (1, 3, 40, 40)
    with open(weights / "prior-test.safetensors", "r+b") as f:  # damage it
        f.seek(-8, 2)
        f.write(b"\0" * 8)
    _verified.cache_clear()  # the check is cached per process; a new process would not have it
    assert main(["models", "--verify"]) == 5


def test_sigstop_sigcont_then_sigterm_saves_and_exits(tmp_path):
    pid_file = tmp_path / "train.pid"
    cmd = [sys.executable, "-m", "georsic.cli", "train", "prior", str(SMALL_IMAGE),
           "--out", str(tmp_path), "--stage", "1", "--steps", "100000", "--patch", "64",
           "--batch", "2", "--threads", "1", "--exclude", "--pid-file", str(pid_file),
           "--set", *(f"{k}={v}" for k, v in TINY.items())]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = tmp_path / "train_log.jsonl"
    deadline = time.time() + 120
    while not (log.exists() and log.stat().st_size) and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.5)
    assert int(pid_file.read_text()) == proc.pid
    os.kill(proc.pid, signal.SIGSTOP)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGCONT)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    state = torch.load(tmp_path / "stage1.pt", weights_only=False)
    assert state["step"] >= 10
    assert not pid_file.exists()


@pytest.mark.parametrize("bad", ["width", "width=", "=3"])
def test_bad_override_is_a_clear_error(tmp_path, capsys, bad):
    rc = main(["train", "prior", "--out", str(tmp_path), "--stage", "1", "--set", bad])
    assert rc == 2 and "--set" in capsys.readouterr().err


def test_stage4_trains_image_scale_only_resumes_and_exports(tmp_path, monkeypatch):
    from georsic.train.prior_fusion import FusionTrainConfig, train_fusion

    cache = build_pair_cache([SMALL_IMAGE], tmp_path / "cache", exclude=[], qualities=(0.0,),
                             between=0, region=64, regions_per_image=1)
    run = tmp_path / "run"
    train_prior(_cfg(run, "1", steps=1))
    train_prior(_cfg(run, "2,3", steps=1, patch=32, cache=str(cache)))
    before = torch.load(run / "stage23.pt", weights_only=False)["prior"]
    cfg = FusionTrainConfig(out=str(run), cache=str(cache), width=8, blocks=1, steps=3,
                            batch=2, patch=32, threads=1, log_every=1, gan_start=2)
    path = train_fusion(cfg)
    state = torch.load(path, weights_only=False)
    assert state["step"] == 3 and set(state["history"]) == {"1", "2,3", "4"}
    for name, value in before.items():  # everything but the image scale is frozen
        assert torch.equal(state["prior"][name], value), name
    last_conv = state["prior"]["fusion.net.4.weight"]  # zero at the start
    assert float(last_conv.abs().sum()) > 0  # it learnt
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["stage"] == "4" and "gan_g" in log[-1] and "psnr_decoded" in log[-1]
    cfg.steps = 4
    assert torch.load(train_fusion(cfg), weights_only=False)["step"] == 4  # resumed
    weights = tmp_path / "weights"
    entry = export_prior(run, weights, "prior-fused")
    assert entry["config"]["image_fusion"] == 8
    assert entry["training"]["total_steps"] == 1 + 1 + 4
    monkeypatch.setenv("GEORSIC_WEIGHTS", str(weights))
    prior = load_prior(find_model("prior-fused", kind="prior"))
    x = torch.rand(1, 3, 40, 40)
    assert prior.fusion is not None and not torch.equal(prior(x, 1.0), prior(x, 1.0, "hpin"))
