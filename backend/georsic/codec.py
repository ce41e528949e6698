"""Tile codec: 3-channel images in [0, 1] to ELIC bitstreams and back."""

from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F

from georsic.errors import GeorsicError
from georsic.models import build_model, exact
from georsic.models.elic import DTYPE_LOCK
from georsic.models.refine import refine_latent
from georsic.models.runtime import cpu_transforms_kind, onnxruntime_available
from georsic.weights import ModelEntry, dequantized, load_entry_raw_tensors

#: The latent grid of ELIC is 1/64 of the image (4 strided convs + 2 in the hyperprior).
ALIGN = 64


def resolve_device(device: str = "auto") -> str:
    if device in ("auto", None):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device in ("gpu", "cuda") or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise GeorsicError("device 'cuda' was asked for but no CUDA GPU is available; "
                               "use --device cpu or auto")
        return "cuda" if device == "gpu" else device
    if device == "cpu":
        return "cpu"
    raise GeorsicError(f"unknown device {device!r}; use auto, cpu or cuda")


#: How an image is extended to a multiple of ``ALIGN`` before coding (the decoder crops it).
PADDINGS = ("mean", "replicate", "reflect", "zeros")


def pad_to_align(x: torch.Tensor, padding: str = "mean") -> torch.Tensor:
    """``x`` (B, C, H, W) padded right and below to a multiple of ``ALIGN``.

    ``mean`` (the default) fills with each channel's mean: a flat field costs the fewest bits.
    On 400x400 aerial images replicated edges took 16-22 % of the latent's bits (the padded
    grid is 448x448); ``benchmarks/padding.py`` measures it: BD-rate of mean against replicate
    -13.2 %, -11.4 % (400x400) and -3.1 % (751x708) on the held-out images.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % ALIGN, -w % ALIGN
    if not (ph or pw):
        return x
    if padding == "mean":
        padded = x.mean(dim=(2, 3), keepdim=True).expand(*x.shape[:2], h + ph, w + pw).clone()
        padded[..., :h, :w] = x
        return padded
    if padding == "zeros":
        return F.pad(x, (0, pw, 0, ph))
    if padding in ("replicate", "reflect"):
        return F.pad(x, (0, pw, 0, ph), mode=padding)
    raise ValueError(f"unknown padding {padding!r}; use one of {', '.join(PADDINGS)}")


#: Entropy paths an archive can name (``codec.entropy``; absent: ``float64``, before it).
ENTROPY_PATHS = ("float64", *exact.NAMES)


def release_freed_memory() -> None:
    """Give the heap's freed pages back to the system (glibc's ``malloc_trim``), where there
    is one: arrays freed below the mmap threshold otherwise stay in the process's resident
    memory, one heap per thread that built a codec."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class TileCodec:
    """An ELIC model ready for coding, with the entropy tables of its weights.

    Weights that carry a calibration of the exact integer entropy path
    (:mod:`georsic.models.exact`) code new images through it (``entropy`` is then
    ``exact.NAME``); the float64 path decodes what was coded with it before.
    """

    def __init__(self, entry: ModelEntry, device: str = "cpu", threads: int = 1) -> None:
        self.entry = entry
        self.device = device
        with DTYPE_LOCK:  # never while another thread decodes with float64 as the default
            model = build_model(entry.architecture, entry.config)
        raw = load_entry_raw_tensors(entry)
        state = dequantized({k: v for k, v in raw.items() if not k.startswith(exact.PREFIX)})
        model.load_state_dict(state)
        amax = exact.amax_from_state(raw)
        if amax:
            model.use_exact_entropy_model(amax, raw)
        else:
            model.use_float64_entropy_model()
        self.model = model.use_channels_last_synthesis().to(device).eval()
        #: What runs g_a and g_s: ``onnxruntime`` on a CPU where installed, ``bfloat16``
        #: (oneDNN) on a CPU with native bfloat16, else ``torch`` (float32).
        self.runtime = "torch"
        if device == "cpu" and onnxruntime_available():
            self.model.use_cpu_transforms(entry.sha256, threads)
            bf16 = cpu_transforms_kind() == "bfloat16"
            self.runtime = "bfloat16" if bf16 else "onnxruntime"
        self.entropy = exact.NAME if amax else "float64"
        self._float64 = not amax
        self.groups = list(model.groups)
        self.levels = model.levels
        self._lock = threading.Lock()
        del raw, state
        release_freed_memory()  # the build's float64 copies (the exact path's: ~70 MiB)

    def _path(self, entropy: str) -> str:
        """The model's argument for an archive's entropy path, converting to float64 if needed."""
        if entropy in exact.NAMES:
            if self.entropy not in exact.NAMES:
                raise GeorsicError(f"weights {self.entry.id} have no exact entropy path")
            return entropy
        if entropy != "float64":
            raise GeorsicError(f"unknown entropy path {entropy!r} (known: "
                               f"{', '.join(ENTROPY_PATHS)}); a newer GeoRSIC made this archive")
        if not self._float64:
            self.model.use_float64_entropy_model()
            self._float64 = True
        return "float"

    def _pad(self, image: np.ndarray, padding: str = "mean") -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image))[None].to(self.device)
        return pad_to_align(x, padding)

    def _shape(self, height: int, width: int) -> dict:
        hp, wp = -(-height // ALIGN) * ALIGN, -(-width // ALIGN) * ALIGN
        ys = [torch.Size([g, hp // 16, wp // 16]) for g in self.groups]
        return {"y": ys, "hyper": torch.Size([hp // 64, wp // 64])}

    @property
    def streams_per_image(self) -> int:
        """One since archive version 3 (older archives hold ``2 * groups + 1``, decoded too)."""
        return 1

    def encode(self, image: np.ndarray, quality: float, padding: str = "mean",
               refine: int = 0) -> list[bytes]:
        """(3, H, W) float32 in [0, 1] to the list of rANS streams of one image.

        ``refine`` steps of encoder-side latent refinement (:mod:`georsic.models.refine`)
        trade encoding time for a smaller stream; decoding is unchanged.
        """
        h, w = image.shape[-2:]
        with self._lock:
            path = self._path(self.entropy)
            x = self._pad(image, padding)
            latent = refine_latent(self.model, x, quality, refine, h, w) if refine > 0 else None
            with torch.inference_mode():
                out = self.model.compress(x, quality, latent=latent, entropy=path)
        return [s[0] for s in out["strings"]]

    def encode_exact(self, image: np.ndarray, quality: float, refine: int = 0
                     ) -> tuple[list[bytes], torch.Tensor]:
        """:meth:`encode` through this codec's exact entropy path, with the latent every
        decoder will decode from the stream (``y_hat`` before the inverse gain, on the CPU):
        an exact archive's encoder synthesises its tiles' digests from it instead of decoding
        its own streams."""
        if self.entropy not in exact.NAMES:
            raise GeorsicError(f"weights {self.entry.id} have no exact entropy path")
        h, w = image.shape[-2:]
        with self._lock:
            x = self._pad(image, "mean")
            latent = refine_latent(self.model, x, quality, refine, h, w) if refine > 0 else None
            with torch.inference_mode():
                out = self.model.compress(x, quality, latent=latent,
                                          entropy=self._path(self.entropy))
        return [s[0] for s in out["strings"]], out["y_hat"].cpu()

    def decode(self, streams: list[bytes], height: int, width: int,
               quality: float, entropy: str | None = None) -> np.ndarray:
        """The rANS streams of one image back to (3, H, W) float32 in [0, 1]; ``entropy`` is
        the path they were coded with (an archive's ``codec.entropy``, ``float64`` when it has
        none), by default the one :meth:`encode` uses."""
        strings = [[s] for s in streams]
        with self._lock, torch.inference_mode():
            path = self._path(entropy or self.entropy)
            x_hat = self.model.decompress(strings, self._shape(height, width), quality,
                                          entropy=path)["x_hat"]
        return x_hat[0, :, :height, :width].float().cpu().numpy()


def thread_invariant(entropy: str, device: str) -> bool:
    """Whether tiles of entropy path ``entropy`` code to the same bits on any number of threads
    on ``device``, without loading a codec: on a CPU with the transforms in ONNX Runtime,
    NNPACK or oneDNN's bfloat16 forward convolutions (which split outputs, not sums, among
    threads) and an exact entropy path."""
    return device == "cpu" and onnxruntime_available() and entropy in exact.NAMES


_CODECS: dict[tuple[str, str], TileCodec] = {}


def get_codec(entry: ModelEntry, device: str) -> TileCodec:
    """A cached codec per (weights, device): loading the weights costs about a second."""
    key = (entry.sha256, device)
    if key not in _CODECS:
        _CODECS[key] = TileCodec(entry, device)
    return _CODECS[key]
