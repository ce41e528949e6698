"""Code-RSIC prior networks (georsic.prior): shapes, codebook, fidelity weight, registry."""

from __future__ import annotations

import pytest
import torch

from georsic.prior import MODES, CodePrior, build_prior
from georsic.prior.hpin import from_windows, to_windows
from georsic.prior.vqgan import VQGAN, EMACodebook

TINY = {"width": 8, "embed_dim": 8, "codebook_size": 16, "blocks": 1, "downs": 1,
        "d_model": 32, "layers": 1, "heads": 2, "hpin_heads": 2, "window": 4}


def _perturb_hpin(prior: CodePrior) -> None:
    """Give the zero-initialised HPIN output projections random weights (as training would)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for block in prior.hpin.blocks:
            for proj in (block.self_attn.out_proj, block.cross_attn.out_proj, block.mlp[2]):
                proj.weight.normal_(0, 0.5)


@pytest.mark.parametrize("size", [(32, 48), (37, 50)])
def test_code_prior_shapes_all_modes(size):
    prior = CodePrior(**TINY).eval()
    assert prior.stride == 8
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        for mode in MODES:
            out = prior(x, 0.5, mode=mode)
            assert out.shape == x.shape
            assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_fidelity_changes_output_and_zero_is_prior_only():
    prior = CodePrior(**TINY).eval()
    _perturb_hpin(prior)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        w0, w1 = prior(x, 0.0), prior(x, 1.0)
        prior_only = prior(x, mode="transformer")
    assert torch.equal(w0, prior_only)
    assert float((w0 - w1).abs().mean()) > 1e-4
    with pytest.raises(ValueError, match="fidelity"):
        prior(x, 1.5)
    with pytest.raises(ValueError, match="mode"):
        prior(x, 0.5, mode="bogus")


def test_cpu_preset_builds_from_registry():
    prior = build_prior("code-rsic", {})
    assert isinstance(prior, CodePrior) and prior.stride == 8
    with pytest.raises(ValueError, match="unknown prior architecture"):
        build_prior("nope", {})


def test_windows_round_trip():
    x = torch.rand(2, 5, 11, 13)
    tokens, shape = to_windows(x, 4)
    assert tokens.shape[1:] == (16, 5)
    assert torch.equal(from_windows(tokens, 4, shape), x)


def test_codebook_usage_statistics():
    idx = torch.tensor([0, 1, 2, 3] * 8)
    usage = EMACodebook.usage(idx, 16)
    assert usage["codes_used"] == 4
    assert usage["perplexity"] == pytest.approx(4.0, rel=1e-5)
    assert EMACodebook.usage(torch.zeros(10, dtype=torch.long), 16)["perplexity"] == 1.0


def test_kmeans_init_uses_many_codes_and_ema_follows_data():
    torch.manual_seed(0)
    book = EMACodebook(size=8, dim=2, decay=0.5).train()
    centres = torch.tensor([[5.0 * i, -3.0 * i] for i in range(8)])
    z = (centres[torch.randint(0, 8, (256,))] + 0.01 * torch.randn(256, 2))
    z = z.T.reshape(1, 2, 16, 16)
    q, idx, commit = book(z)
    assert bool(book.initted)
    assert EMACodebook.usage(idx, 8)["codes_used"] >= 6
    for _ in range(5):
        q, idx, commit = book(z)
    # the codes sit on (most of) the clusters: the error is a small part of the data's spread
    assert float(commit) < 0.05 * float(z.var(dim=(0, 2, 3)).mean())
    assert float(commit) < float(EMACodebook(size=8, dim=2).eval()(z)[2])  # an unfitted one


def test_dead_codes_restart_on_encoder_outputs():
    torch.manual_seed(0)
    book = EMACodebook(size=8, dim=4, restart_below=1.0)
    book.cluster_size.fill_(5.0)
    book.cluster_size[[2, 5]] = 0.0
    flat = torch.randn(32, 4) + 100.0  # far from every current code
    before = book.embed.clone()
    assert book.restart_dead(flat) == 2
    for code in (2, 5):
        assert float(torch.cdist(book.embed[code][None], flat).min()) < 0.05
    keep = [i for i in range(8) if i not in (2, 5)]
    assert torch.equal(book.embed[keep], before[keep])
    assert book.restart_dead(flat) == 0


def test_vqgan_straight_through_gradient():
    model = VQGAN(width=8, embed_dim=8, codebook_size=16, blocks=1).train()
    x = torch.rand(2, 3, 32, 32)
    x_hat, idx, commit = model(x)
    assert x_hat.shape == x.shape and idx.shape == (2, 4, 4)
    (x_hat - x).abs().mean().backward()
    assert model.encoder.stem.weight.grad is not None
    assert float(model.encoder.stem.weight.grad.abs().sum()) > 0


def test_image_scale_untrained_is_decoded_at_w1_and_prior_at_w0():
    """HPIN's image scale starts at zero: w = 1 returns the decoded image, w = 0 the prior."""
    prior = CodePrior(**TINY, image_fusion=8, fusion_blocks=1).eval()
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        assert torch.equal(prior(x, 1.0), x)
        assert torch.equal(prior(x, 0.0), prior(x, 0.0, mode="hpin"))
        half = prior.run(x, 0.5)
        assert torch.allclose(half["x_hat"], 0.5 * (half["x_prior"] + x), atol=1e-6)


def test_image_scale_trained_changes_w1_and_is_absent_without_config():
    prior = CodePrior(**TINY, image_fusion=8, fusion_blocks=1).eval()
    torch.manual_seed(2)
    with torch.no_grad():
        prior.fusion.net[-2].weight.normal_(0, 0.1)
        x = torch.rand(1, 3, 32, 32)
        assert not torch.equal(prior(x, 1.0), x)
        assert not torch.equal(prior(x, 1.0), prior(x, 1.0, mode="hpin"))
    assert CodePrior(**TINY).fusion is None
    assert not any(k.startswith("fusion.") for k in CodePrior(**TINY).state_dict())
