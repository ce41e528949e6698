"""Variable-rate ELIC.

ELIC [He2022] with gain units [Cui2021] so that one model serves every
quality level: the analysis output ``y`` is scaled channel-wise by a learned
gain vector before quantisation and rescaled by a learned inverse gain before
synthesis.  Quality is a continuous value ``q`` in ``[0, levels - 1]``; between
two trained levels the gains are interpolated geometrically, which gives a
smooth rate control at no extra cost.

[He2022]: "ELIC: Efficient Learned Image Compression with Unevenly Grouped
Space-Channel Contextual Adaptive Coding", D. He, Z. Yang, W. Peng, R. Ma,
H. Qin and Y. Wang, CVPR 2022.  The transforms and the space-channel context
model are CompressAI's :class:`~compressai.models.sensetime.Elic2022Official`.

[Cui2021]: "Asymmetric Gained Deep Image Compression With Continuous Rate
Adaptation", Z. Cui, J. Wang, S. Gao, T. Guo, Y. Feng and B. Bai, CVPR 2021.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

with warnings.catch_warnings():  # compressai scripts functions with the deprecated torch.jit
    warnings.simplefilter("ignore", FutureWarning)
    from compressai.models.sensetime import Elic2022Official

from georsic.models.exact import NAME, NAME_V2, ExactEntropyCoder
from georsic.models.exact import NAMES as EXACT_PATHS
from georsic.models.streams import SharedRansStream, attached, use_shared_streams

#: Rate-distortion trade-offs of the trained levels (loss = lambda * 255^2 * MSE + bpp).
DEFAULT_LAMBDAS: tuple[float, ...] = (0.0004, 0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483)


def default_groups(latent_channels: int) -> list[int]:
    """Uneven channel groups in the proportions of the paper (16, 16, 32, 64, rest of 320)."""
    unit = max(latent_channels // 20, 1)
    groups = [unit, unit, 2 * unit, 4 * unit]
    groups.append(latent_channels - sum(groups))
    return groups


#: torch's default dtype is one setting for the whole process: the float64 decoding path and
#: model construction take this lock, so that threads decoding tiles at once neither build a
#: model in float64 nor leave the default changed (two interleaved set/restore pairs did).
DTYPE_LOCK = threading.RLock()


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    with DTYPE_LOCK:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(previous)


def remap_gains(state: dict[str, Tensor], old_lambdas: Sequence[float],
                new_lambdas: Sequence[float]) -> dict[str, Tensor]:
    """Gain tables of ``state`` carried over to another ladder of lambdas.

    Each channel's log-gain is a smooth function of ``log(lambda)``; it is interpolated
    linearly in that variable between trained levels and extrapolated along the end
    segments, so that weights trained for one ladder start close on another (fine-tuning
    then corrects the rest).
    """
    old = torch.tensor([math.log(v) for v in old_lambdas], dtype=torch.float64)
    new = torch.tensor([math.log(v) for v in new_lambdas], dtype=torch.float64)
    upper = torch.searchsorted(old, new).clamp(1, len(old) - 1)
    weight = ((new - old[upper - 1]) / (old[upper] - old[upper - 1]))[:, None]
    remapped = dict(state)
    for key in ("log_gain", "log_inverse_gain"):
        table = state[key].to(torch.float64)
        values = table[upper - 1] * (1 - weight) + table[upper] * weight
        remapped[key] = values.to(state[key].dtype)
    return remapped


def _stage(N: int) -> list[nn.Module]:
    from compressai.models.sensetime import ResidualBottleneckBlock

    return [ResidualBottleneckBlock(N, N) for _ in range(3)]


def elic_analysis(N: int, M: int) -> nn.Sequential:
    """ELIC's analysis transform [He2022] at width ``N`` to ``M`` latent channels: the layers
    of CompressAI's ``Elic2022Official.g_a``, in the same order (so the same parameter names)."""
    from compressai.layers import AttentionBlock
    from compressai.models.utils import conv

    return nn.Sequential(
        conv(3, N, kernel_size=5, stride=2), *_stage(N),
        conv(N, N, kernel_size=5, stride=2), *_stage(N), AttentionBlock(N),
        conv(N, N, kernel_size=5, stride=2), *_stage(N),
        conv(N, M, kernel_size=5, stride=2), AttentionBlock(M),
    )


