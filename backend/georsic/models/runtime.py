"""The transforms ``g_a`` and ``g_s`` on a CPU through ONNX Runtime, where it is installed.

The transforms decide no probability, so any correct kernel may compute them (the entropy
parameters, which must agree to the bit, stay in :mod:`georsic.models.exact`).  On this
project's 2-core CPU, one thread, a 1024-px tile (``benchmarks/transform_levers.py``):

* ``g_a``: torch channels-last 1.40 s, ONNX Runtime 0.81 s;
* ``g_s``: torch channels-last 1.62 s, ONNX Runtime 1.36 s, of which 0.78 s in its four
  ``ConvTranspose`` nodes; written as sub-pixel convolutions (:class:`SubPixelConv`, the same
  function) ONNX Runtime runs it in 1.04 s.

Since 2026-12-03 (a Zen 1 CPU, half as fast; ``docs/speed.md``): ``g_s`` is cut at its four
upsamplings, which run as sub-pixel convolutions in NNPACK (Winograd, bundled with torch's CPU
builds), with ONNX Runtime between them, each segment starting with a :class:`LayoutAnchor` so
that its residual sums stay in ONNX Runtime's blocked layout (2.01 -> 1.75 s a tile there);
where torch has no NNPACK, one graph with :class:`PhaseConvTranspose` upsamplings (1.84 s).
NNPACK has no AVX-512 kernels and ONNX Runtime has: on a CPU with AVX-512 (a Zen 4 EPYC,
2026-12-03) the one graph takes 0.96 s a tile against 1.34 s staged, so the stages are used
only where torch reports a CPU capability below AVX-512 (:func:`staged_synthesis_pays`).

Where the CPU multiplies bfloat16 natively (AVX512-BF16, AMX), both run in bfloat16 in
torch's oneDNN kernels instead, ``g_s`` with sub-pixel upsamplings (:class:`Bfloat16Transform`).
On the Zen 4, a 1024-px tile, one thread (``benchmarks/transform_levers.py``): ``g_s`` 0.53 s
against 0.89 s for the float32 graph, ``g_a`` 0.47 s against 0.66 s.  Decoding the same
streams moves PSNR by -0.008 to +0.002 dB; BD-rate +0.08 % for ``g_s``, +0.03 % for both, on
the held-out images (``benchmarks/synthesis_precision.py``).

The graphs are exported from the loaded model when first needed (1-3 s for both) and kept, per
weights file, in the process and in a cache folder (``GEORSIC_CACHE``, else
``$XDG_CACHE_HOME/georsic`` or ``~/.cache/georsic``; a file that does not load is exported
again), and run with one intra-op thread, so a tile decodes to the same
pixels whichever thread or how many threads run beside it.  ``GEORSIC_RUNTIME=torch`` keeps
the transforms in torch, float32; without ``onnxruntime`` and ``onnx`` that is what happens.
``GEORSIC_RUNTIME=onnxruntime`` runs both in ONNX Runtime, float32, on any CPU.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Environment variable choosing the CPU runtime of the transforms: auto, torch, onnxruntime.
RUNTIME_ENV = "GEORSIC_RUNTIME"
#: Environment variable naming the cache folder of exported graphs.
CACHE_ENV = "GEORSIC_CACHE"
#: Part of a cached graph's name: bumped when the export changes.
GRAPH_VERSION = 3

_GRAPHS: dict[tuple[str, str], bytes] = {}
_EXPORT_LOCK = threading.Lock()


class SubPixelConv(nn.Module):
    """``ConvTranspose2d(kernel 5, stride 2, padding 2, output_padding 1)`` as a 3x3
    convolution to four times the channels and a pixel shuffle: the same function.

    Output row ``2m + r`` of the transposed convolution takes kernel rows ``4, 2, 0`` from input
    rows ``m - 1, m, m + 1`` when ``r = 0`` and rows ``3, 1`` from ``m, m + 1`` when ``r = 1``
    (likewise for columns); each phase ``(r_y, r_x)`` is one group of output channels.
    """

    TAPS = {0: (4, 2, 0), 1: (None, 3, 1)}

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        weight = _deconv_weight(deconv)
        cin, cout = weight.shape[:2]
        kernel = weight.new_zeros(cout, 2, 2, cin, 3, 3)
        for ry, rows in self.TAPS.items():
            for rx, cols in self.TAPS.items():
                for ty, ky in enumerate(rows):
                    for tx, kx in enumerate(cols):
                        if ky is not None and kx is not None:
                            kernel[:, ry, rx, :, ty, tx] = weight[:, :, ky, kx].t()
        self.conv = nn.Conv2d(cin, 4 * cout, 3, padding=1, dtype=weight.dtype,
                              device=weight.device)
        with torch.no_grad():
            self.conv.weight.copy_(kernel.reshape(4 * cout, cin, 3, 3))
            self.conv.bias.copy_(deconv.bias.detach().repeat_interleave(4))

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


class PhaseConvTranspose(nn.Module):
    """The same transposed convolution as :class:`SubPixelConv`, as its four output phases.

    Phase ``(r_y, r_x)`` is a convolution with only the kernel taps that reach it (3x3, 3x2,
    2x3 and 2x2: the 25 taps, none of them zero), so it costs 25/36 of the sub-pixel form's
    multiply-adds; the phases are stacked and shuffled into the output grid.
    """

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        weight = _deconv_weight(deconv)
        cin, cout = weight.shape[:2]
        taps = {r: [k for k in rows if k is not None] for r, rows in SubPixelConv.TAPS.items()}
        self.phases = nn.ModuleList()
        #: F.pad's (left, right, top, bottom) per phase: a 3-tap phase reads input rows
        #: m - 1 .. m + 1, a 2-tap phase m .. m + 1
        self.pads: list[tuple[int, int, int, int]] = []
        for ry in (0, 1):
            for rx in (0, 1):
                kernel = weight[:, :, taps[ry]][:, :, :, taps[rx]].transpose(0, 1)
                conv = nn.Conv2d(cin, cout, tuple(kernel.shape[-2:]), dtype=weight.dtype,
                                 device=weight.device)
                with torch.no_grad():
                    conv.weight.copy_(kernel)
                    conv.bias.copy_(deconv.bias.detach())
                self.phases.append(conv)
                self.pads.append((1 - rx, 1, 1 - ry, 1))

    def forward(self, x: Tensor) -> Tensor:
        outs = [conv(F.pad(x, pad)) for conv, pad in zip(self.phases, self.pads, strict=True)]
        n, c, h, w = outs[0].shape
        return F.pixel_shuffle(torch.stack(outs, dim=2).reshape(n, 4 * c, h, w), 2)


class LayoutAnchor(nn.Conv2d):
    """An identity 1x1 convolution.  ONNX Runtime keeps a tensor in its blocked NCHWc layout,
    and folds a residual ``Add`` into the convolution before it, only when the tensor comes
    from a convolution; a graph input or a pixel shuffle's output is plain NCHW, and so was
    every residual sum after it (reordered to NCHW and back at each block: 13 % of ``g_s`` on a
    1024-px tile).  An anchor after them costs less than those reorders."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 1, bias=False)
        with torch.no_grad():
            self.weight.copy_(torch.eye(channels)[:, :, None, None])


