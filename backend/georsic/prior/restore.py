"""Running the codebook prior on images of any size: overlapping windows, blended.

:func:`restore` cuts a decoded codec image (3, H, W) into windows of ``window`` pixels that
overlap by ``overlap``, runs :class:`~georsic.prior.model.CodePrior` on each (it pads a window
to its stride and crops it back), and joins them with raised-cosine cross-fades normalised to
sum to one, so no seam appears where windows meet.  Memory is that of one window in the model
plus the image itself: decoding calls it once per archive tile, so it is bounded by the tile
size whatever the raster's size.

:class:`TilePrior` is what the archive reader is given: a loaded prior, the fidelity ``w`` and
the window settings, callable on one codec image.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from georsic.defaults import DEFAULT_FIDELITY
from georsic.errors import GeorsicError, WeightsError

#: Mean HSV saturation of its input images above which the prior is said not to suit a raster:
#: aerial and UAV imagery, which it was trained on, is about 0.2 (0.08-0.21 on the test and
#: benchmark images); a classified map rendered to RGB about 0.8, where the prior cost 2.1-3.6
#: dB and took a third of the colour spread (benchmarks/prior_content.py, docs/prior.md).
VIVID_SATURATION = 0.5

#: Window edge and overlap (pixels) the prior runs on; multiples of every preset's stride.
DEFAULT_WINDOW = 256
DEFAULT_OVERLAP = 32


class FidelityError(GeorsicError):
    """The prior's fidelity weight is outside [0, 1]."""

    exit_code = 2


