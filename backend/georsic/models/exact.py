"""Exact entropy parameters: integer arithmetic that every machine computes to the bit.

A learned codec's decoder must rebuild exactly the probability tables the encoder used; a
scale that moves across a table boundary by one rounding error derails the rANS decoder
[Balle2019].  Floating-point convolutions give results that depend on the order of their
additions (thread count, vector unit, GPU kernel), so agreement in float64 is luck, made very
likely.  Here it holds by construction:

* every layer of ELIC's entropy model (hyper-synthesis ``h_s``, channel context, checkerboard
  spatial context, parameter aggregation) takes **integer** inputs: ``a = clamp(round(x / s),
  -A, A)``, with a per-layer input scale ``s`` and limit ``A``;
* its weights are integers (the shipped weights already are: 5-bit integers with one scale per
  output channel) and its bias is rounded to the accumulator's unit;
* ``A`` is chosen so that for every output channel ``sum(|w|) * A + |b| < 2**24``: every
  partial sum of the convolution, in whatever order or grouping a CPU library, thread count or
  GPU kernel adds them, is an integer below 2**24 and therefore exact in float32 (float64 with
  2**53 where float32 would leave too few levels);
* what follows a convolution is element-wise and correctly rounded in IEEE 754 (a multiply by
  a per-channel float64 constant, ReLU, ``round``), the same on every conforming machine;
* the predicted means are put on a grid of ``2**-8`` so that ``y_hat = symbols + mean`` is a
  dyadic number, exactly the same wherever it is computed.

Convolutions run as sums of products (oneDNN's direct convolution or im2col + GEMM on a CPU,
the channel context's in int8 where the CPU has VNNI (:class:`Int8Sums`); on CUDA with cuDNN
disabled and TF32 off, so that no Winograd or FFT algorithm, whose transforms are not exact,
is chosen).  The activation limits come from a calibration run of the
float model (:func:`calibrate`) and are stored with the weights (``exact.*`` tensors), so that
encoder and decoder share every constant.  The float64 path (``use_float64_entropy_model``)
stays for archives made before it.

[Balle2019]: "Integer Networks for Data Compression with Latent-Variable Models", J. Balle,
N. Johnston and D. Minnen, ICLR 2019.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from georsic.models.streams import SharedRansStream

#: float32 represents every integer of magnitude below this exactly.
FLOAT32_EXACT = 2**24
#: float64 likewise.
FLOAT64_EXACT = 2**53
#: Predicted means are rounded to multiples of this (dyadic, so ``symbols + mean`` is exact).
MEAN_GRID = 2.0**-8
#: Input levels of every layer, per sign (the input is clamped to [-TARGET_LEVELS, TARGET_LEVELS]
#: times its scale): 2**13 steps over the calibrated range.
TARGET_LEVELS = 2**13
#: Headroom of the calibrated activation ranges (values beyond are clamped, deterministically).
CALIBRATION_MARGIN = 1.5
#: Prefix of the calibration tensors in a weights file.
PREFIX = "exact."
#: The names archives record (``codec.entropy``): v1, 2**13 levels for every layer and blocks
#: of input channels where sums could pass 2**24; v2 (new archives since 2026-12-02), as many
#: levels as keep each convolution one float32 sum (``one_block``; BD-rate +0.16 %, entropy
#: coding ~25-35 % faster: ``benchmarks/entropy_levels.py``).
NAME_V1 = "int-exact-v1"
NAME_V2 = "int-exact-v2"
NAMES = (NAME_V1, NAME_V2)
#: The path new archives are coded with.
NAME = NAME_V2


@dataclass(frozen=True)
class LayerSpec:
    """One convolution of the entropy model, in float, as trained."""

    name: str
    weight: Tensor          # (out, in, kh, kw); (in, out, kh, kw) when transposed
    bias: Tensor            # (out,)
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    transposed: bool = False
    relu: bool = False
    #: Integers and their per-output-channel scales when the stored weights already are
    #: integers in that layout (``weight == int_weight * int_scale``).
    int_weight: Tensor | None = None
    int_scale: Tensor | None = None
    #: The input is a ReLU's output (never negative): a sum's magnitude is then bounded by the
    #: larger of its positive and its negative weights, not by both together.
    nonneg_input: bool = False


def int8_sums_pay() -> bool:
    """Whether this CPU sums u8 x s8 products in int32 without saturating (VNNI's ``vpdpbusd``,
    AMX), so that oneDNN's int8 convolution is exact and ~4x as fast as float32
    (:class:`Int8Sums`); without VNNI, oneDNN's AVX2 int8 kernels add pairs of products in
    saturating int16 first, so they are not used."""
    try:
        torch.ops.onednn.qconv2d_pointwise.default  # noqa: B018 - a torch built without it
        if not torch.cpu._is_vnni_supported():
            return False
    except (AttributeError, RuntimeError):
        return False
    # The CPU's flag is not enough: oneDNN may be capped to AVX2's kernels
    # (ONEDNN_MAX_CPU_ISA=AVX2, how the AVX2 class is measured on any machine), which
    # saturate; a probe on inputs and weights that would saturate says what runs.
    from georsic.models.exact_synthesis import int8_sums_exact

    return int8_sums_exact()


class Int8Sums:
    """A convolution's exact integer sums over nonnegative integer inputs below 2**16, from
    oneDNN's int8 convolution (u8 inputs, s8 weights, int32 sums, unit scales, float32
    output): the input as ``256 * high + low`` bytes, one convolution each, and
    ``256 * sum(high) + sum(low)`` in float64.  Every sum is an integer; the layer's bound keeps
    each one below 2**24 (:class:`IntLayer`), so the float32 outputs hold them exactly and the
    result is the same integers as any other order of summation: the same bits
    (``tests/test_exact_entropy.py``).  A 224->128-channel 5x5 convolution of a 64x64 latent,
    one thread, Zen 4: 14 ms a byte against 56 ms in float32."""

    def __init__(self, weight: Tensor, spec: LayerSpec, limit: float) -> None:
        self.spec = spec
        self.two_bytes = limit > 255
        out = weight.shape[0]
        self.w_scale = torch.ones(out, dtype=torch.float32)
        self.w_zero = torch.zeros(out, dtype=torch.int64)
        self.packed = torch.ops.onednn.qconv_prepack(
            weight.to(torch.int8), self.w_scale, 1.0, 0, [spec.stride] * 2, [spec.padding] * 2,
            [1, 1], 1, None)

    def _conv(self, x: Tensor) -> Tensor:
        spec = self.spec
        return torch.ops.onednn.qconv2d_pointwise(
            x, 1.0, 0, self.packed, self.w_scale, self.w_zero, None, [spec.stride] * 2,
            [spec.padding] * 2, [1, 1], 1, 1.0, 0, torch.float32, "none", [], "")

    def __call__(self, a: Tensor) -> Tensor:
        """float64 integers in [0, limit] to their float64 sums (without the bias)."""
        if not self.two_bytes:
            return self._conv(a.to(torch.uint8, memory_format=torch.channels_last)).double()
        q = a.to(torch.int16, memory_format=torch.channels_last)
        low = self._conv(torch.bitwise_and(q, 255).to(torch.uint8))
        high = self._conv(torch.bitwise_right_shift(q, 8).to(torch.uint8))
        # 256 * high + low: integers below 2**24, exact in float32
        return low.add_(high, alpha=256.0).double()


def _conv(x: Tensor, weight: Tensor, bias: Tensor | None, spec: LayerSpec) -> Tensor:
    if spec.transposed:
        return F.conv_transpose2d(x, weight, bias, spec.stride, spec.padding,
                                  spec.output_padding)
    return F.conv2d(x, weight, bias, spec.stride, spec.padding)


def _integers(spec: LayerSpec) -> tuple[Tensor, Tensor]:
    """Integer weights in the convolution's layout and one float64 scale per output channel."""
    if spec.int_weight is not None and not spec.transposed:
        return spec.int_weight.double(), spec.int_scale.double().reshape(-1)
    weight = spec.weight.double()
    out_dim = 1 if spec.transposed else 0
    moved = weight.movedim(out_dim, 0)
    peak = moved.abs().flatten(1).amax(dim=1).clamp_min(1e-30)
    scale = peak / 127.0
    shape = [1] * weight.dim()
    shape[out_dim] = -1
    return torch.round(weight / scale.reshape(shape)), scale


