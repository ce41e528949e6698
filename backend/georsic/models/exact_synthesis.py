"""Exact synthesis: ELIC's ``g_s`` computed to the same bits on every machine (prototype).

The entropy path (:mod:`georsic.models.exact`) already decodes every archive to the same
latent everywhere.  This module does the same for the synthesis transform, after Ballé,
Johnston and Minnen, "Integer Networks for Data Compression with Latent-Variable Models"
(ICLR 2019), by construction rather than by the luck of kernel choice:

* every convolution takes **integer** inputs ``a = clamp(round(x * m), -A, A)`` with
  ``A = 2**15 - 1`` (``0`` below for a ReLU's output) and a per-input-channel multiplier ``m``,
  has integer weights (the shipped ``g_s`` weights are 8-bit integers with one scale per dim-0
  channel: per output channel of a convolution, per *input* channel of a transposed one, which
  ``m`` absorbs) and an integer bias in the accumulator's unit;
* its sums are computed as ``256 * sum(high byte) + sum(low byte)``: each byte's sums stay
  below ``2**24`` for every layer (checked when the layer is built), so they are exact in
  float32 in any order or grouping a CPU library, thread count or GPU kernel adds them (sums of
  products only: no Winograd or FFT), exact too in an int8 convolution's int32 accumulator, and
  their float64 total is exact: every route gives the same integers;
* everything else is element-wise and correctly rounded in IEEE 754, each operation its own
  kernel (no fused multiply-add whose rounding differs): the sums times a float64 per-channel
  scale, rounded to float32, ``round``, ``clamp``, ReLU, the residual additions;
* the attention blocks' sigmoid is a table over a ``2**-SIGMOID_BITS`` grid whose entries are
  computed with :mod:`decimal` (correctly rounded, unlike a platform's ``exp``) and stored as
  float32.

The per-layer activation limits come from a calibration run of the float model
(:func:`calibrate`).  ``ExactSynthesis.forward`` gives a float32 image; every step is a
function of the integers before it, so the image is the same bits on AVX2, AVX-512, any thread
count and CUDA (cuDNN off, TF32 off).

Prototype: not yet wired into the codec or the archive format, and not yet fast
(``benchmarks/exact_synthesis.py``, ``docs/exact_synthesis.md``).
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from georsic.models.exact import FLOAT32_EXACT, _exact_kernels

#: Input levels per sign of every layer: two bytes (the high one signed); each byte's sums are
#: exact below 2**24 for every layer of the shipped models.
LEVELS = 2**15 - 1
#: Headroom of the calibrated activation ranges (values beyond are clamped, deterministically).
MARGIN = 1.5
#: The sigmoid's input grid: steps of 2**-SIGMOID_BITS over [-SIGMOID_RANGE, SIGMOID_RANGE].
SIGMOID_BITS = 8
SIGMOID_RANGE = 16


def _sigmoid_table() -> Tensor:
    """sigmoid(k / 2**SIGMOID_BITS) for every grid point, correctly rounded to float32 (via a
    50-digit :mod:`decimal` exp, then float64, then float32: the same on every machine)."""
    context = decimal.Context(prec=50)
    steps = SIGMOID_RANGE * 2**SIGMOID_BITS
    values = []
    for k in range(-steps, steps + 1):
        x = context.divide(decimal.Decimal(k), decimal.Decimal(2**SIGMOID_BITS))
        values.append(float(context.divide(1, context.add(1, context.exp(-x)))))
    return torch.tensor(values, dtype=torch.float64).float()


class ExactConv(nn.Module):
    """One convolution of ``g_s`` over integer inputs with exact float32 sums."""

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d, amax: float,
                 nonneg_input: bool) -> None:
        super().__init__()
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        self.stride, self.padding = conv.stride, conv.padding
        self.output_padding = conv.output_padding if self.transposed else (0, 0)
        self.nonneg_input = nonneg_input
        weight = conv.weight.detach().double()
        # the shipped weights are 8-bit integers with one scale per output channel of a
        # convolution and per *input* channel of a transposed convolution (dim 0 of both):
        # an input-side scale is folded into the input's quantisation, so the integers are
        # used as stored
        dim0_scale = weight.abs().flatten(1).amax(dim=1).clamp_min(1e-30) / 127.0
        int_weight = torch.round(weight / dim0_scale.reshape(-1, 1, 1, 1))
        bound = float(_sum_bound(int_weight, self.transposed, self.stride[0], self.padding[0],
                                 nonneg_input).max())
        # each byte of the inputs gives sums below 2**24 (exact in float32, and in an int8
        # convolution's int32 accumulator converted to float32); all bytes together below 2**53
        if bound * 255 >= FLOAT32_EXACT:
            raise ValueError("a byte's sums pass 2**24: weights too large for this layer")
        levels = LEVELS
        self.levels = levels
        channels = weight.shape[0] if self.transposed else weight.shape[1]
        outs = weight.shape[1] if self.transposed else weight.shape[0]
        in_side = dim0_scale if self.transposed else torch.ones(channels, dtype=torch.float64)
        out_side = torch.ones(outs, dtype=torch.float64) if self.transposed else dim0_scale
        # a = round(x * in_side / q): the products' grid q is the same for every channel
        q = max(float(amax), 1e-12) * float(in_side.max()) / levels
        out_scale = out_side * q
        bias = torch.round(conv.bias.detach().double() / out_scale)
        self.register_buffer("weight", int_weight.float(), persistent=False)
        self.register_buffer("bias", bias.reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("out_scale", out_scale.reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("in_mult", (in_side / q).float().reshape(1, -1, 1, 1),
                             persistent=False)

    def quantize(self, x: Tensor) -> Tensor:
        """float32 activations to this layer's integer inputs."""
        low = 0.0 if self.nonneg_input else -float(self.levels)
        return x.mul(self.in_mult).round_().clamp_(low, float(self.levels))

    def _conv(self, a: Tensor, dtype: torch.dtype) -> Tensor:
        weight = self.weight.to(dtype)
        with _exact_kernels(a.device):
            if self.transposed:
                return F.conv_transpose2d(a.to(dtype), weight, None, self.stride, self.padding,
                                          self.output_padding)
            return F.conv2d(a.to(dtype), weight, None, self.stride, self.padding)

    def sums(self, a: Tensor, method: str = "bytes") -> Tensor:
        """The exact integer sums (bias included) of integer inputs ``a``, in float64.

        ``method`` chooses only how: ``bytes`` (``a = 256 * high + low``, one float32
        convolution each, every sum below 2**24) or ``float64`` (one float64 convolution); both
        give the same integers.
        """
        if method == "float64":
            acc = self._conv(a, torch.float64)
        elif method == "bytes":
            low = torch.remainder(a, 256.0)
            high = a.sub(low).mul_(1.0 / 256.0)
            acc = self._conv(high, torch.float32).double().mul_(256.0)
            acc.add_(self._conv(low, torch.float32).double())
        else:
            raise ValueError(f"unknown method {method!r}")
        return acc.add_(self.bias)

    def forward(self, x: Tensor, method: str = "bytes") -> Tensor:
        """float32 activations in, float32 activations out (the sums times the layer's
        float64 output scale, rounded to float32)."""
        return self.sums(self.quantize(x), method).mul_(self.out_scale).float()