def check_fidelity(fidelity: float) -> float:
    """``fidelity`` as a float in [0, 1], or a one-line :class:`FidelityError`."""
    try:
        value = float(fidelity)
    except (TypeError, ValueError):
        raise FidelityError(f"fidelity must be a number between 0 and 1, not {fidelity!r}") \
            from None
    if not 0.0 <= value <= 1.0:  # NaN fails here too
        raise FidelityError(f"fidelity must be between 0 and 1, not {fidelity!r}")
    return value


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Starts of windows of ``window`` pixels covering ``length``, each overlapping the next by
    at least ``overlap``; the last one ends at ``length`` (windows never stick out)."""
    if length <= window:
        return [0]
    step = window - overlap
    count = math.ceil((length - overlap) / step)
    starts = [i * step for i in range(count)]
    starts[-1] = length - window
    return sorted(set(starts))


def ramp(size: int, overlap: int, before: bool, after: bool) -> np.ndarray:
    """Blend weights along one axis of a window: raised-cosine rises over ``overlap`` pixels on
    the sides that meet another window (``before``, ``after``), 1 elsewhere; never zero."""
    out = np.ones(size, dtype=np.float32)
    n = min(overlap, size // 2)
    if n:
        rise = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
        if before:
            out[:n] = rise
        if after:
            out[size - n:] = rise[::-1]
    return out


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def restore(image: np.ndarray, prior: torch.nn.Module, fidelity: float = DEFAULT_FIDELITY, *,
            window: int = DEFAULT_WINDOW, overlap: int = DEFAULT_OVERLAP,
            mode: str = "full") -> np.ndarray:
    """Run ``prior`` on overlapping windows of ``image`` and blend them.

    Parameters
    ----------
    image : (3, H, W) float32 in [0, 1]
        A decoded codec image.
    prior : CodePrior
        The model, on the device it should run on (CPU or CUDA).
    fidelity : float
        ``w`` in [0, 1]: 0 trusts the prior most, 1 stays closest to ``image``.
    window, overlap : int
        Window edge and minimum overlap in pixels.
    mode : "full", "transformer" or "nearest"
        The prior's stage (see :class:`~georsic.prior.model.CodePrior`; for the ablation).

    Returns
    -------
    (3, H, W) float32 in [0, 1]
    """
    fidelity = check_fidelity(fidelity)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"restore expects a (3, H, W) image, got shape {image.shape}")
    if not 0 <= overlap <= window // 2:
        raise ValueError(f"window overlap must be between 0 and half the window ({window // 2}),"
                         f" not {overlap}")
    _, h, w = image.shape
    device = _device_of(prior)
    ys, xs = window_starts(h, window, overlap), window_starts(w, window, overlap)
    if len(ys) == 1 and len(xs) == 1:
        return _run(prior, image, fidelity, mode, device)
    total = np.zeros(image.shape, dtype=np.float32)
    weight = np.zeros((h, w), dtype=np.float32)
    for i, y in enumerate(ys):
        wh = min(window, h - y)
        wy = ramp(wh, overlap, i > 0, i < len(ys) - 1)
        for j, x in enumerate(xs):
            ww = min(window, w - x)
            wx = ramp(ww, overlap, j > 0, j < len(xs) - 1)
            out = _run(prior, image[:, y:y + wh, x:x + ww], fidelity, mode, device)
            blend = wy[:, None] * wx[None, :]
            total[:, y:y + wh, x:x + ww] += out * blend
            weight[y:y + wh, x:x + ww] += blend
    return total / weight


def _run(prior: torch.nn.Module, crop: np.ndarray, fidelity: float, mode: str,
         device: torch.device) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None].to(device)
    with torch.inference_mode():
        y = prior(x, fidelity, mode=mode)
    return y[0].float().cpu().numpy()


@dataclass(frozen=True)
class TilePrior:
    """A loaded prior with its decoding settings, applied to one codec image at a time.

    ``tag`` (``"<id> <sha256[:12]>"``) is what decoded GeoTIFFs record in ``GEORSIC_PRIOR``.
    """

    model: torch.nn.Module
    fidelity: float
    model_id: str
    sha256: str
    window: int = DEFAULT_WINDOW
    overlap: int = DEFAULT_OVERLAP
    mode: str = "full"
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)
    #: sum of the mean saturations of the images seen, and their count
    _seen: list = field(default_factory=lambda: [0.0, 0], compare=False, repr=False)

    @property
    def tag(self) -> str:
        return f"{self.model_id} {self.sha256[:12]}"

    def tags(self) -> dict[str, str]:
        """The GeoTIFF tags naming this prior and ``w``."""
        return {"GEORSIC_PRIOR": self.tag, "GEORSIC_PRIOR_FIDELITY": f"{self.fidelity:g}"}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        with self._lock:  # one window at a time through a shared model (threads share it)
            self._seen[0] += saturation(image)
            self._seen[1] += 1
            return restore(image, self.model, self.fidelity, window=self.window,
                           overlap=self.overlap, mode=self.mode)

    def mean_saturation(self) -> float | None:
        """Mean saturation of the images this prior has restored here (None: none yet)."""
        with self._lock:
            return self._seen[0] / self._seen[1] if self._seen[1] else None

    def unsuited(self) -> str | None:
        """Why the prior did not suit what it restored (saturated colours), or None."""
        mean = self.mean_saturation()
        if mean is None or mean <= VIVID_SATURATION:
            return None
        return (f"the colours restored through the codebook prior are saturated (mean "
                f"saturation {mean:.2f}; aerial imagery about 0.2): the prior, learned on "
                "aerial textures, washes such colours out and lowers PSNR (docs/prior.md); "
                "decode without --prior")


def saturation(image: np.ndarray) -> float:
    """Mean HSV saturation of an RGB image (3, H, W) in [0, 1]."""
    high, low = image.max(axis=0), image.min(axis=0)
    return float(np.mean(np.where(high > 1e-6, (high - low) / np.maximum(high, 1e-6), 0.0)))


_MODELS: dict[tuple[str, str], torch.nn.Module] = {}


def load_tile_prior(fidelity: float = DEFAULT_FIDELITY, device: str = "cpu",
                    model_id: str | None = None, **settings) -> TilePrior:
    """The installed prior (``model_id``, default the manifest's default prior) on ``device``,
    cached per (weights, device), with fidelity ``fidelity``; a one-line
    :class:`~georsic.errors.WeightsError` when none is installed."""
    from georsic.prior.model import load_prior
    from georsic.weights import find_model

    fidelity = check_fidelity(fidelity)
    try:
        entry = find_model(model_id, kind="prior")
    except WeightsError:
        if model_id:
            raise
        raise WeightsError("no default Code-RSIC codebook prior is installed (resources/weights "
                           "or $GEORSIC_WEIGHTS); name one (--prior MODEL, `georsic models` "
                           "lists them) or decode without --prior") from None
    if entry.kind != "prior":
        raise WeightsError(f"model {entry.id!r} is a {entry.kind}, not a prior")
    key = (entry.sha256, device)
    if key not in _MODELS:
        # float32 whatever torch's (process-wide) default dtype is in this thread right now
        _MODELS[key] = load_prior(entry, device).float()
    return TilePrior(_MODELS[key], fidelity, entry.id, entry.sha256, **settings)
