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

``method="fast"`` (the default) computes the same integers with fewer, cheaper passes: the
activations stay channels-last, each transposed convolution runs as a regular convolution with
four output phases (the same products, summed in another order) and a pixel shuffle, and the
byte sums come from oneDNN's int8 convolution (u8 inputs, the signed high byte through an input
zero point of 128, s8 weights, int32 sums) where a probe shows this CPU's int8 sums are exact
(VNNI; :func:`int8_sums_exact`), else from two float32 convolutions.  Before the byte planes,
a layer whose single float32 sum would pass 2**24 tries blocks of input channels in one
grouped convolution, each block's sums exact, added in float64 (:meth:`ExactConv._split_sums`:
the same products; ``g_s``'s last layer takes it on most tiles).  ``"bytes"`` and
``"float64"`` are the reference routes the tests compare it with.

Used by bounded-error archives' base (:mod:`georsic.bounded`) and by exact lossy archives
(format version 8, ``--exact``: :mod:`georsic.exactarchive`); ``benchmarks/exact_synthesis.py``
and ``docs/exact_synthesis.md`` measure it.
"""

from __future__ import annotations

import decimal
import functools
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
#: The routes of :meth:`ExactSynthesis.forward`; all give the same bits.  ``fast``: int8 sums
#: where :func:`int8_sums_exact`, else float32 ones (``fast-int8``, ``fast-float32`` force
#: either); ``bytes`` and ``float64``: the reference routes, unfused.
METHODS = ("fast", "fast-int8", "fast-float32", "bytes", "float64")
#: How a layer's exact integer sums become its float32 outputs (:meth:`ExactConv.finish`).
EPILOGUES = ("float64", "float32")
#: The exact syntheses an archive may name (its header's ``synthesis``): input levels per sign
#: and epilogue.  ``exact-v1`` (formats 6-8): two bytes per input, float64 epilogue;
#: ``exact-v2``: 2**11 - 1 levels, so that most layers' sums fit one float32 convolution
#: (:meth:`ExactConv._single_sums`), and a float32 epilogue.
SYNTHESES = {"exact-v1": (LEVELS, "float64"), "exact-v2": (2**11 - 1, "float32")}
#: A transposed convolution with fewer output channels than this runs as its sub-pixel form
#: (a regular convolution of ``out * stride**2`` channels and a pixel shuffle): oneDNN's
#: deconvolution to 3 channels took 2x as long (65 against 30 ms for ``g_s``'s last layer on a
#: 1024-px tile, Zen 5, one thread).
SUBPIXEL_BELOW = 16
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
                 nonneg_input: bool, levels: int = LEVELS, epilogue: str = "float64") -> None:
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
        self.bound = bound
        if bound * 255 >= FLOAT32_EXACT:
            raise ValueError("a byte's sums pass 2**24: weights too large for this layer")
        if not 0 < levels <= LEVELS:
            raise ValueError(f"input levels {levels} outside 1..{LEVELS}")
        if epilogue not in EPILOGUES:
            raise ValueError(f"unknown epilogue {epilogue!r}")
        self.levels, self.epilogue = levels, epilogue
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
        self.register_buffer("out_scale32", out_scale.float().reshape(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("in_mult", (in_side / q).float().reshape(1, -1, 1, 1),
                             persistent=False)
        #: :meth:`_always_single`'s answer, by ``levels``
        self._single_at: dict[int, bool] = {}
        #: grouped weights of :meth:`_split_sums`, by number of groups
        self._grouped: dict[int, Tensor] = {}

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

    def forward(self, x: Tensor, method: str = "bytes", spent: bool = False) -> Tensor:
        """float32 activations in, float32 activations out (the sums times the layer's
        float64 output scale, rounded to float32).  ``spent``: the caller no longer needs
        ``x``, which the fast route may then overwrite with its integer inputs."""
        if method.startswith("fast"):
            return self.forward_fast(x, _use_int8(method, x.device), spent)
        return self.finish(self.sums(self.quantize(x), method))

    def finish(self, sums: Tensor, regular: bool = False) -> Tensor:
        """The layer's float32 outputs from its exact integer sums (float64, bias included):
        ``epilogue`` ``float64``, the sums times the float64 scale, rounded to float32;
        ``float32``, the sums rounded to float32 (exact below 2**24), times the float32
        scale.  One correctly rounded operation each: the same bits everywhere.  ``regular``:
        ``sums`` has the regular form's channels (phases of a transposed convolution)."""
        if self.epilogue == "float64":
            scale = self._fast_affine[1] if regular else self.out_scale
            return sums.mul_(scale).float()
        scale = self._fast_affine[2] if regular else self.out_scale32
        return sums.float().mul_(scale)

    @functools.cached_property
    def _regular(self) -> tuple[Tensor, int, int]:
        """The integer weight as a regular convolution (out * stride**2 phases when
        transposed: :func:`_phase_weight`), its padding and the pixel-shuffle factor."""
        if not self.transposed:
            return self.weight.contiguous(memory_format=torch.channels_last), \
                self.padding[0], 1
        weight, padding = _phase_weight(self.weight, self.stride[0], self.padding[0],
                                        self.output_padding[0])
        return weight.contiguous(memory_format=torch.channels_last), padding, self.stride[0]

    @functools.cached_property
    def _fast_affine(self) -> tuple[Tensor, Tensor, Tensor]:
        """The bias and the float64 and float32 output scales, one per output channel of the
        regular form."""
        phases = self._regular[2] ** 2
        return (self.bias.repeat_interleave(phases, dim=1),
                self.out_scale.repeat_interleave(phases, dim=1),
                self.out_scale32.repeat_interleave(phases, dim=1))

    @functools.cached_property
    def _packed(self) -> dict[int, object]:
        """The int8 weight prepacked by oneDNN, per input zero point (128 for the signed high
        byte, 0 otherwise)."""
        weight, padding, _ = self._regular
        stride = 1 if self.transposed else self.stride[0]
        zero_points = (0,) if self.nonneg_input else (0, 128)
        ones = torch.ones(weight.shape[0])
        return {zp: torch.ops.onednn.qconv_prepack(
            weight.to(torch.int8), ones, 1.0, zp, [stride] * 2, [padding] * 2, [1, 1], 1, None)
            for zp in zero_points}

    @functools.cached_property
    def _fold_bias(self) -> Tensor | None:
        """The bias, float32, where adding it to the low byte's sums stays below 2**24 (then
        the convolution adds it, exactly); else None."""
        if 255 * self.bound + float(self.bias.abs().max()) >= FLOAT32_EXACT:
            return None
        return self._fast_affine[0].flatten().float()

    def _int8(self, byte: Tensor, zero_point: int, bias: Tensor | None) -> Tensor:
        """oneDNN's int8 convolution of u8 ``byte`` (values ``byte - zero_point``): exact
        int32 sums, below 2**24, as float32."""
        weight, padding, _ = self._regular
        stride = 1 if self.transposed else self.stride[0]
        out = weight.shape[0]
        return torch.ops.onednn.qconv2d_pointwise(
            byte, 1.0, zero_point, self._packed[zero_point], torch.ones(out),
            torch.zeros(out, dtype=torch.int64), bias, [stride] * 2, [padding] * 2, [1, 1], 1,
            1.0, 0, torch.float32, "none", [], "")

    def _int8_sums(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """float32 sums of the high and the low byte of ``x``'s integer inputs (bias in the
        low one where folded), through int8: the inputs as int16 (quantised block by block,
        in cache), their two bytes read in place (the high one two's complement: ``^ 128``
        is ``high + 128``, read with input zero point 128)."""
        n, c, h, w = x.shape
        low = torch.empty((n, h, w, c), dtype=torch.uint8, device=x.device)
        high = torch.empty_like(low)
        for rows in _row_blocks(x):
            ints = self.quantize(x[:, :, rows]).permute(0, 2, 3, 1).to(torch.int16)
            pairs = ints.view(torch.uint8)  # NHWC, 2C bytes: low, high of each channel
            low[:, rows] = pairs[..., 0::2]
            high[:, rows] = pairs[..., 1::2]
            if not self.nonneg_input:
                high[:, rows].bitwise_xor_(128)
        zero_point = 0 if self.nonneg_input else 128
        low, high = low.permute(0, 3, 1, 2), high.permute(0, 3, 1, 2)
        return (self._int8(high, zero_point, None),
                self._int8(low, 0, self._fold_bias))

    def _float32_sums(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """float32 sums of the high and the low byte (bias in the low one where folded)."""
        weight, padding, _ = self._regular
        stride = 1 if self.transposed else self.stride[0]
        high, low = torch.empty_like(x), torch.empty_like(x)
        for rows in _row_blocks(x):
            a = self.quantize(x[:, :, rows])
            top = a.mul(1.0 / 256.0).floor_()  # -128..127 (0..127 after a ReLU)
            high[:, :, rows] = top
            low[:, :, rows] = a.add_(top, alpha=-256.0)  # 0..255
        with _exact_kernels(x.device):
            return (F.conv2d(high, weight, None, stride, padding),
                    F.conv2d(low, weight, self._fold_bias, stride, padding))

    @functools.cached_property
    def _sum_weights(self) -> tuple[Tensor, Tensor]:
        """Per (output channel of the regular form, input channel): the sums of the positive
        and of the negative integer weights' magnitudes (float64), for :meth:`_single_sums`'s
        bound."""
        flat = self._regular[0].double()
        positive = flat.clamp(min=0).sum((2, 3))
        negative = (-flat).clamp(min=0).sum((2, 3))
        return positive, negative

    def _always_single(self) -> bool:
        """Whether one float32 convolution is exact for any inputs: the sums' bound at the
        largest input the quantisation allows (``levels`` in every channel) stays below
        2**24, so no tile needs its inputs' peaks measured (cached per ``levels``)."""
        if self.levels not in self._single_at:
            peak = torch.full((self._sum_weights[0].shape[1],), float(self.levels),
                              dtype=torch.float64)
            self._single_at[self.levels] = self._single_exact(peak)
        return self._single_at[self.levels]

    def _single_exact(self, peak: Tensor) -> bool:
        """Whether one float32 convolution is exact for inputs whose largest magnitude per
        channel is ``peak``: every partial sum, bias included, bounded below 2**24."""
        bound = self._bound(self._sum_weights, peak) + self._fast_affine[0].flatten().abs()
        return float(bound.max()) < FLOAT32_EXACT

    def _single_sums(self, x: Tensor, spent: bool = False
                     ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The integer inputs of ``x`` (float32, channels-last), their largest magnitude per
        channel and, where this tile allows it, their sums (bias included) by **one** float32
        convolution: when every partial sum is bounded below 2**24 by the inputs' largest
        magnitude per channel times the weights' magnitudes (plus |bias|), each addition is
        exact in any order, so the sums are the same integers as the byte route's.  ``None``
        where the bound is not met.  Where any inputs meet it (:meth:`_always_single`), the
        peaks are not measured (``None``), and a ``spent`` ``x`` (one no other step reads
        after this layer) holds the integer inputs in place: no other route will need the
        activations.  Nothing is kept on the layer: threads share it."""
        measure = not self._always_single()
        a = x if spent and not measure else torch.empty_like(x)
        low = 0.0 if self.nonneg_input else -float(self.levels)
        channels = x.shape[1]
        peaks = []
        for rows in _row_blocks(x):
            block = a[:, :, rows]
            torch.mul(x[:, :, rows], self.in_mult, out=block)
            block.round_().clamp_(low, float(self.levels))
            if measure:
                flat = block.permute(0, 2, 3, 1).reshape(-1, channels)  # a view: channels-last
                peaks.append(_column_peak(flat, signed=not self.nonneg_input))
        if not measure:
            return a, None, self._float_conv(a)
        peak = torch.stack(peaks).amax(dim=0).double()
        if not self._single_exact(peak):
            return a, peak, None
        return a, peak, self._float_conv(a)

    def _bound(self, sum_weights: tuple[Tensor, Tensor], peak: Tensor) -> Tensor:
        """Per output channel of the regular form, a bound of every partial sum's magnitude
        for inputs whose largest magnitude per channel is ``peak``, from the sums of the
        positive and negative weights' magnitudes (``sum_weights``)."""
        positive, negative = sum_weights
        if self.nonneg_input:
            return torch.maximum(positive @ peak, negative @ peak)
        return (positive + negative) @ peak

    def _group_weight(self, groups: int) -> Tensor:
        """The regular form's integer weight as a grouped convolution's: ``groups`` blocks of
        consecutive input channels, each block's sums its own ``outs`` output channels."""
        weight = self._regular[0]
        size = weight.shape[1] // groups
        return torch.cat([weight[:, g * size:(g + 1) * size] for g in range(groups)]
                         ).contiguous(memory_format=torch.channels_last)

    def _split_sums(self, a: Tensor, peak: Tensor) -> Tensor | None:
        """The exact integer sums (float64, bias included, the regular form's channels) of
        integer inputs ``a`` by **one** grouped float32 convolution, where the single sum's
        bound (:meth:`_single_sums`) is passed: the input channels in ``groups`` blocks whose
        partial sums each stay below 2**24, added in float64 (exact integers).  The same
        products as one convolution (no byte planes, no extra products); ``peak``: the
        inputs' largest magnitude per channel.  None where no split of 2, 4 or 8 blocks keeps
        the bound."""
        weight, padding, _ = self._regular
        outs, channels = weight.shape[:2]
        positive, negative = self._sum_weights
        for groups in (2, 4, 8):
            if channels % groups:
                break
            size = channels // groups
            bounds = [self._bound((positive[:, g * size:(g + 1) * size],
                                   negative[:, g * size:(g + 1) * size]),
                                  peak[g * size:(g + 1) * size]) for g in range(groups)]
            if float(torch.stack(bounds).max()) >= FLOAT32_EXACT:
                continue
            if groups not in self._grouped:
                self._grouped[groups] = self._group_weight(groups)
            stride = 1 if self.transposed else self.stride[0]
            with _exact_kernels(a.device):
                parts = F.conv2d(a, self._grouped[groups], None, stride, padding, 1, groups)
            out = torch.empty((parts.shape[0], outs) + parts.shape[2:], dtype=torch.float64,
                              device=a.device).contiguous(memory_format=torch.channels_last)
            for rows in _row_blocks(parts):
                acc = parts[:, :outs, rows].double()
                for g in range(1, groups):
                    acc.add_(parts[:, g * outs:(g + 1) * outs, rows])
                out[:, :, rows] = acc.add_(self._fast_affine[0])
            return out
        return None

    def _float_conv(self, a: Tensor) -> Tensor:
        """The layer's float32 convolution of channels-last integer inputs ``a``, bias
        included, in the layer's own output layout (a transposed convolution as oneDNN's
        direct deconvolution: each output sums the products of one phase)."""
        bias = self.bias.flatten().float()
        with _exact_kernels(a.device):
            if self.transposed and self.weight.shape[1] >= SUBPIXEL_BELOW:
                return F.conv_transpose2d(a, self.weight, bias, self.stride, self.padding,
                                          self.output_padding)
            weight, padding, _ = self._regular
            if self.transposed:  # few outputs (g_s's last layer): the sub-pixel form is faster
                bias = self._fast_affine[0].flatten().float()
                return self._shuffle(F.conv2d(a, weight, bias, 1, padding))
            if weight.shape[-1] == 1 and a.device.type == "cpu" \
                    and torch.backends.mkldnn.is_available():
                # oneDNN's direct 1x1 convolution (torch picks an im2col path on one thread)
                return torch.mkldnn_convolution(a, weight, bias, [padding] * 2,
                                                list(self.stride), [1, 1], 1)
            return F.conv2d(a, weight, bias, self.stride, padding)

    def forward_fast(self, x: Tensor, int8: bool, spent: bool = False) -> Tensor:
        """:meth:`forward` by the fast route (channels-last ``x``): the same integers, hence
        the same bits.  One float32 convolution where this tile's inputs allow it
        (:meth:`_single_sums`), else byte sums by oneDNN int8 if ``int8``, else by float32.
        The element-wise work runs on blocks of rows that stay in cache."""
        a, peak, single = self._single_sums(x, spent)
        if single is not None:
            if self.epilogue == "float32":
                return single.mul_(self.out_scale32)
            out = torch.empty_like(single)
            for rows in _row_blocks(single):
                out[:, :, rows] = single[:, :, rows].double().mul_(self.out_scale)
            return out
        split = self._split_sums(a, peak)
        if split is not None:
            out = torch.empty(split.shape, dtype=torch.float32, device=a.device
                              ).contiguous(memory_format=torch.channels_last)
            for rows in _row_blocks(split):
                out[:, :, rows] = self.finish(split[:, :, rows], regular=True)
            return self._shuffle(out)
        if int8:
            high, low = self._int8_sums(x)
        else:
            high, low = self._float32_sums(x)
        out = torch.empty_like(low)
        for rows in _row_blocks(low):
            # 256 * high + low + bias: integers below 2**53, exact; then the epilogue
            acc = low[:, :, rows].double().add_(high[:, :, rows], alpha=256.0)
            if self._fold_bias is None:
                acc.add_(self._fast_affine[0])
            out[:, :, rows] = self.finish(acc, regular=True)
        return self._shuffle(out)

    def _shuffle(self, out: Tensor) -> Tensor:
        """The regular form's output back to the layer's (pixel shuffle of the phases)."""
        factor = self._regular[2]
        if factor == 1:
            return out
        return F.pixel_shuffle(out, factor).contiguous(memory_format=torch.channels_last)


def _column_peak(flat: Tensor, signed: bool) -> Tensor:
    """Per column of a contiguous (rows, C) ``flat``, the largest value (``signed``: the
    largest magnitude).  Reduced over a view ``k`` rows wide (``k * C`` about 256 values),
    then over ``k``: torch's reduction over rows of 16 values is about 50 times slower than
    of 32 or more; exact either way (a maximum does not round)."""
    rows, channels = flat.shape
    wide = max(1, 256 // channels)
    main = rows - rows % wide
    parts = []
    if main:
        view = flat[:main].view(-1, wide * channels)
        parts.append(view.amax(dim=0).view(wide, channels))
        if signed:
            parts.append(view.amin(dim=0).neg_().view(wide, channels))
    if main < rows:
        parts.append(flat[main:].amax(dim=0, keepdim=True))
        if signed:
            parts.append(flat[main:].amin(dim=0, keepdim=True).neg_())
    return torch.cat(parts).amax(dim=0)


def _row_blocks(x: Tensor, elements: int = 2**17) -> list[slice]:
    """Slices of ``x``'s rows (dim 2) of about ``elements`` values each: a channels-last
    tensor's blocks of rows are contiguous, and their float64 intermediates stay in cache."""
    height = x.shape[2]
    rows = max(1, elements // max(1, x.shape[0] * x.shape[1] * x.shape[3]))
    return [slice(r, min(r + rows, height)) for r in range(0, height, rows)]


def _phase_weight(weight: Tensor, stride: int, padding: int, output_padding: int
                  ) -> tuple[Tensor, int]:
    """A transposed convolution's weight ``(in, out, k, k)`` as a regular one's,
    ``(out * stride**2, in, k', k')``, whose output channel ``c * stride**2 + py * stride + px``
    is output phase ``(py, px)`` of channel ``c`` (the order of :func:`F.pixel_shuffle`), and
    its padding.  Each output sums the same products as the transposed convolution's."""
    channels_in, channels_out, k, _ = weight.shape
    if k + output_padding - 2 * padding != stride:
        raise ValueError("the output is not stride x the input: no sub-pixel form")
    taps = {phase: {(phase + padding - kk) // stride: kk for kk in range(k)
                    if (phase + padding - kk) % stride == 0} for phase in range(stride)}
    low = min(min(t) for t in taps.values())
    high = max(max(t) for t in taps.values())
    if low != -high:
        raise ValueError("asymmetric sub-pixel padding")
    size = high - low + 1
    out = weight.new_zeros(channels_out, stride, stride, channels_in, size, size)
    for py in range(stride):
        for px in range(stride):
            for dy, ky in taps[py].items():
                for dx, kx in taps[px].items():
                    out[:, py, px, :, dy - low, dx - low] = weight[:, :, ky, kx].t()
    return out.reshape(channels_out * stride * stride, channels_in, size, size), -low


def _use_int8(method: str, device: torch.device) -> bool:
    """Whether ``method`` (a ``fast`` one) sums through oneDNN int8 here."""
    if method == "fast-float32":
        return False
    exact = device.type == "cpu" and int8_sums_exact()
    if method == "fast-int8" and not exact:
        raise ValueError("oneDNN's int8 sums are not exact here (no VNNI): use fast-float32")
    return exact


@functools.cache
def int8_sums_exact() -> bool:
    """Whether oneDNN's int8 convolution gives exact int32 sums of u8 x s8 products here,
    input zero points and zero padding included (VNNI; AVX2's kernels add pairs of products
    in saturating int16): probed once on inputs and weights that would saturate."""
    try:
        op = torch.ops.onednn.qconv2d_pointwise.default
        weight = torch.full((4, 64, 3, 3), 127.0)
        weight[1] = -127.0
        weight[2, ::2] = -127.0
        byte = torch.full((1, 64, 5, 7), 255.0)
        byte[:, :, 2, 3] = 0.0
        for zero_point in (0, 128):
            packed = torch.ops.onednn.qconv_prepack(
                weight.to(torch.int8), torch.ones(4), 1.0, zero_point, [1, 1], [1, 1], [1, 1],
                1, None)
            got = op(byte.to(torch.uint8, memory_format=torch.channels_last), 1.0, zero_point,
                     packed, torch.ones(4), torch.zeros(4, dtype=torch.int64), None, [1, 1],
                     [1, 1], [1, 1], 1, 1.0, 0, torch.float32, "none", [], "")
            want = F.conv2d((byte - zero_point).double(), weight.double(), None, 1, 1)
            if not torch.equal(got.double(), want):
                return False
        return True
    except (AttributeError, RuntimeError):
        return False


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

    def __init__(self, g_s: nn.Sequential, amax: dict[str, float],
                 synthesis: str = "exact-v1") -> None:
        super().__init__()
        if synthesis not in SYNTHESES:
            raise ValueError(f"unknown exact synthesis {synthesis!r}")
        self.synthesis = synthesis
        levels, epilogue = SYNTHESES[synthesis]
        self.convs = nn.ModuleDict()
        nonneg = _nonneg_inputs(g_s)
        for name, module in g_s.named_modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                try:
                    self.convs[name.replace(".", "_")] = ExactConv(
                        module, MARGIN * amax[name], name in nonneg, levels, epilogue)
                except ValueError as exc:  # say which layer
                    raise ValueError(f"g_s.{name}: {exc}") from None
        self.structure = [(name, type(m).__name__) for name, m in g_s.named_children()]
        self.register_buffer("sigmoid_table", _sigmoid_table(), persistent=False)

    def _conv(self, name: str, x: Tensor, spent: bool = False) -> Tensor:
        """Convolution ``name`` of ``x``; ``spent``: nothing reads ``x`` afterwards."""
        return self.convs[name.replace(".", "_")](x, self._method, spent)

    def _sigmoid(self, x: Tensor) -> Tensor:
        steps = SIGMOID_RANGE * 2**SIGMOID_BITS
        index = x.mul(float(2**SIGMOID_BITS)).round_().clamp_(-steps, steps).add_(steps)
        return self.sigmoid_table[index.long()]

    def _residual_unit(self, prefix: str, x: Tensor) -> Tensor:
        out = self._conv(f"{prefix}.conv.0", x).relu_()
        out = self._conv(f"{prefix}.conv.2", out, spent=True).relu_()
        out = self._conv(f"{prefix}.conv.4", out, spent=True)
        return out.add_(x).relu_()

    def _attention(self, prefix: str, x: Tensor) -> Tensor:
        a = x
        for i in range(3):
            a = self._residual_unit(f"{prefix}.conv_a.{i}", a)
        b = x
        for i in range(3):
            b = self._residual_unit(f"{prefix}.conv_b.{i}", b)
        b = self._conv(f"{prefix}.conv_b.3", b, spent=b is not x)
        return a.mul_(self._sigmoid(b)).add_(x)

    def _bottleneck(self, prefix: str, x: Tensor) -> Tensor:
        out = self._conv(f"{prefix}.conv1", x).relu_()
        out = self._conv(f"{prefix}.conv2", out, spent=True).relu_()
        out = self._conv(f"{prefix}.conv3", out, spent=True)
        return out.add_(x)

    _method = "fast"

    def forward(self, y_hat: Tensor, method: str = "fast") -> Tensor:
        """The image (float32) from the latent; ``method`` (:data:`METHODS`) chooses only how
        the integer sums are computed (:meth:`ExactConv.sums`, :meth:`ExactConv.forward_fast`):
        every method gives the same bits."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        self._method = method
        x = y_hat.float()
        if method.startswith("fast"):
            x = x.contiguous(memory_format=torch.channels_last)
        for name, kind in self.structure:
            if kind == "AttentionBlock":
                x = self._attention(name, x)
            elif kind == "ResidualBottleneckBlock":
                x = self._bottleneck(name, x)
            else:  # the latent itself is the caller's
                x = self._conv(name, x, spent=x is not y_hat)
        return x.contiguous()


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