def _sum_bound(weight: Tensor, transposed: bool, stride: int, padding: int,
               nonneg_input: bool) -> Tensor:
    """Per output channel, a bound of |partial sum| / input limit for one output value."""
    if transposed:
        weight = weight.transpose(0, 1)  # (out, in, k, k)
        parts = []
        k = weight.shape[-1]
        for py in range(stride):
            for px in range(stride):
                rows = [i for i in range(k) if (i - padding) % stride == py]
                cols = [i for i in range(k) if (i - padding) % stride == px]
                parts.append(weight[:, :, rows][:, :, :, cols].flatten(1))
    else:
        parts = [weight.flatten(1)]
    bounds = []
    for flat in parts:
        if nonneg_input:
            bounds.append(torch.maximum(flat.clamp(min=0).sum(1), (-flat).clamp(min=0).sum(1)))
        else:
            bounds.append(flat.abs().sum(1))
    return torch.stack(bounds).amax(dim=0)


class ExactSynthesis(nn.Module):
    """``g_s`` of :class:`~compressai.models.Elic2022Official` in exact arithmetic.

    ``g_s``: the float model's synthesis transform (AttentionBlock, deconv, 3 residual
    bottleneck blocks, deconv, AttentionBlock, 3 RBB, deconv, 3 RBB, deconv); ``amax``: the
    calibrated largest |input| of each convolution, by its name in ``g_s``.
    """

    def __init__(self, g_s: nn.Sequential, amax: dict[str, float]) -> None:
        super().__init__()
        self.convs = nn.ModuleDict()
        nonneg = _nonneg_inputs(g_s)
        for name, module in g_s.named_modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                self.convs[name.replace(".", "_")] = ExactConv(
                    module, MARGIN * amax[name], name in nonneg)
        self.structure = [(name, type(m).__name__) for name, m in g_s.named_children()]
        self.register_buffer("sigmoid_table", _sigmoid_table(), persistent=False)

    def _conv(self, name: str, x: Tensor) -> Tensor:
        return self.convs[name.replace(".", "_")](x, self._method)

    def _sigmoid(self, x: Tensor) -> Tensor:
        steps = SIGMOID_RANGE * 2**SIGMOID_BITS
        index = x.mul(float(2**SIGMOID_BITS)).round_().clamp_(-steps, steps).add_(steps)
        return self.sigmoid_table[index.long()]

    def _residual_unit(self, prefix: str, x: Tensor) -> Tensor:
        out = self._conv(f"{prefix}.conv.0", x).relu_()
        out = self._conv(f"{prefix}.conv.2", out).relu_()
        out = self._conv(f"{prefix}.conv.4", out)
        return out.add_(x).relu_()

    def _attention(self, prefix: str, x: Tensor) -> Tensor:
        a = x
        for i in range(3):
            a = self._residual_unit(f"{prefix}.conv_a.{i}", a)
        b = x
        for i in range(3):
            b = self._residual_unit(f"{prefix}.conv_b.{i}", b)
        b = self._conv(f"{prefix}.conv_b.3", b)
        return a.mul_(self._sigmoid(b)).add_(x)

    def _bottleneck(self, prefix: str, x: Tensor) -> Tensor:
        out = self._conv(f"{prefix}.conv1", x).relu_()
        out = self._conv(f"{prefix}.conv2", out).relu_()
        out = self._conv(f"{prefix}.conv3", out)
        return out.add_(x)

    _method = "bytes"

    def forward(self, y_hat: Tensor, method: str = "bytes") -> Tensor:
        """The image (float32) from the latent; ``method`` chooses only how the integer sums
        are computed (:meth:`ExactConv.sums`): every method gives the same bits."""
        self._method = method
        x = y_hat.float()
        for name, kind in self.structure:
            if kind == "AttentionBlock":
                x = self._attention(name, x)
            elif kind == "ResidualBottleneckBlock":
                x = self._bottleneck(name, x)
            else:
                x = self._conv(name, x)
        return x


def _nonneg_inputs(g_s: nn.Sequential) -> set[str]:
    """Names of the convolutions whose input is a ReLU's output: a bottleneck block's
    ``conv2``/``conv3`` and a residual unit's ``conv.2``/``conv.4``."""
    suffixes = (".conv2", ".conv3", ".conv.2", ".conv.4")
    return {name for name, module in g_s.named_modules()
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and name.endswith(suffixes)}


@torch.no_grad()
def calibrate(g_s: nn.Sequential, latents: Iterable[Tensor]) -> dict[str, float]:
    """The largest |input| of every convolution of ``g_s`` over ``latents``."""
    amax: dict[str, float] = {}
    hooks = []
    for name, module in g_s.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            def hook(_m, inputs, _out, name=name):
                amax[name] = max(amax.get(name, 0.0), float(inputs[0].abs().max()))
            hooks.append(module.register_forward_hook(hook))
    try:
        for latent in latents:
            g_s(latent)
    finally:
        for h in hooks:
            h.remove()
    return amax
