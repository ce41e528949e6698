"""Stage 2 of Code-RSIC: code lookup from the decoded image.

An LQ encoder E_L (the architecture of E_H, initialised from it) reads the ELIC-decoded image;
a Transformer over its token grid predicts, for each position, the index of the code that E_H
gives the *original* image (Li & Hou 2024, arXiv 2407.12295, after the Transformer code
prediction of Zhou et al. 2022, "CodeFormer").  Position comes from a depth-wise convolution
over the grid (conditional position encoding, Chu et al. 2021) rather than a learned table, so
any grid size works.
"""

from __future__ import annotations

from torch import Tensor, nn


class CodeLookup(nn.Module):
    """Transformer from E_L features (B, embed_dim, h, w) to code logits (B, size, h, w)."""

    def __init__(self, embed_dim: int = 64, codebook_size: int = 512, d_model: int = 256,
                 layers: int = 4, heads: int = 8) -> None:
        super().__init__()
        self.inp = nn.Conv2d(embed_dim, d_model, 1)
        self.pos = nn.Conv2d(d_model, d_model, 3, padding=1, groups=d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, 2 * d_model, dropout=0.0,
                                           activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, codebook_size)

    def forward(self, feat: Tensor) -> Tensor:
        h = self.inp(feat)
        h = h + self.pos(h)
        b, c, gh, gw = h.shape
        tokens = self.blocks(h.flatten(2).transpose(1, 2))
        logits = self.head(self.norm(tokens))
        return logits.transpose(1, 2).reshape(b, -1, gh, gw)