def _deconv_weight(deconv: nn.ConvTranspose2d) -> Tensor:
    """The (in, out, 5, 5) weight of a transposed convolution the sub-pixel and phase forms
    compute, or a ValueError naming what it is."""
    if not is_subpixel_compatible(deconv):
        raise ValueError(f"not a 5x5 stride-2 transposed convolution: {deconv}")
    return deconv.weight.detach()


def is_subpixel_compatible(module: nn.Module) -> bool:
    return (isinstance(module, nn.ConvTranspose2d) and module.kernel_size == (5, 5)
            and module.stride == (2, 2) and module.padding == (2, 2)
            and module.output_padding == (1, 1) and module.groups == 1
            and module.dilation == (1, 1) and module.bias is not None)


def with_subpixel_convolutions(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every compatible transposed convolution a :class:`SubPixelConv`."""
    net = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    for parent in net.modules():
        for name, child in parent.named_children():
            if is_subpixel_compatible(child):
                setattr(parent, name, SubPixelConv(child))
    return net


def synthesis_for_onnxruntime(g_s: nn.Sequential, in_channels: int) -> nn.Sequential:
    """``g_s`` as ONNX Runtime runs it fastest, the same function: each inner 5x5 stride-2
    transposed convolution a :class:`PhaseConvTranspose` followed by a :class:`LayoutAnchor`,
    the last one (to 3 channels, too few for the blocked layout) a :class:`SubPixelConv`, and an
    anchor at the input (``benchmarks/transform_levers.py``)."""
    modules: list[nn.Module] = [LayoutAnchor(in_channels)]
    children = list(copy.deepcopy(g_s).to(memory_format=torch.contiguous_format))
    for i, child in enumerate(children):
        if is_subpixel_compatible(child) and i == len(children) - 1:
            modules.append(SubPixelConv(child))
        elif is_subpixel_compatible(child):
            modules += [PhaseConvTranspose(child), LayoutAnchor(child.out_channels)]
        else:
            modules.append(child)
    return nn.Sequential(*modules)


class NnpackUpsample(nn.Module):
    """A 5x5 stride-2 transposed convolution as a :class:`SubPixelConv` whose 3x3 convolution
    runs in NNPACK (bundled with torch's CPU builds: Winograd F(6x6, 3x3), 2.5-3x as fast as
    a direct 3x3 convolution to 256 channels; relative error ~1e-4).  NNPACK computes each
    output tile alike whatever its thread count, so the pixels do not depend on it
    (``tests/test_runtime.py``)."""

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        conv = SubPixelConv(deconv).conv
        self.register_buffer("weight", conv.weight.detach().float().contiguous())
        self.register_buffer("bias", conv.bias.detach().float().contiguous())

    def forward(self, x: Tensor) -> Tensor:
        y = torch._nnpack_spatial_convolution(x.float().contiguous(), self.weight, self.bias,
                                              [1, 1], [1, 1])
        return F.pixel_shuffle(y, 2)


def nnpack_available() -> bool:
    """Whether torch was built with NNPACK and it runs on this CPU."""
    try:
        return bool(torch._nnpack_available())
    except (AttributeError, RuntimeError):
        return False


def staged_synthesis_pays() -> bool:
    """Whether NNPACK's upsampling beats ONNX Runtime's on this CPU: NNPACK runs and the CPU
    has no AVX-512, which ONNX Runtime's kernels use and NNPACK's do not (``docs/speed.md``).
    A property of the CPU, not a timing, so a machine always decodes with the same kernels."""
    if not nnpack_available():
        return False
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return True
    return not capability.upper().startswith("AVX512")


def bfloat16_transforms_pay() -> bool:
    """Whether ``g_a`` and ``g_s`` run in bfloat16 (:class:`Bfloat16Transform`): the CPU has
    native bfloat16 dot products (AVX512-BF16; AMX machines have it too) and
    ``GEORSIC_RUNTIME`` does not ask for float32 (``onnxruntime``, ``torch``).  Without them
    oneDNN emulates bfloat16, slower than float32.  A property of the CPU, not a timing, like
    :func:`staged_synthesis_pays`."""
    if os.environ.get(RUNTIME_ENV, "auto") != "auto":
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class Bfloat16Transform:
    """A transform in bfloat16, channels-last, in torch's oneDNN kernels; returns float32 NCHW.

    ``g_s``'s upsamplings run as :class:`SubPixelConv` (the same function): oneDNN's bfloat16
    transposed convolution sums in another order on one and two threads for some shapes
    (measured: a 44x42 latent), its forward convolutions split outputs among threads, so a
    tile codes to the same bits and pixels on any thread count (``tests/test_runtime.py``).
    Weights and activations in bfloat16 (8-bit mantissa), sums in float32.  A plain
    callable, not a module: the model holding it keeps its float32 weights as its state.
    """

    def __init__(self, net: nn.Module) -> None:
        self.net = with_subpixel_convolutions(net).to(torch.bfloat16).to(
            memory_format=torch.channels_last).eval()

    def __call__(self, x: Tensor) -> Tensor:
        x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        return self.net(x).float().contiguous()


def strip_plan(height: int, width: int, pixels: int, halo: int, step: int = 1
               ) -> list[tuple[int, int]]:
    """(first, end) rows of strips of about ``pixels`` values each (at least four halos
    high), of even height rounded up to a multiple of ``step``, covering ``height`` rows."""
    rows = max(pixels // max(width, 1), 4 * halo)
    count = -(-height // rows)
    even = -(-height // count)
    rows = -(-even // step) * step
    return [(r, min(height, r + rows)) for r in range(0, height, rows)]


#: Rows of the tail's input per strip times its width (:class:`StripedSynthesis`): a 1024-px
#: tile's tail runs in two strips of 128 rows of 256.
STRIP_PIXELS = 128 * 256


def receptive_radius(modules: list[nn.Module]) -> float | None:
    """How many rows of their input ``modules`` (run in order) read above and below an output
    row, in units of that input's rows; None where a module's reach is not known here."""
    radius, scale = 0.0, 1.0
    for module in modules:
        if isinstance(module, nn.Conv2d) and module.stride == (1, 1):
            radius += module.dilation[0] * (module.kernel_size[0] - 1) / 2 / scale
        elif is_subpixel_compatible(module) or isinstance(module, SubPixelConv):
            radius += 1 / scale  # a 3x3 convolution at the input's scale, then a shuffle
            scale *= 2
        elif isinstance(module, (nn.ReLU, nn.Identity)):
            continue
        elif type(module).__name__ == "ResidualBottleneckBlock":
            inner = receptive_radius([module.conv1, module.conv2, module.conv3])
            if inner is None:
                return None
            radius += inner / scale
        else:
            return None
    return radius


def synthesis_split(g_s: nn.Sequential) -> tuple[int, int, int] | None:
    """Where :class:`StripedSynthesis` cuts ``g_s``: (index of the first tail module, halo rows
    at the tail's input, the tail's upsampling factor), the tail being the last two
    upsamplings and what lies between them; None for a ``g_s`` of another shape."""
    children = list(g_s)
    ups = [i for i, child in enumerate(children) if is_subpixel_compatible(child)]
    if len(ups) < 2 or ups[-1] != len(children) - 1:
        return None
    start = ups[-2]
    radius = receptive_radius(children[start:])
    if radius is None:
        return None
    return start, int(radius) + 1, 4


class StripedSynthesis:
    """``tail(head(y))`` with the tail, where a tile's largest activations live (64 channels
    at half and full resolution), run on horizontal strips of the head's output, each with
    ``halo`` rows of real neighbours above and below (more than the tail's reach,
    :func:`receptive_radius`), cropped and stacked: the same function, with the peak memory of
    a strip instead of a tile (a 1024-px tile's ``g_s`` on an AVX2 CPU: 1,478 -> see
    docs/speed.md).  The strips depend only on the tensor's height, so a tile decodes to the
    same pixels on any thread count."""

    def __init__(self, head: Callable[[Tensor], Tensor], tail: Callable[[Tensor], Tensor],
                 halo: int, factor: int, strip_pixels: int = STRIP_PIXELS) -> None:
        self.head, self.tail = head, tail
        self.halo, self.factor, self.strip_pixels = halo, factor, strip_pixels

    def strips(self, height: int, width: int) -> list[tuple[int, int]]:
        """The (first, end) rows of each strip of a ``height`` x ``width`` head output."""
        return strip_plan(height, width, self.strip_pixels, self.halo)

    def __call__(self, y: Tensor) -> Tensor:
        x = self.head(y)
        height, width = x.shape[-2:]
        plan = self.strips(height, width)
        if len(plan) == 1:
            return self.tail(x)
        pieces = []
        for first, end in plan:
            top, bottom = max(first - self.halo, 0), min(end + self.halo, height)
            out = self.tail(x[..., top:bottom, :])
            skip = (first - top) * self.factor
            pieces.append(out[..., skip:skip + (end - first) * self.factor, :])
            del out
        return torch.cat(pieces, dim=-2)


#: Input pixels per strip of ``g_a``'s head (:class:`StripedAnalysis`): a 1024-px tile in
#: two strips of 512 rows.
ANALYSIS_STRIP_PIXELS = 512 * 1024


def analysis_split(g_a: nn.Sequential) -> tuple[int, int, int] | None:
    """Where :class:`StripedAnalysis` cuts ``g_a``: (index of the first tail module, halo rows
    of the input, the head's downsampling factor), the head being everything up to and
    including the second strided convolution; None for a ``g_a`` of another shape."""
    radius, factor = 0.0, 1
    for index, module in enumerate(g_a):
        if isinstance(module, nn.Conv2d) and module.padding[0] * 2 + 1 >= module.kernel_size[0]:
            radius += module.dilation[0] * (module.kernel_size[0] - 1) / 2 * factor
            factor *= module.stride[0]
            if module.stride[0] > 1 and factor >= 4:
                halo = -(-int(radius + 1) // factor) * factor
                return index + 1, halo, factor
        elif type(module).__name__ == "ResidualBottleneckBlock":
            inner = receptive_radius([module.conv1, module.conv2, module.conv3])
            if inner is None:
                return None
            radius += inner * factor
        else:
            return None
    return None


class StripedAnalysis:
    """``tail(head(x))`` with the head, whose activations are a tile's largest (64 channels at
    half resolution), run on horizontal strips of the input with ``halo`` rows of real
    neighbours above and below (more than the head's reach), its outputs cropped and stacked
    before the tail: the same function with a strip's peak memory.  Strips start on multiples
    of the head's downsampling ``factor`` and depend only on the input's height."""

    def __init__(self, head: Callable[[Tensor], Tensor], tail: Callable[[Tensor], Tensor],
                 halo: int, factor: int, strip_pixels: int = ANALYSIS_STRIP_PIXELS) -> None:
        self.head, self.tail = head, tail
        self.halo, self.factor, self.strip_pixels = halo, factor, strip_pixels

    def strips(self, height: int, width: int) -> list[tuple[int, int]]:
        """The (first, end) input rows of each strip of a ``height`` x ``width`` input."""
        return strip_plan(height, width, self.strip_pixels, self.halo, self.factor)

    def __call__(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        plan = self.strips(height, width)
        if len(plan) == 1 or height % self.factor:
            return self.tail(self.head(x))
        pieces = []
        for first, end in plan:
            top, bottom = max(first - self.halo, 0), min(end + self.halo, height)
            out = self.head(x[..., top:bottom, :])
            skip = (first - top) // self.factor
            pieces.append(out[..., skip:skip + (end - first) // self.factor, :])
            del out
        return self.tail(torch.cat(pieces, dim=-2))


def synthesis_stages(g_s: nn.Sequential, in_channels: int) -> list[tuple[str, nn.Module, int]]:
    """``g_s`` cut at its upsampling (5x5 stride-2 transposed) convolutions: ``("onnx",
    segment, channels)`` for each run of other modules (with a :class:`LayoutAnchor` first) and
    ``("nnpack", NnpackUpsample, channels)`` for each upsampling; ``channels`` is the stage's
    input's."""
    stages: list[tuple[str, nn.Module, int]] = []
    segment: list[nn.Module] = []
    channels = in_channels
    for child in copy.deepcopy(g_s).to(memory_format=torch.contiguous_format):
        if not is_subpixel_compatible(child):
            segment.append(child)
            continue
        if segment:
            stages.append(("onnx", nn.Sequential(LayoutAnchor(channels), *segment), channels))
            segment = []
        stages.append(("nnpack", NnpackUpsample(child).eval(), child.in_channels))
        channels = child.out_channels
    if segment:
        stages.append(("onnx", nn.Sequential(LayoutAnchor(channels), *segment), channels))
    return stages


class StagedTransform:
    """Stages run one after another (:func:`synthesis_stages`)."""

    def __init__(self, stages: list[Callable[[Tensor], Tensor]]) -> None:
        self.stages = stages

    def __call__(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


#: The forms :func:`cpu_transforms` gives the transforms (:func:`cpu_transforms_kind`), in words.
CPU_TRANSFORMS = {"bfloat16": "torch oneDNN, bfloat16",
                  "staged": "ONNX Runtime, float32; g_s upsamplings in NNPACK",
                  "graph": "ONNX Runtime, float32"}


def cpu_transforms_kind() -> str:
    """Which form of :data:`CPU_TRANSFORMS` :func:`cpu_transforms` gives on this CPU."""
    if bfloat16_transforms_pay():
        return "bfloat16"
    return "staged" if staged_synthesis_pays() else "graph"


def cpu_transforms_description() -> str:
    """What runs ``g_a`` and ``g_s`` on this CPU (:func:`cpu_transforms`), in words."""
    if not onnxruntime_available():
        return "torch, float32"
    return CPU_TRANSFORMS[cpu_transforms_kind()]


def onnxruntime_available() -> bool:
    if os.environ.get(RUNTIME_ENV, "auto") == "torch":
        return False
    try:
        import onnx  # noqa: F401 - torch's exporter needs it
        import onnxruntime  # noqa: F401
    except ImportError:
        if os.environ.get(RUNTIME_ENV) == "onnxruntime":
            raise
        return False
    return True


def cache_dir() -> Path:
    """Where exported graphs are kept between processes."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "georsic"


def _cache_path(key: tuple[str, str]) -> Path:
    version = torch.__version__.split("+")[0]
    return cache_dir() / "onnx" / f"{key[0]}-{key[1]}-torch{version}-g{GRAPH_VERSION}.onnx"


def _load_cached(key: tuple[str, str]) -> bytes | None:
    try:
        return _cache_path(key).read_bytes()
    except OSError:
        return None


def _store(key: tuple[str, str], graph: bytes) -> None:
    """Write the graph to the cache atomically; a cache that cannot be written is skipped."""
    path = _cache_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as tmp:
            tmp.write(graph)
        os.replace(tmp.name, path)
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp.name)


def _graph(make: Callable[[], nn.Module], channels: int, key: tuple[str, str],
           cached: bool = True) -> bytes:
    with _EXPORT_LOCK:
        if key not in _GRAPHS and cached:
            graph = _load_cached(key)
            if graph is not None:
                _GRAPHS[key] = graph
        if key not in _GRAPHS:
            net = make().eval()
            example = torch.zeros(1, channels, 64, 64)
            buffer = io.BytesIO()
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(net, (example,), buffer, input_names=["x"],
                                  output_names=["y"], dynamic_axes={"x": {2: "h", 3: "w"}},
                                  dynamo=False, opset_version=17)
            _GRAPHS[key] = buffer.getvalue()
            _store(key, _GRAPHS[key])
        return _GRAPHS[key]


def _transform(make: Callable[[], nn.Module], channels: int, key: tuple[str, str],
               threads: int = 1) -> OrtTransform:
    """A session of the graph, exported again when the cached one does not load."""
    try:
        return OrtTransform(_graph(make, channels, key), threads)
    except Exception:  # noqa: BLE001 - a damaged cache file: whatever ONNX Runtime raises
        with _EXPORT_LOCK:
            _GRAPHS.pop(key, None)
        return OrtTransform(_graph(make, channels, key, cached=False), threads)


class OrtTransform:
    """One exported transform run by an ONNX Runtime session with ``threads`` intra-op
    threads (its convolutions split the outputs, not the sums, among them: the same bits for
    any count, ``tests/test_runtime.py``)."""

    def __init__(self, graph: bytes, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(int(threads), 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # No memory arena: ONNX Runtime's arena keeps every block it ever allocated and grew
        # with each new tile shape, so a process's peak grew with the raster (a 16.8 MP
        # decode on an AVX2 CPU: 3,384 MiB with it, 2,477 MiB without; same speed).
        options.enable_cpu_mem_arena = False
        # Nor memory patterns: a session keeps the one block each input shape's plan filled
        # (``georsic bench memory --sizes 1024 4096 8192``, AVX2 class, compress then
        # decompress in one process: 1,891 / 2,088 / 2,242 MiB with them, 1,837 / 1,994 /
        # 2,161 MiB without; same speed; benchmarks/results/memory_v5.md).
        options.enable_mem_pattern = False
        self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def __call__(self, x: Tensor) -> Tensor:
        array = x.detach().float().contiguous().numpy()
        return torch.from_numpy(self._session.run(None, {"x": array})[0])


def cpu_transforms(g_a: nn.Module, g_s: nn.Module, in_channels: int, latent_channels: int,
                   key: str, threads: int = 1
                   ) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """Analysis and synthesis as this CPU runs them fastest: in bfloat16 where it has native
    bfloat16 (:class:`Bfloat16Transform`, on torch's threads), else as ONNX Runtime sessions of
    ``threads`` threads, ``g_s`` staged with NNPACK upsamplings where that pays; ``key`` names
    the weights (sha256).  ``g_s``'s last upsamplings run in strips
    (:class:`StripedSynthesis`) where its shape allows."""
    kind = cpu_transforms_kind()
    analysis = _analysis(kind, g_a, in_channels, key, threads)
    split = synthesis_split(g_s) if isinstance(g_s, nn.Sequential) else None
    if split is None:
        return analysis, _synthesis(kind, g_s, latent_channels, key, "g_s", threads)
    start, halo, factor = split
    tail_channels = g_s[start].in_channels
    head = _synthesis(kind, g_s[:start], latent_channels, key, "g_s_head", threads)
    tail = _synthesis(kind, g_s[start:], tail_channels, key, "g_s_tail", threads)
    return analysis, StripedSynthesis(head, tail, halo, factor)


def _analysis(kind: str, g_a: nn.Module, in_channels: int, key: str,
              threads: int) -> Callable[[Tensor], Tensor]:
    """``g_a`` as runtime ``kind`` runs it, its head in strips (:class:`StripedAnalysis`)
    where its shape allows."""
    def run(net: nn.Module, channels: int, name: str) -> Callable[[Tensor], Tensor]:
        if kind == "bfloat16":
            return Bfloat16Transform(net)
        return _transform(lambda: net, channels, (key, name), threads)

    split = analysis_split(g_a) if isinstance(g_a, nn.Sequential) else None
    if split is None:
        return run(g_a, in_channels, "g_a")
    start, halo, factor = split
    return StripedAnalysis(run(g_a[:start], in_channels, "g_a_head"),
                           run(g_a[start:], g_a[start - 1].out_channels, "g_a_tail"),
                           halo, factor)


def _synthesis(kind: str, net: nn.Sequential, channels: int, key: str, name: str,
               threads: int) -> Callable[[Tensor], Tensor]:
    """``net`` (all or part of ``g_s``) as runtime ``kind`` runs it."""
    if kind == "bfloat16":
        return Bfloat16Transform(net)
    if kind == "graph":
        return _transform(lambda: synthesis_for_onnxruntime(net, channels), channels,
                          (key, name), threads)
    stages: list[Callable[[Tensor], Tensor]] = []
    for i, (stage_kind, module, stage_channels) in enumerate(synthesis_stages(net, channels)):
        if stage_kind == "nnpack":
            stages.append(module)
        else:
            stages.append(_transform(lambda m=module: m, stage_channels, (key, f"{name}{i}"),
                                     threads))
    return StagedTransform(stages)


