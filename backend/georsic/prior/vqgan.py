"""Stage 1 of Code-RSIC: a VQGAN (encoder E_H, codebook C, high-quality decoder D_H).

Esser, Rombach & Ommer, "Taming Transformers for High-Resolution Image Synthesis" (CVPR 2021);
codebook prior for compressed remote-sensing images after Li & Hou 2024, "Code-RSIC"
(arXiv 2407.12295), recipe after Zhou et al. 2022, "CodeFormer" (NeurIPS 2022).

Scaled for a CPU: the encoder starts with a pixel-unshuffle by 4 (no full-resolution layers)
and nothing is normalised; ``downs`` stride-2 stages follow, so one code covers
``4 * 2**downs`` pixels a side.  The codebook is learned by exponential moving averages
(van den Oord et al. 2017, appendix; Razavi et al. 2019), initialised by k-means on the first
batch, and codes unused for a while are restarted on random encoder outputs (Dhariwal et al.
2020, "Jukebox"), so that it does not collapse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """conv-act-conv with a skip, no normalisation; the second conv starts small."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv3(ch, ch), conv3(ch, ch)
        nn.init.normal_(self.conv2.weight, std=1e-3)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


def widths(width: int, downs: int) -> list[int]:
    """Channel count at each scale, finest (1/4) first: doubling per stage, capped at 4x."""
    return [width * min(2**i, 4) for i in range(downs + 1)]


class Encoder(nn.Module):
    """Pixel-unshuffle by 4, residual stages with ``downs`` stride-2 convs, a 1x1 to codes.

    ``forward(x, features=True)`` also returns the features at each scale, finest first, which
    the HPIN of stage 3 reads.
    """

    def __init__(self, width: int = 64, embed_dim: int = 64, blocks: int = 2,
                 downs: int = 1) -> None:
        super().__init__()
        chans = widths(width, downs)
        self.stem = conv3(48, chans[0])
        self.stages = nn.ModuleList()
        self.downs = nn.ModuleList()
        for i, ch in enumerate(chans):
            if i:
                self.downs.append(conv3(chans[i - 1], ch, stride=2))
            self.stages.append(nn.Sequential(*[ResBlock(ch) for _ in range(blocks)]))
        self.out = nn.Conv2d(chans[-1], embed_dim, 1)

    def forward(self, x: Tensor, features: bool = False):
        h = self.stem(F.pixel_unshuffle(x * 2 - 1, 4))
        feats = []
        for i, stage in enumerate(self.stages):
            if i:
                h = self.downs[i - 1](F.silu(h))
            h = stage(h)
            feats.append(h)
        z = self.out(F.silu(h))
        return (z, feats) if features else z


class Decoder(nn.Module):
    """D_H: codes back to RGB, coarsest scale first, a pixel-shuffle by 4 at the end.

    ``fuse(scale, h)`` (optional) is called on the features after each scale's blocks,
    coarsest (the token grid) first, and returns the features to continue with: the HPIN of
    stage 3 hooks in there.
    """

    def __init__(self, width: int = 64, embed_dim: int = 64, blocks: int = 2,
                 downs: int = 1) -> None:
        super().__init__()
        chans = widths(width, downs)[::-1]
        self.chans = chans
        self.inp = conv3(embed_dim, chans[0])
        self.stages = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, ch in enumerate(chans):
            if i:
                self.ups.append(conv3(chans[i - 1], ch))
            self.stages.append(nn.Sequential(*[ResBlock(ch) for _ in range(blocks)]))
        self.out = conv3(chans[-1], 48)

    def forward(self, q: Tensor, fuse=None) -> Tensor:
        h = self.inp(q)
        for i, stage in enumerate(self.stages):
            if i:
                h = self.ups[i - 1](F.interpolate(F.silu(h), scale_factor=2, mode="nearest"))
            h = stage(h)
            if fuse is not None:
                h = fuse(i, h)
        return (F.pixel_shuffle(self.out(F.silu(h)), 4) + 1) / 2