def _l1_bound(weight: Tensor, spec: LayerSpec) -> Tensor:
    """Per output channel, the largest sum of |w| that one output value accumulates."""
    if not spec.transposed:
        return weight.abs().flatten(1).sum(dim=1)
    # a transposed convolution's output pixel sees the taps of one phase per axis
    s, p = spec.stride, spec.padding
    kh, kw = weight.shape[-2:]
    bounds = []
    for py in range(s):
        for px in range(s):
            rows = [k for k in range(kh) if (k - p) % s == py]
            cols = [k for k in range(kw) if (k - p) % s == px]
            part = weight[:, :, rows][:, :, :, cols]
            bounds.append(part.abs().sum(dim=(0, 2, 3)))
    return torch.stack(bounds).amax(dim=0)


class IntLayer(nn.Module):
    """A convolution over integer inputs whose every partial sum is exact (see module doc).

    The input has ``2 * limit + 1`` levels (``TARGET_LEVELS`` per sign).  A convolution whose
    sums could pass 2**24 at that precision is split into blocks of input channels, each an
    exact float32 convolution, added in float64 (exact below 2**53): the same arithmetic work
    as one convolution.  Transposed convolutions (only ``h_s``, at 1/64 of the image) accumulate
    in float64.
    """

    def __init__(self, spec: LayerSpec, amax: float, one_block: bool = False) -> None:
        super().__init__()
        self.spec = spec
        weight, w_scale = _integers(spec)
        levels = TARGET_LEVELS
        bounds = None if spec.transposed else _sum_bounds(weight, spec.nonneg_input)
        if one_block and bounds is not None:
            # int-exact-v2 (benchmarks/entropy_levels.py): as many input levels as keep the
            # whole convolution one exact float32 sum
            peak = float(bounds.sum(dim=(1, 2)).max())
            levels = min(TARGET_LEVELS, int(0.9 * (FLOAT32_EXACT - 1) / peak))
        self.limit = float(levels)
        self.in_scale = float(amax) / levels
        self.inv_in_scale = 1.0 / self.in_scale
        out_scale = w_scale * self.in_scale
        bias = torch.round(spec.bias.double() / out_scale)
        self.accumulate = torch.float64 if spec.transposed else torch.float32
        if spec.transposed:
            self.blocks = [(0, weight.shape[0])]
            bound = float((_l1_bound(weight, spec) * levels + bias.abs()).max())
            if bound >= FLOAT64_EXACT:
                raise ValueError(f"{spec.name}: sums reach {bound:.3g}, past float64's exact range")
            self.bound = bound / FLOAT64_EXACT
        else:
            self.blocks, self.bound = _blocks(bounds, bias.abs(), levels, FLOAT32_EXACT)
        self.register_buffer("weight", weight.to(self.accumulate), persistent=False)
        self.register_buffer("bias", bias.to(self.accumulate), persistent=False)
        self.register_buffer("out_scale", out_scale.reshape(1, -1, 1, 1), persistent=False)
        #: The native path's convolution: a transposed one as regular convolutions (the same
        #: products, 1.4-1.8x as fast in float64), else the layer's own.
        form = _regular_form(self.weight, spec) if spec.transposed else None
        self._native_conv = None if form is None else (lambda x, start, stop: form(x))
        #: Checkerboard kernels (``sp*`` layers): per (output phase, input phase) the taps that
        #: link them and the padding (:meth:`checkerboard`).
        self._phases = _checkerboard_kernels(self.weight) if spec.name.startswith("sp") else None
        #: The native path's sums in int8 (:class:`Int8Sums`): where the CPU has VNNI, for
        #: one-block float32 layers over a ReLU's output with spatial kernels (the channel
        #: context's, 40 % of the entropy model's time) and fewer than 2**16 levels.
        self._int8 = None
        if (int8_sums_pay() and not spec.transposed and spec.nonneg_input
                and self._phases is None and len(self.blocks) == 1
                and weight.shape[-1] * weight.shape[-2] > 1
                and levels < 2**16 and float(weight.abs().max()) <= 127):
            self._int8 = Int8Sums(weight, spec, self.limit)

    def quantize(self, x: Tensor) -> Tensor:
        """float64 activations to this layer's integer inputs (a ReLU's output stays >= 0)."""
        low = 0.0 if self.spec.nonneg_input else -self.limit
        return x.mul(self.inv_in_scale).round_().clamp_(low, self.limit)

    def forward(self, x: Tensor, method: str = "native") -> Tensor:
        """float64 activations in, float64 activations out.

        ``method`` only chooses how the exact integer sums are computed: ``native`` (int8
        where :class:`Int8Sums` serves this layer, else ``blocks``), ``blocks`` (the layer's
        blocks in its accumulation dtype), ``float64`` (one float64 convolution) or
        ``reversed`` (blocks of 7 input channels in float32, added in reverse order); all give
        the same bits.
        """
        a = self.quantize(x)
        if method == "native" and self._int8 is not None:
            acc = self._int8(a).add_(self.bias.double().reshape(1, -1, 1, 1))
        elif method in ("native", "blocks"):
            acc = self._sum(a, self.blocks, self.accumulate, self._native_conv)
        elif method == "float64":
            acc = _conv(a, self.weight.double(), self.bias.double(), self.spec)
        elif method == "reversed":
            channels = a.shape[1]
            blocks = [(i, min(i + 7, channels)) for i in range(0, channels, 7)][::-1]
            acc = self._sum(a, blocks, torch.float32)
        else:
            raise ValueError(f"unknown method {method!r}")
        return self._output(acc)

    def _output(self, acc: Tensor) -> Tensor:
        out = acc.mul_(self.out_scale)  # acc is this layer's own new tensor
        return out.relu_() if self.spec.relu else out

    def _sum(self, a: Tensor, blocks: list[tuple[int, int]], dtype: torch.dtype,
             conv=None) -> Tensor:
        """The exact sums of ``a`` over the input-channel ``blocks``, each in ``dtype`` and
        added in float64, plus the bias; ``conv(x, start, stop)``, when given, computes a
        block's sum instead of the layer's convolution."""
        in_dim = 0 if self.spec.transposed else 1
        acc = None
        with _exact_kernels(a.device):
            for start, stop in blocks:
                x = a[:, start:stop].to(dtype)
                if conv is not None:
                    part = conv(x, start, stop).double()
                else:
                    w = self.weight.narrow(in_dim, start, stop - start).to(dtype)
                    part = _conv(x, w, None, self.spec).double()
                acc = part if acc is None else acc.add_(part)  # new tensors: in place
        return acc.add_(self.bias.double().reshape(1, -1, 1, 1))

    def checkerboard(self, anchors: Tensor) -> Tensor:
        """This (checkerboard-masked) layer's output at the non-anchor positions, from the
        anchors alone, both in :func:`_unembed`'s layout: what ``forward(_embed(anchors, 0))``
        gives there, with the same integer products, but only those the mask keeps and only
        where they are used (a quarter of the full convolution's multiply-adds)."""
        a = self.quantize(anchors)
        n, _, h, half = a.shape
        acc = a.new_empty((n, self.weight.shape[0], h, half))
        for out_phase, rows in (((0, 1), slice(0, None, 2)), ((1, 0), slice(1, None, 2))):
            acc[..., rows, :] = self._sum(a, self.blocks, self.accumulate,
                                          functools.partial(self._from_anchors, out_phase))
        return self._output(acc)

    def _from_anchors(self, out_phase: tuple[int, int], x: Tensor, start: int, stop: int
                      ) -> Tensor:
        """Input channels ``start:stop``'s sum at ``out_phase`` from both anchor phases of
        ``x`` (each term an exact integer, and so is their sum: a part of the block's sum,
        below its bound)."""
        part = None
        for in_phase, rows in (((0, 0), slice(0, None, 2)), ((1, 1), slice(1, None, 2))):
            kernel, pad = self._phases[out_phase, in_phase]
            term = F.conv2d(F.pad(x[..., rows, :], pad), kernel[:, start:stop])
            part = term if part is None else part + term
        return part