def elic_synthesis(N: int, M: int) -> nn.Sequential:
    """ELIC's synthesis transform [He2022] at width ``N`` from ``M`` latent channels: the layers
    of CompressAI's ``Elic2022Official.g_s``, in the same order (so the same parameter names)."""
    from compressai.layers import AttentionBlock
    from compressai.models.utils import deconv

    return nn.Sequential(
        AttentionBlock(M), deconv(M, N, kernel_size=5, stride=2), *_stage(N),
        deconv(N, N, kernel_size=5, stride=2), AttentionBlock(N), *_stage(N),
        deconv(N, N, kernel_size=5, stride=2), *_stage(N),
        deconv(N, 3, kernel_size=5, stride=2),
    )


class ElicVariableRate(Elic2022Official):
    """ELIC with gain units: one network for all quality levels.

    Parameters
    ----------
    N, M:
        Channels of the transforms and of the latent ``y`` (paper: 192 and 320).
    groups:
        Uneven channel groups of the space-channel context model.
    lambdas:
        The rate-distortion trade-off each gain level is trained for.
    N_s, N_a:
        Channels of the synthesis ``g_s`` and of the analysis ``g_a`` when other than ``N``
        (transforms distilled from a model of width ``N``, :mod:`georsic.train.distill`);
        ``None``: ``N``.
    """

    def __init__(
        self,
        N: int = 192,
        M: int = 320,
        groups: Sequence[int] | None = None,
        lambdas: Sequence[float] = DEFAULT_LAMBDAS,
        N_s: int | None = None,
        N_a: int | None = None,
    ) -> None:
        groups = list(groups) if groups is not None else default_groups(M)
        super().__init__(N=N, M=M, groups=groups)
        if N_s is not None and N_s != N:
            self.g_s = elic_synthesis(N_s, M)
        if N_a is not None and N_a != N:
            self.g_a = elic_analysis(N_a, M)
        self.lambdas = tuple(float(v) for v in lambdas)
        reference = math.exp(sum(math.log(v) for v in self.lambdas) / len(self.lambdas))
        init = torch.tensor([0.5 * math.log(v / reference) for v in self.lambdas])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, M))
        self.log_inverse_gain = nn.Parameter(-init[:, None].repeat(1, M))
        use_shared_streams(self.latent_codec)

    @property
    def levels(self) -> int:
        return len(self.lambdas)

    def _gain(self, table: Tensor, quality: Tensor | float) -> Tensor:
        """Gain vectors for ``quality`` (scalar or one per sample), shaped (B|1, M, 1, 1)."""
        q = torch.as_tensor(quality, dtype=table.dtype, device=table.device).reshape(-1)
        q = q.clamp(0, self.levels - 1)
        low = q.floor().long().clamp(max=self.levels - 2)
        frac = (q - low.to(q.dtype))[:, None]
        log_gain = table[low] * (1 - frac) + table[low + 1] * frac
        return log_gain.exp()[:, :, None, None]

    def forward(self, x: Tensor, quality: Tensor | float = 0.0) -> dict:
        y = self.g_a(x) * self._gain(self.log_gain, quality)
        y_out = self.latent_codec(y)
        y_hat = y_out["y_hat"] * self._gain(self.log_inverse_gain, quality)
        return {"x_hat": self.g_s(y_hat), "likelihoods": y_out["likelihoods"]}

    def use_float64_entropy_model(self) -> ElicVariableRate:
        """Run the entropy model (hyperprior and context models) in float64 when coding.

        The rANS decoder must rebuild exactly the probability tables the encoder used. In
        float32 the order of a convolution's additions (it changes with the number of CPU
        threads, the CPU's vector unit or the GPU) moves predicted scales across table
        boundaries often enough to derail decoding; in float64 such a move needs a value within
        about 1e-15 of a boundary. The transforms g_a and g_s stay in float32.
        """
        self.latent_codec.double()
        return self

    def _entropy_dtype(self) -> torch.dtype:
        return next(self.latent_codec.parameters()).dtype

    #: Memory layout of the synthesis input (``use_channels_last_synthesis``).
    _synthesis_layout = torch.contiguous_format

    def use_channels_last_synthesis(self) -> ElicVariableRate:
        """Run ``g_s`` in channels-last layout: oneDNN's convolutions then skip reorders (a
        512-px tile's synthesis on one thread of this 2-core CPU: 0.59 s -> 0.34 s)."""
        self.g_s.to(memory_format=torch.channels_last)
        self._synthesis_layout = torch.channels_last
        return self

    #: Inference callables replacing ``g_a`` / ``g_s`` in ``compress`` / ``decompress``
    #: (:meth:`use_cpu_transforms`); training and refinement use the modules.
    _analysis_runtime = None
    _synthesis_runtime = None

    def use_cpu_transforms(self, key: str, threads: int = 1) -> ElicVariableRate:
        """Code on a CPU with ``g_a`` and ``g_s`` run as :mod:`georsic.models.runtime` runs
        them fastest (in bfloat16 where the CPU has it, else ONNX Runtime on ``threads``
        threads); ``key`` names the weights (their sha256)."""
        from georsic.models.runtime import cpu_transforms

        self._analysis_runtime, self._synthesis_runtime = cpu_transforms(
            self.g_a, self.g_s, 3, sum(self.groups), key, threads)
        return self

    def _analyse(self, x: Tensor) -> Tensor:
        return self.g_a(x) if self._analysis_runtime is None else self._analysis_runtime(x)

    def _synthesise(self, y_hat: Tensor) -> Tensor:
        if self._synthesis_runtime is not None:
            return self._synthesis_runtime(y_hat)
        return self.g_s(y_hat.contiguous(memory_format=self._synthesis_layout))

    def use_exact_entropy_model(self, amax: dict[str, float], raw: dict | None = None
                                ) -> ElicVariableRate:
        """Attach the exact integer entropy paths (:mod:`georsic.models.exact`), built from this
        model's weights (``raw``: the weights file as stored, int8 layers with their scales)
        and the calibration ``amax``: ``int-exact-v2`` for new archives (``self.exact``) and
        ``int-exact-v1``, built when an archive needs it.  ``compress``/``decompress`` use them
        with ``entropy`` set to one of :data:`~georsic.models.exact.NAMES`."""
        self._exact_source = (amax, raw)
        self._exact_coders: dict = {}
        self.exact = self.exact_coder(NAME)
        return self

    def exact_coder(self, entropy: str):
        """The exact coder of an archive's entropy path (``codec.entropy``)."""
        if entropy not in EXACT_PATHS or getattr(self, "_exact_source", None) is None:
            raise ValueError(f"no exact coder for entropy path {entropy!r}")
        if entropy not in self._exact_coders:
            amax, raw = self._exact_source
            self._exact_coders[entropy] = ExactEntropyCoder(
                self, amax, raw, one_block=entropy == NAME_V2).to(self.log_gain.device)
        return self._exact_coders[entropy]

    @torch.no_grad()
    def compress(self, x: Tensor, quality: float = 0.0, single_stream: bool = True,
                 latent: Tensor | None = None, entropy: str = "float") -> dict:
        """Code ``x`` (one image) into one rANS string, or CompressAI's eleven.

        ``strings`` holds ``[[data]]`` for a single stream (see :mod:`georsic.models.streams`),
        else one list per entropy-model call, as CompressAI returns them.  ``latent``, when
        given, is coded instead of ``g_a(x)`` (see :mod:`georsic.models.refine`).
        ``entropy="int-exact-v2"`` (or ``-v1``) codes through that exact integer path
        (:meth:`use_exact_entropy_model`) and adds ``y_hat``, the latent every decoder decodes
        from the string (before the inverse gain), else CompressAI's entropy model in its
        current dtype.
        """
        y = self._analyse(x) * self._gain(self.log_gain, quality) if latent is None else latent
        if entropy in EXACT_PATHS:
            string, y_hat = self.exact_coder(entropy).compress(y)
            return {"strings": [[string]], "y_hat": y_hat}
        y = y.to(self._entropy_dtype())
        if not single_stream:
            return self.latent_codec.compress(y)
        with attached(self.latent_codec, SharedRansStream()) as stream:
            out = self.latent_codec.compress(y)
            out["strings"] = [[stream.flush()]]
        return out

    @torch.no_grad()
    def decompress(self, strings: list, shape, quality: float = 0.0,
                   entropy: str = "float") -> dict:
        """Decode what :meth:`compress` returned: one string, or one per entropy-model call."""
        if entropy in EXACT_PATHS:
            y_hat = self.exact_coder(entropy).decompress(strings[0][0], tuple(shape["y"][0][1:]))
            y_hat = y_hat.to(self.log_gain.dtype) * self._gain(self.log_inverse_gain, quality)
            return {"x_hat": self._synthesise(y_hat).clamp_(0, 1)}
        # CompressAI allocates the decoded latent with torch.zeros (the default dtype)
        with _default_dtype(self._entropy_dtype()):
            if len(strings) == 1:
                calls = 2 * len(self.groups) + 1
                with attached(self.latent_codec, SharedRansStream(strings[0][0])):
                    y_hat = self.latent_codec.decompress([[b""]] * calls, shape)["y_hat"]
            else:
                y_hat = self.latent_codec.decompress(strings, shape)["y_hat"]
        y_hat = y_hat.to(self.log_gain.dtype)
        y_hat = y_hat * self._gain(self.log_inverse_gain, quality)
        return {"x_hat": self._synthesise(y_hat).clamp_(0, 1)}
