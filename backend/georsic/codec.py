"""Tile codec: 3-channel images in [0, 1] to ELIC bitstreams and back."""

from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F

from georsic.errors import GeorsicError
from georsic.models import build_model
from georsic.weights import ModelEntry, load_entry_state_dict

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


class TileCodec:
    """An ELIC model ready for coding, with the entropy tables of its weights."""

    def __init__(self, entry: ModelEntry, device: str = "cpu") -> None:
        self.entry = entry
        self.device = device
        model = build_model(entry.architecture, entry.config)
        model.load_state_dict(load_entry_state_dict(entry))
        self.model = model.use_float64_entropy_model().to(device).eval()
        self.groups = list(model.groups)
        self.levels = model.levels
        self._lock = threading.Lock()

    def _pad(self, image: np.ndarray) -> torch.Tensor:
        h, w = image.shape[-2:]
        ph, pw = -h % ALIGN, -w % ALIGN
        x = torch.from_numpy(np.ascontiguousarray(image))[None].to(self.device)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x

    def _shape(self, height: int, width: int) -> dict:
        hp, wp = -(-height // ALIGN) * ALIGN, -(-width // ALIGN) * ALIGN
        ys = [torch.Size([g, hp // 16, wp // 16]) for g in self.groups]
        return {"y": ys, "hyper": torch.Size([hp // 64, wp // 64])}

    @property
    def streams_per_image(self) -> int:
        return 2 * len(self.groups) + 1

    def encode(self, image: np.ndarray, quality: float) -> list[bytes]:
        """(3, H, W) float32 in [0, 1] to the list of rANS streams of one image."""
        with self._lock, torch.inference_mode():
            out = self.model.compress(self._pad(image), quality)
        return [s[0] for s in out["strings"]]

    def decode(self, streams: list[bytes], height: int, width: int,
               quality: float) -> np.ndarray:
        """The rANS streams of one image back to (3, H, W) float32 in [0, 1]."""
        strings = [[s] for s in streams]
        with self._lock, torch.inference_mode():
            x_hat = self.model.decompress(strings, self._shape(height, width), quality)["x_hat"]
        return x_hat[0, :, :height, :width].float().cpu().numpy()


_CODECS: dict[tuple[str, str], TileCodec] = {}


def get_codec(entry: ModelEntry, device: str) -> TileCodec:
    """A cached codec per (weights, device): loading the weights costs about a second."""
    key = (entry.sha256, device)
    if key not in _CODECS:
        _CODECS[key] = TileCodec(entry, device)
    return _CODECS[key]
