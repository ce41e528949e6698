"""Stage 3 of Code-RSIC: the hierarchical prior integration network (HPIN).

At each fused scale of D_H, a Transformer block with window self-attention over the decoder's
features, then a multi-head cross-attention module (MCM) whose queries come from D_H (decoding
the codebook prior) and whose keys and values come from the LQ encoder E_L (what the decoded
image shows), then an MLP (Li & Hou 2024, arXiv 2407.12295).  The result is blended in with a
fidelity weight ``w`` given at decode time, as CodeFormer's controllable feature transformation
does (Zhou et al. 2022): ``h + w * (hpin(h, e) - h)``; ``w = 0`` decodes the prior alone and
``w = 1`` stays closest to the decoded image.  Attention is over non-overlapping windows
(Liu et al. 2021, Swin) so cost grows linearly with the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def to_windows(x: Tensor, ws: int) -> tuple[Tensor, tuple[int, int, int, int]]:
    """(B, C, H, W) to (B * windows, ws * ws, C) tokens, padding H, W to multiples of ``ws``."""
    b, c, h, w = x.shape
    ph, pw = -h % ws, -w % ws
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    hh, ww = h + ph, w + pw
    x = x.view(b, c, hh // ws, ws, ww // ws, ws).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(-1, ws * ws, c), (b, h, w, hh)


def from_windows(t: Tensor, ws: int, shape: tuple[int, int, int, int]) -> Tensor:
    b, h, w, hh = shape
    c = t.shape[-1]
    ww = t.shape[0] // b // (hh // ws) * ws
    x = t.view(b, hh // ws, ww // ws, ws, ws, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, hh, ww)[..., :h, :w]


class HPINBlock(nn.Module):
    """Window self-attention on D_H features + MCM cross-attention to E_L features + MLP.

    The output projections start at zero, so a fresh block leaves D_H unchanged.
    """

    def __init__(self, dec_ch: int, enc_ch: int, heads: int = 4, window: int = 8) -> None:
        super().__init__()
        self.window = window
        self.enc_proj = nn.Linear(enc_ch, dec_ch)
        self.norm1, self.norm2 = nn.LayerNorm(dec_ch), nn.LayerNorm(dec_ch)
        self.norm_kv, self.norm3 = nn.LayerNorm(dec_ch), nn.LayerNorm(dec_ch)
        self.self_attn = nn.MultiheadAttention(dec_ch, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dec_ch, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dec_ch, 2 * dec_ch), nn.GELU(),
                                 nn.Linear(2 * dec_ch, dec_ch))
        for proj in (self.self_attn.out_proj, self.cross_attn.out_proj, self.mlp[2]):
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(self, dec: Tensor, enc: Tensor) -> Tensor:
        q, shape = to_windows(dec, self.window)
        kv, _ = to_windows(enc, self.window)
        kv = self.norm_kv(self.enc_proj(kv))
        h = self.norm1(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        q = q + self.cross_attn(self.norm2(q), kv, kv, need_weights=False)[0]
        q = q + self.mlp(self.norm3(q))
        return from_windows(q, self.window, shape)


class HPIN(nn.Module):
    """One :class:`HPINBlock` per decoder scale, coarsest first.

    Parameters
    ----------
    dec_chans, enc_chans : list of int
        Channels of D_H and of E_L at each fused scale, coarsest first.
    """

    def __init__(self, dec_chans: list[int], enc_chans: list[int], heads: int = 4,
                 window: int = 8) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(HPINBlock(d, e, heads, window)
                                    for d, e in zip(dec_chans, enc_chans, strict=True))

    def fuse(self, scale: int, dec: Tensor, enc: Tensor, fidelity: float) -> Tensor:
        if fidelity == 0:
            return dec
        return dec + fidelity * (self.blocks[scale](dec, enc) - dec)


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ImageFusion(nn.Module):
    """HPIN's image scale: the decoded image itself as the last fused input.

    D_H's output ``p`` (the prior's image at fidelity ``w``) and the codec's decoding ``d``
    go into a small residual network at half resolution (pixel-unshuffle by 2) that predicts
    a correction to ``d``: ``f = d + net(d, p)``, then ``out = p + w * (f - p)``.  So ``w = 0``
    is still the prior alone and ``w = 1`` the decoded image with the prior's texture brought
    in where it helps.  The last layer starts at zero, so an untrained module returns ``d`` at
    ``w = 1``.  This scale is our addition to Li & Hou 2024's HPIN (which fuses features only):
    a VQGAN small enough to train on a CPU reconstructs at ~21 dB, so feature fusion alone
    cannot stay within 1 dB of the codec; anchoring the last scale on the decoded pixels can.
    """

    def __init__(self, width: int = 48, blocks: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.PixelUnshuffle(2), nn.Conv2d(24, width, 3, padding=1), nn.LeakyReLU(0.2),
            *(_ResBlock(width) for _ in range(blocks)),
            nn.Conv2d(width, 12, 3, padding=1), nn.PixelShuffle(2))
        nn.init.zeros_(self.net[-2].weight)
        nn.init.zeros_(self.net[-2].bias)

    def forward(self, decoded: Tensor, prior: Tensor, fidelity: float) -> Tensor:
        if fidelity == 0:
            return prior
        fused = decoded + self.net(torch.cat([decoded, prior], 1))
        return torch.lerp(prior, fused, fidelity)  # exactly ``fused`` at w = 1