def _regular_form(weight: Tensor, spec: LayerSpec):
    """A transposed convolution (``weight`` (in, out, k, k)) as regular convolutions: stride 1
    as the flipped kernel, 5x5 stride 2 as its four output phases; None for other shapes."""
    from georsic.models.runtime import PhaseConvTranspose, is_subpixel_compatible

    k = weight.shape[-1]
    if spec.stride == 1 and spec.output_padding == 0:
        kernel = weight.flip(-1, -2).transpose(0, 1).contiguous()
        return lambda x: F.conv2d(x, kernel.to(x.dtype), None, 1, k - 1 - spec.padding)
    deconv = nn.ConvTranspose2d(weight.shape[0], weight.shape[1], k, spec.stride, spec.padding,
                                spec.output_padding, dtype=weight.dtype)
    if not is_subpixel_compatible(deconv):
        return None
    with torch.no_grad():
        deconv.weight.copy_(weight)
        deconv.bias.zero_()
    phases = PhaseConvTranspose(deconv).eval()
    for conv in phases.phases:
        conv.bias = None  # the integer bias is added after the sum, as for every layer
    return phases


def _checkerboard_kernels(weight: Tensor) -> dict:
    """For a k x k checkerboard-masked convolution (padding k // 2) over the full latent grid,
    split in 2x2 phases (anchors: phases (0, 0) and (1, 1)): per (output phase, input phase)
    the kernel of the taps from that input phase and F.pad's (left, right, top, bottom)."""
    k = weight.shape[-1]
    c = k // 2
    kernels = {}
    for out_phase in ((0, 1), (1, 0)):
        for in_phase in ((0, 0), (1, 1)):
            # a tap at kernel index t reads the input phase's row (col) i + (t - c - ri + ro) / 2
            rows = [t for t in range(k) if (t - c - in_phase[0] + out_phase[0]) % 2 == 0]
            cols = [t for t in range(k) if (t - c - in_phase[1] + out_phase[1]) % 2 == 0]
            dr = [(t - c - in_phase[0] + out_phase[0]) // 2 for t in rows]
            dc = [(t - c - in_phase[1] + out_phase[1]) // 2 for t in cols]
            kernel = weight[:, :, rows][:, :, :, cols].contiguous()
            kernels[out_phase, in_phase] = (kernel, (-dc[0], dc[-1], -dr[0], dr[-1]))
    return kernels


def _sum_bounds(weight: Tensor, nonneg_input: bool) -> Tensor:
    """(out, in, k) bounds whose sum over any set of input channels, times the input limit,
    bounds every partial sum of an output value over those channels: ``k`` = 1 holds
    ``sum|w|``; for inputs in ``[0, A]`` ``k`` = 2 holds the positive and the negative weights'
    sums apart (a partial sum lies between ``-A * sum(w-)`` and ``A * sum(w+)``)."""
    flat = weight.flatten(2)
    if not nonneg_input:
        return flat.abs().sum(dim=2, keepdim=True)
    return torch.stack([flat.clamp(min=0).sum(dim=2), (-flat).clamp(min=0).sum(dim=2)], dim=2)


def _blocks(bounds: Tensor, bias: Tensor, levels: int, exact: int
            ) -> tuple[list[tuple[int, int]], float]:
    """Contiguous blocks of input channels whose sums stay exact: for every output channel
    ``levels`` times the block's sum of ``bounds`` (see :func:`_sum_bounds`) stays below
    ``exact``; the bias is added in float64 afterwards.  Returns the blocks and the largest
    share of ``exact`` reached."""
    limit = 0.9 * (exact - 1) / levels
    blocks, start, running, worst = [], 0, torch.zeros_like(bounds[:, 0]), 0.0
    for i in range(bounds.shape[1]):
        if i > start and float((running + bounds[:, i]).max()) > limit:
            blocks.append((start, i))
            worst = max(worst, float(running.max()) * levels / exact)
            start, running = i, torch.zeros_like(running)
        running = running + bounds[:, i]
        if float(running.max()) > limit:
            raise ValueError("one input channel's weights alone pass the exact range")
    blocks.append((start, bounds.shape[1]))
    worst = max(worst, float(running.max()) * levels / exact)
    total = float((bounds.sum(dim=(1, 2)) * levels + bias).max())
    if total >= FLOAT64_EXACT:
        raise ValueError(f"sums reach {total:.3g}, past float64's exact range")
    return blocks, worst


@contextlib.contextmanager
def _exact_kernels(device: torch.device) -> Iterator[None]:
    """Sums of products only: no cuDNN Winograd/FFT, no TF32 on CUDA."""
    if device.type != "cuda":
        yield
        return
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


# --------------------------------------------------------------------------- the ELIC layout


def _seq_specs(prefix: str, seq: nn.Sequential, raw: dict, key: str,
               transposed: bool = False) -> list[LayerSpec]:
    convs = [(i, m) for i, m in enumerate(seq) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    specs: list[LayerSpec] = []
    for n, (i, conv) in enumerate(convs):
        relu = i + 1 < len(seq) and isinstance(seq[i + 1], nn.ReLU)
        spec = _spec(f"{prefix}_{n}", conv, raw, f"{key}.{i}", relu)
        if specs and specs[-1].relu:
            spec = dataclasses.replace(spec, nonneg_input=True)
        specs.append(spec)
    return specs


def _spec(name: str, conv: nn.Module, raw: dict, key: str, relu: bool) -> LayerSpec:
    transposed = isinstance(conv, nn.ConvTranspose2d)
    weight = conv.weight.detach().double()
    mask = getattr(conv, "mask", None)
    int_weight = raw.get(f"{key}.weight")
    int_scale = raw.get(f"{key}.weight.int8_scale")
    if int_scale is None or int_weight is None or int_weight.dtype != torch.int8:
        int_weight = int_scale = None
    else:
        int_weight = int_weight.double()
    if mask is not None:
        weight = weight * mask.double()
        if int_weight is not None:
            int_weight = int_weight * mask.double()
    return LayerSpec(name, weight, conv.bias.detach().double(), conv.stride[0], conv.padding[0],
                     conv.output_padding[0] if transposed else 0, transposed, relu,
                     int_weight, int_scale)


def _light(spec: LayerSpec) -> LayerSpec:
    """``spec`` without its integer copy, its weight as float32 (the trained values)."""
    return dataclasses.replace(spec, weight=spec.weight.float(), int_weight=None,
                               int_scale=None)


def layer_specs(model: nn.Module, raw: dict | None = None) -> dict[str, LayerSpec]:
    """The entropy model's convolutions of an ELIC (CompressAI's ``Elic2022Official``).

    ``raw`` is the weights file as stored (int8 tensors with their scales), so that layers
    stored as integers keep exactly those integers.
    """
    raw = raw or {}
    lc = model.latent_codec
    specs = _seq_specs("hs", lc["hyper"].h_s, raw, "latent_codec.hyper.h_s", transposed=True)
    groups = lc["y"]
    for k in range(len(model.groups)):
        base = f"latent_codec.y.latent_codec.y{k}"
        if k > 0:
            specs += _seq_specs(f"cc{k}", groups.channel_context[f"y{k}"], raw,
                                f"latent_codec.y.channel_context.y{k}")
        specs.append(_spec(f"sp{k}", groups.latent_codec[f"y{k}"].context_prediction, raw,
                           f"{base}.context_prediction", relu=False))
        specs += _seq_specs(f"ep{k}", groups.latent_codec[f"y{k}"].entropy_parameters, raw,
                            f"{base}.entropy_parameters")
    return {s.name: s for s in specs}


def _unembed(y: Tensor) -> tuple[Tensor, Tensor]:
    """Anchors (even parity: (0::2, 0::2) and (1::2, 1::2)) and non-anchors, each (n, c, h, w/2)."""
    n, c, h, w = y.shape
    anchors = y.new_empty((n, c, h, w // 2))
    others = y.new_empty((n, c, h, w // 2))
    anchors[..., 0::2, :] = y[..., 0::2, 0::2]
    anchors[..., 1::2, :] = y[..., 1::2, 1::2]
    others[..., 0::2, :] = y[..., 0::2, 1::2]
    others[..., 1::2, :] = y[..., 1::2, 0::2]
    return anchors, others


def _embed(anchors: Tensor, others: Tensor) -> Tensor:
    n, c, h, half = anchors.shape
    y = anchors.new_zeros((n, c, h, 2 * half))
    y[..., 0::2, 0::2] = anchors[..., 0::2, :]
    y[..., 1::2, 1::2] = anchors[..., 1::2, :]
    y[..., 0::2, 1::2] = others[..., 0::2, :]
    y[..., 1::2, 0::2] = others[..., 1::2, :]
    return y


class _Runner:
    """Runs the entropy model's layers exactly (``IntLayer``) or in float while recording the
    magnitude of every layer's input (calibration)."""

    def __init__(self, specs: dict[str, LayerSpec], layers: dict[str, IntLayer] | None,
                 method: str = "native") -> None:
        self.specs, self.layers, self.method = specs, layers, method
        self.amax: dict[str, float] = {}

    def seq(self, prefix: str, x: Tensor) -> Tensor:
        n = 0
        while f"{prefix}_{n}" in self.specs:
            x = self.one(f"{prefix}_{n}", x)
            n += 1
        return x

    def checkerboard(self, name: str, anchors: Tensor) -> Tensor:
        """The spatial context of the non-anchors from the decoded anchors (both halves in
        :func:`_unembed`'s layout)."""
        if self.layers is not None and self.method == "native":
            return self.layers[name].checkerboard(anchors)
        return _unembed(self.one(name, _embed(anchors, torch.zeros_like(anchors))))[1]

    def one(self, name: str, x: Tensor) -> Tensor:
        if self.layers is not None:
            return self.layers[name](x, self.method)
        spec = self.specs[name]
        self.amax[name] = max(self.amax.get(name, 0.0), float(x.abs().max()))
        out = _conv(x, spec.weight, spec.bias, spec)
        return out.relu_() if spec.relu else out


def _params(runner: _Runner, k: int, ctx: Tensor, side: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Scales and means (float64, means on the ``MEAN_GRID``) of one half of group ``k``."""
    out = runner.seq(f"ep{k}", torch.cat([ctx, *side], dim=1))
    scales, means = out.chunk(2, dim=1)
    return scales, torch.round(means * (1 / MEAN_GRID)) * MEAN_GRID


def _code_half(conditional: nn.Module, scales: Tensor, means: Tensor,
               stream: SharedRansStream | None, y: Tensor | None) -> Tensor:
    """One half of a group: its symbols coded (``y`` given) or decoded (``y`` None) in
    ``stream``, or, without a stream, only ``y`` quantized; returns its ``y_hat``."""
    if stream is None:
        return torch.round(y - means) + means
    indexes = _indexes(conditional, scales)
    if y is not None:
        symbols = torch.round(y - means)
        stream.encode(conditional, symbols.int(), indexes)
        return symbols + means
    return stream.decode(conditional, indexes).double() + means


def _indexes(conditional: nn.Module, scales: Tensor) -> Tensor:
    """``GaussianConditional.build_indexes`` as one search: the number of table scales (but the
    last) below each lower-bounded scale, the same integers as its loop of comparisons."""
    table = conditional.scale_table.to(torch.float64)
    bound = conditional.lower_bound_scale.bound.to(torch.float64)
    scales = torch.maximum(scales, bound)
    return torch.searchsorted(table[:-1].contiguous(), scales.contiguous()).int()


def _code(runner: _Runner, groups: list[int], conditionals: list[nn.Module], z_hat: Tensor,
          stream: SharedRansStream | None, y: Tensor | None
          ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """ELIC's space-channel context model: encode ``y`` (given) or decode it (``y`` None), group
    by group, anchors then non-anchors; returns ``y_hat`` and each half's (scales, means)."""
    hyper = runner.seq("hs", z_hat)
    hyper_halves = _unembed(hyper)
    y_groups = None if y is None else y.split(groups, dim=1)
    decoded: list[Tensor] = []
    params_log: list[tuple[Tensor, Tensor]] = []
    for k, channels in enumerate(groups):
        side = [hyper_halves]
        if k > 0:
            side = [_unembed(runner.seq(f"cc{k}", torch.cat(decoded, dim=1))), hyper_halves]
        target = None if y_groups is None else _unembed(y_groups[k].double())
        halves: list[Tensor] = []
        for i in range(2):
            if i == 0:  # anchors: no spatial context
                n, _, h, half = hyper_halves[0].shape
                ctx = hyper.new_zeros((n, 2 * channels, h, half))
            else:
                ctx = runner.checkerboard(f"sp{k}", halves[0])
            scales, means = _params(runner, k, ctx, [s[i] for s in side])
            params_log.append((scales, means))
            halves.append(_code_half(conditionals[k], scales, means, stream,
                                     None if target is None else target[i]))
        decoded.append(_embed(*halves))
    return torch.cat(decoded, dim=1), params_log


def _z_hat(bottleneck: nn.Module, z: Tensor) -> tuple[Tensor, Tensor]:
    """Symbols of the hyper-latent and its reconstruction (float64)."""
    medians = bottleneck._get_medians().detach().reshape(1, -1, 1, 1).double()
    symbols = torch.round(z.double() - medians)
    return symbols, symbols + medians


class ExactEntropyCoder(nn.Module):
    """ELIC's space-channel context model [He2022] over exact integer layers, with one rANS
    stream per image (:class:`~georsic.models.streams.SharedRansStream`).

    The symbols are coded in the order: hyper-latent ``z``, then per channel group its anchors
    and its non-anchors.  ``model`` is the float :class:`~georsic.models.elic.ElicVariableRate`
    whose weights (and whose ``EntropyBottleneck`` / ``GaussianConditional`` tables) it uses;
    ``amax`` the calibrated input range of each layer (:func:`calibrate`).  ``one_block`` builds
    ``int-exact-v2`` (fewer input levels where a layer would need blocks, so that each
    convolution is one float32 sum; ``benchmarks/entropy_levels.py`` measures its rate cost),
    else ``int-exact-v1``.

    [He2022]: "ELIC: Efficient Learned Image Compression with Unevenly Grouped Space-Channel
    Contextual Adaptive Coding", D. He et al., CVPR 2022.
    """

    def __init__(self, model: nn.Module, amax: dict[str, float], raw: dict | None = None,
                 method: str = "native", one_block: bool = False) -> None:
        super().__init__()
        self.specs = layer_specs(model, raw)
        missing = set(self.specs) - set(amax)
        if missing:
            raise ValueError(f"no calibration for layers {sorted(missing)}")
        self.layers = nn.ModuleDict({n: IntLayer(s, amax[n], one_block)
                                     for n, s in self.specs.items()})
        # built: the layers hold the integers they compute with, so the specs keep only the
        # geometry and the float weight as trained (float32, as the model holds it): a
        # codec per thread then holds 108 -> 45 MiB here (stored float64 twice before)
        self.specs = {n: _light(s) for n, s in self.specs.items()}
        for name, layer in self.layers.items():
            layer.spec = self.specs[name]
        self.groups = list(model.groups)
        lc = model.latent_codec
        # the model's own modules, shared, not registered here (they are the model's state)
        self._shared = (lc["hyper"].h_a, lc["hyper"].entropy_bottleneck,
                        [lc["y"].latent_codec[f"y{k}"].y.gaussian_conditional
                         for k in range(len(self.groups))])
        self.method = method

    h_a = property(lambda self: self._shared[0])
    bottleneck = property(lambda self: self._shared[1])
    conditionals = property(lambda self: self._shared[2])

    def _analysis(self, y: Tensor) -> Tensor:
        return self.h_a(y.to(next(self.h_a.parameters()).dtype))

    def _runner(self, method: str | None = None) -> _Runner:
        return _Runner(self.specs, dict(self.layers.items()), method or self.method)

    @torch.no_grad()
    def compress(self, y: Tensor) -> tuple[bytes, Tensor]:
        """``y`` (1, M, h, w), gained, float: one rANS string and the decoder's ``y_hat``."""
        z = self._analysis(y)
        z_symbols, z_hat = _z_hat(self.bottleneck, z)
        stream = SharedRansStream()
        stream.encode(self.bottleneck, z_symbols.int(), self.bottleneck._build_indexes(z.size()))
        y_hat, _ = _code(self._runner(), self.groups, self.conditionals, z_hat, stream, y)
        return stream.flush(), y_hat

    @torch.no_grad()
    def decompress(self, data: bytes, shape: tuple[int, int]) -> Tensor:
        """The string of :meth:`compress` back to ``y_hat`` (1, M, h, w) float64; ``shape`` is
        the latent's (h, w)."""
        eb = self.bottleneck
        h, w = shape
        stream = SharedRansStream(data)
        indexes = eb._build_indexes((1, eb._quantized_cdf.size(0), h // 4, w // 4))
        medians = eb._get_medians().detach().reshape(1, -1, 1, 1).double()
        z_hat = stream.decode(eb, indexes.to(eb._quantized_cdf.device)).double() + medians
        return _code(self._runner(), self.groups, self.conditionals, z_hat, stream, None)[0]

    @torch.no_grad()
    def parameters_of(self, y: Tensor, method: str | None = None) -> list[tuple[Tensor, Tensor]]:
        """Every half's (scales, means) for a known ``y``, computed with ``method`` (see
        :meth:`IntLayer.forward`)."""
        _, z_hat = _z_hat(self.bottleneck, self._analysis(y))
        return _code(self._runner(method), self.groups, self.conditionals, z_hat, None,
                     y.double())[1]


@torch.no_grad()
def calibrate(model: nn.Module, latents: Iterable[Tensor], raw: dict | None = None
              ) -> dict[str, float]:
    """Each entropy-model layer's input range over ``latents`` (gained ``y``, one image each),
    times :data:`CALIBRATION_MARGIN`, as the float model computes it."""
    specs = layer_specs(model, raw)
    runner = _Runner(specs, None)
    lc = model.latent_codec
    groups = list(model.groups)
    conditionals = [lc["y"].latent_codec[f"y{k}"].y.gaussian_conditional
                    for k in range(len(groups))]
    for y in latents:
        _, z_hat = _z_hat(lc["hyper"].entropy_bottleneck, lc["hyper"].h_a(y.float()))
        _code(runner, groups, conditionals, z_hat, None, y.double())
    return {name: max(value, 1e-6) * CALIBRATION_MARGIN for name, value in runner.amax.items()}


def amax_tensors(amax: dict[str, float]) -> dict[str, Tensor]:
    """Calibration as tensors for a weights file (``exact.<layer>``)."""
    return {PREFIX + name: torch.tensor([value], dtype=torch.float64)
            for name, value in sorted(amax.items())}


def amax_from_state(state: dict[str, Tensor]) -> dict[str, float]:
    """The calibration a weights file holds (empty when it has none)."""
    return {name[len(PREFIX):]: float(t.reshape(-1)[0]) for name, t in state.items()
            if name.startswith(PREFIX)}


def describe(coder: ExactEntropyCoder) -> list[tuple[str, str, int, float]]:
    """Per layer: accumulation dtype, blocks of input channels, and the largest share of the
    exact range a block's sums can reach (below 1 by construction)."""
    return [(name, str(layer.accumulate).replace("torch.", ""), len(layer.blocks), layer.bound)
            for name, layer in coder.layers.items()]
