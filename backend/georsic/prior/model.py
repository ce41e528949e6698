"""The Code-RSIC decoder-side prior at inference time: :class:`CodePrior`.

Li & Hou 2024, "Code-RSIC: Remote Sensing Image Compression with Codebook Prior"
(arXiv 2407.12295): a codebook of remote-sensing textures learned by a VQGAN (Esser et al.
2021), a Transformer that predicts code indices from the ELIC-decoded image, and a
hierarchical prior integration network (HPIN) that fuses the decoded image's features into
the high-quality decoder, with a fidelity weight as in CodeFormer (Zhou et al. 2022).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from georsic.prior.hpin import HPIN, ImageFusion
from georsic.prior.lookup import CodeLookup
from georsic.prior.vqgan import Decoder, EMACodebook, Encoder, widths

MODES = ("nearest", "transformer", "hpin", "full")

PRESETS: dict[str, dict] = {
    # what trains on a 2-core CPU in hours (benchmarks/results/prior_step_cost.md)
    "cpu": {"width": 48, "embed_dim": 64, "codebook_size": 512, "blocks": 2, "downs": 1,
            "d_model": 256, "layers": 4, "heads": 8, "hpin_heads": 4, "window": 8,
            "default_fidelity": 0.5},
    # CodeFormer-like widths for a GPU (scripts/gpu_prior_session.sh)
    "gpu": {"width": 96, "embed_dim": 128, "codebook_size": 1024, "blocks": 2, "downs": 2,
            "d_model": 384, "layers": 6, "heads": 8, "hpin_heads": 8, "window": 8,
            "default_fidelity": 0.5},
}

VQGAN_KEYS = ("width", "embed_dim", "codebook_size", "blocks", "downs")


class CodePrior(nn.Module):
    """E_L -> Transformer -> codes -> D_H with HPIN fusion, on RGB in [0, 1].

    ``forward(x, fidelity)`` takes any (B, 3, H, W); it is padded (replicated edges) to a
    multiple of :attr:`stride` and cropped back.  ``mode`` selects the ablations:
    ``"nearest"`` decodes with D_H the codes nearest to E_L's features (no Transformer),
    ``"transformer"`` the Transformer's codes without HPIN, ``"hpin"`` the Transformer's codes
    with HPIN's feature scales at fidelity ``w`` (0: prior only, 1: closest to the input), and
    ``"full"`` (default) also HPIN's image scale (:class:`~georsic.prior.hpin.ImageFusion`)
    when the prior has one (``image_fusion`` > 0: its width), else the same as ``"hpin"``.
    """

    def __init__(self, width: int = 48, embed_dim: int = 64, codebook_size: int = 512,
                 blocks: int = 2, downs: int = 1, d_model: int = 256, layers: int = 4,
                 heads: int = 8, hpin_heads: int = 4, window: int = 8,
                 default_fidelity: float = 0.5, image_fusion: int = 0,
                 fusion_blocks: int = 4) -> None:
        super().__init__()
        self.stride = 4 * 2**downs
        """Pixels per code a side: the token grid is the image divided by this."""
        self.default_fidelity = default_fidelity
        self.enc_l = Encoder(width, embed_dim, blocks, downs)
        self.codebook = EMACodebook(codebook_size, embed_dim)
        self.decoder = Decoder(width, embed_dim, blocks, downs)
        self.lookup = CodeLookup(embed_dim, codebook_size, d_model, layers, heads)
        self.hpin = HPIN(self.decoder.chans, widths(width, downs)[::-1], hpin_heads, window)
        self.fusion = ImageFusion(image_fusion, fusion_blocks) if image_fusion else None

    def codes(self, z: Tensor, mode: str) -> tuple[Tensor, Tensor | None]:
        """Code indices (B, h, w) for E_L features ``z`` and the Transformer's logits."""
        if mode == "nearest":
            b, d, h, w = z.shape
            flat = z.permute(0, 2, 3, 1).reshape(-1, d)
            return self.codebook.nearest(flat).view(b, h, w), None
        logits = self.lookup(z)
        return logits.argmax(1), logits

    def run(self, x: Tensor, fidelity: float, mode: str = "full") -> dict:
        """Unclamped output and intermediates (for training); ``x`` a multiple of the stride."""
        if mode not in MODES:
            raise ValueError(f"unknown prior mode {mode!r}; use one of {', '.join(MODES)}")
        z, feats = self.enc_l(x, features=True)
        idx, logits = self.codes(z, mode)
        q = self.codebook.lookup(idx)
        fuse = None
        if mode in ("hpin", "full"):
            coarse_first = feats[::-1]

            def fuse(scale: int, h: Tensor) -> Tensor:
                return self.hpin.fuse(scale, h, coarse_first[scale], fidelity)

        x_prior = self.decoder(q, fuse)
        x_hat = x_prior
        if mode == "full" and self.fusion is not None:
            x_hat = self.fusion(x, x_prior, fidelity)
        return {"x_hat": x_hat, "x_prior": x_prior, "z": z, "idx": idx, "logits": logits}

    def forward(self, x: Tensor, fidelity: float | None = None, mode: str = "full") -> Tensor:
        fidelity = self.default_fidelity if fidelity is None else float(fidelity)
        if not 0.0 <= fidelity <= 1.0:
            raise ValueError(f"fidelity must be between 0 and 1, not {fidelity}")
        h, w = x.shape[-2:]
        ph, pw = -h % self.stride, -w % self.stride
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return self.run(x, fidelity, mode)["x_hat"][..., :h, :w].clamp(0, 1)

    @classmethod
    def from_vqgan(cls, vqgan, config: dict) -> CodePrior:
        """A prior whose E_L starts from E_H and whose codebook and D_H are the VQGAN's."""
        prior = cls(**config)
        prior.enc_l.load_state_dict(vqgan.encoder.state_dict())
        prior.codebook.load_state_dict(vqgan.codebook.state_dict())
        prior.decoder.load_state_dict(vqgan.decoder.state_dict())
        return prior


PRIORS = {"code-rsic": CodePrior}


def build_prior(architecture: str, config: dict) -> CodePrior:
    """Instantiate prior architecture ``architecture`` with keyword arguments ``config``."""
    try:
        builder = PRIORS[architecture]
    except KeyError:
        raise ValueError(f"unknown prior architecture {architecture!r}; known: "
                         f"{sorted(PRIORS)}") from None
    return builder(**config)


def load_prior(entry=None, device: str = "cpu") -> CodePrior:
    """The installed prior of manifest entry ``entry`` (default: the manifest's default prior),
    in eval mode on ``device``; its weights are checked against the manifest's sha256."""
    from georsic.errors import WeightsError
    from georsic.weights import find_model, load_entry_state_dict

    if entry is None or isinstance(entry, str):
        entry = find_model(entry, kind="prior")
    if entry.kind != "prior":
        raise ValueError(f"model {entry.id!r} is a {entry.kind}, not a prior")
    model = build_prior(entry.architecture, entry.config)
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in load_entry_state_dict(entry).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # the codebook's EMA statistics are only needed for training and are not shipped
    missing = [k for k in missing if not k.startswith("codebook.") or k == "codebook.embed"]
    if missing or unexpected:
        raise WeightsError(f"prior weights {entry.path} do not fit architecture "
                           f"{entry.architecture!r}: missing {missing[:3]}, unexpected "
                           f"{unexpected[:3]}")
    return model.to(device).eval()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