class EMACodebook(nn.Module):
    """Nearest-neighbour vector quantiser with EMA updates, k-means init and dead-code restarts.

    Parameters
    ----------
    size, dim : int
        Number of codes and their dimension.
    decay : float
        EMA decay of the code counts and sums.
    restart_below : float
        A code whose EMA count falls below this is moved onto a random encoder output.
    """

    def __init__(self, size: int = 512, dim: int = 64, decay: float = 0.99,
                 restart_below: float = 1.0, kmeans_iters: int = 10) -> None:
        super().__init__()
        self.size, self.dim, self.decay = size, dim, decay
        self.restart_below, self.kmeans_iters = restart_below, kmeans_iters
        self.register_buffer("embed", torch.randn(size, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("initted", torch.tensor(False))
        self.last_restarts = 0

    def nearest(self, flat: Tensor) -> Tensor:
        """Index of the nearest code of each row of ``flat`` (N, dim)."""
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed.t()
                + self.embed.pow(2).sum(1)[None])
        return dist.argmin(1)

    def lookup(self, idx: Tensor) -> Tensor:
        """Codes of indices ``idx`` (B, h, w) as a (B, dim, h, w) map."""
        return F.embedding(idx, self.embed).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def _kmeans_init(self, flat: Tensor) -> None:
        gen = torch.Generator(device="cpu").manual_seed(0)
        pick = torch.randint(0, flat.shape[0], (self.size,), generator=gen).to(flat.device)
        centres = flat[pick].clone()
        for _ in range(self.kmeans_iters):
            dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ centres.t()
                    + centres.pow(2).sum(1)[None])
            assign = dist.argmin(1)
            counts = torch.bincount(assign, minlength=self.size).float()
            sums = torch.zeros_like(centres).index_add_(0, assign, flat)
            alive = counts > 0
            centres[alive] = sums[alive] / counts[alive, None]
        self.embed.copy_(centres)
        self.embed_sum.copy_(centres)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, idx: Tensor) -> None:
        onehot_counts = torch.bincount(idx, minlength=self.size).float()
        sums = torch.zeros_like(self.embed).index_add_(0, idx, flat)
        self.cluster_size.mul_(self.decay).add_(onehot_counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        size = (self.cluster_size + 1e-5) / (n + self.size * 1e-5) * n
        self.embed.copy_(self.embed_sum / size[:, None])

    @torch.no_grad()
    def restart_dead(self, flat: Tensor) -> int:
        """Move codes whose EMA count is below ``restart_below`` onto random rows of ``flat``."""
        dead = (self.cluster_size < self.restart_below).nonzero().flatten()
        if dead.numel():
            pick = torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)
            new = flat[pick] + 1e-3 * torch.randn_like(flat[pick])
            self.embed[dead] = new
            self.embed_sum[dead] = new
            self.cluster_size[dead] = 1.0
        self.last_restarts = int(dead.numel())
        return self.last_restarts

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Quantise (B, dim, h, w): straight-through codes, indices (B, h, w), commitment loss.

        In training mode the codebook follows the encoder (EMA) and dead codes restart.
        """
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training:
            if not bool(self.initted):
                self._kmeans_init(flat.detach().float())
            idx = self.nearest(flat.detach())
            self._ema_update(flat.detach().float(), idx)
            self.restart_dead(flat.detach().float())
        else:
            idx = self.nearest(flat)
        idx = idx.view(b, h, w)
        q = self.lookup(idx)
        commit = F.mse_loss(z, q.detach())
        return z + (q - z).detach(), idx, commit

    @staticmethod
    def usage(idx: Tensor, size: int) -> dict:
        """Perplexity (exp of the entropy of code frequencies) and number of codes used."""
        counts = torch.bincount(idx.flatten(), minlength=size).float()
        p = counts / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        return {"perplexity": float(entropy.exp()), "codes_used": int((counts > 0).sum())}


class VQGAN(nn.Module):
    """E_H + C + D_H: ``forward(x)`` gives the reconstruction, indices and commitment loss."""

    def __init__(self, width: int = 64, embed_dim: int = 64, codebook_size: int = 512,
                 blocks: int = 2, downs: int = 1) -> None:
        super().__init__()
        self.encoder = Encoder(width, embed_dim, blocks, downs)
        self.codebook = EMACodebook(codebook_size, embed_dim)
        self.decoder = Decoder(width, embed_dim, blocks, downs)
        self.stride = 4 * 2**downs

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, idx, commit = self.codebook(self.encoder(x))
        return self.decoder(q), idx, commit


class PatchDiscriminator(nn.Module):
    """A small PatchGAN (Isola et al. 2017) with spectral normalisation, for the hinge loss."""

    def __init__(self, width: int = 32, layers: int = 3) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        mods: list[nn.Module] = []
        cin = 3
        for i in range(layers):
            cout = width * 2**i
            mods += [sn(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            cin = cout
        mods.append(sn(nn.Conv2d(cin, 1, 3, padding=1)))
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x * 2 - 1)
