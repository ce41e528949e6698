"""Quality-conditioned post-filter: a small residual CNN on the decoded image.

The decoder of a learned codec is only as good as its training; a compact one (the shipped ELIC
is N=64, M=128, trained on CPUs) leaves structured error in its output that a second, small
network can predict from the decoded image alone. This is the role of the in-loop and
post-processing filters of classical codecs (HEVC's SAO, VVC's ALF) and of the
post-processing networks of learned ones [Lee2020]: it adds nothing to the bitstream and is
trained afterwards, on pairs of original and decoded images, with the codec frozen.

The filter predicts a correction that is added to the decoded image, so that at
initialisation (its last convolution zero) it is the identity. Each residual block's output
is scaled per channel by a gain that depends on the quality level, interpolated between the
trained levels like the codec's own gain units, so that one filter serves every quality.

[Lee2020]: "A Deep Learning Approach for Post-Processing of Learned Image Compression", J. Lee,
S. Cho and M. Kim; see also the post-processing entries of CLIC 2020-2022.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.act(self.conv1(x)))


class QualityPostFilter(nn.Module):
    """Residual post-filter conditioned on the codec's continuous quality.

    Parameters
    ----------
    channels:
        Feature channels of the filter.
    blocks:
        Residual blocks (two 3x3 convolutions each).
    levels:
        Quality levels of the codec it is trained for; quality is continuous in
        ``[0, levels - 1]`` as for :class:`~georsic.models.elic.ElicVariableRate`.
    """

    def __init__(self, channels: int = 32, blocks: int = 3, levels: int = 8) -> None:
        super().__init__()
        self.levels = levels
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.ModuleList(_ResidualBlock(channels) for _ in range(blocks))
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        self.log_block_gain = nn.Parameter(torch.zeros(levels, blocks, channels))
        self.log_output_gain = nn.Parameter(torch.zeros(levels, 3))

    def _at(self, table: Tensor, quality: Tensor | float) -> Tensor:
        """Rows of ``table`` interpolated at ``quality`` (scalar or one per sample)."""
        q = torch.as_tensor(quality, dtype=table.dtype, device=table.device).reshape(-1)
        q = q.clamp(0, self.levels - 1)
        low = q.floor().long().clamp(max=self.levels - 2)
        frac = (q - low.to(q.dtype)).reshape(-1, *([1] * (table.dim() - 1)))
        return (table[low] * (1 - frac) + table[low + 1] * frac).exp()

    def forward(self, x: Tensor, quality: Tensor | float = 0.0) -> Tensor:
        """The filtered image (B, 3, H, W), not clamped; ``x`` is the decoded image in [0, 1]."""
        block_gain = self._at(self.log_block_gain, quality)  # (B|1, blocks, C)
        features = self.head(x)
        for i, block in enumerate(self.body):
            features = features + block(features) * block_gain[:, i, :, None, None]
        correction = self.tail(features) * self._at(self.log_output_gain, quality)[..., None, None]
        return x + correction
