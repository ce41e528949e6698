"""Installed model weights: safetensors files described by ``manifest.json``.

The manifest lists, for each model id, its file, sha256, architecture and configuration, how it
was trained and its measured rate-distortion.  Archives record the sha256 of the weights they
were made with; decoding looks the weights up by that hash, never by name alone.

Weights are searched in ``$GEORSIC_WEIGHTS`` (a folder, if set) and in the project's
``resources/weights``.  Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from georsic.errors import WeightsError

MANIFEST = "manifest.json"
INT8_SCALE_SUFFIX = ".int8_scale"
"""A tensor stored as int8 has its scales (one per slice along dim 0) under name + this."""


@dataclass(frozen=True)
class ModelEntry:
    """One installed model, as its manifest describes it."""

    id: str
    kind: str
    architecture: str
    config: dict
    path: Path
    sha256: str
    info: dict = field(default_factory=dict, compare=False)


def weights_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("GEORSIC_WEIGHTS"):
        dirs.append(Path(os.environ["GEORSIC_WEIGHTS"]))
    dirs.append(Path(__file__).resolve().parents[2] / "resources" / "weights")
    return [d for d in dirs if (d / MANIFEST).is_file()]


def read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read weights manifest {folder / MANIFEST}: {exc}") from None


def installed_models() -> list[ModelEntry]:
    """Every model of every manifest found, first folder first."""
    entries = []
    for folder in weights_dirs():
        for item in read_manifest(folder).get("models", []):
            entries.append(ModelEntry(
                id=item["id"], kind=item.get("kind", "codec"), architecture=item["architecture"],
                config=item["config"], path=folder / item["file"], sha256=item["sha256"],
                info=item))
    return entries


def default_model_id(kind: str = "codec") -> str:
    for folder in weights_dirs():
        default = read_manifest(folder).get("default", {}).get(kind)
        if default:
            return default
    raise WeightsError(f"no default {kind} model is installed (looked in resources/weights "
                       "and $GEORSIC_WEIGHTS)")


def find_model(model_id: str | None = None, sha256: str | None = None,
               kind: str = "codec") -> ModelEntry:
    """The installed model with this sha256 (preferred) or id."""
    models = installed_models()
    if sha256:
        for entry in models:
            if entry.sha256 == sha256:
                return entry
        name = f" {model_id!r}" if model_id else ""
        raise WeightsError(f"this archive needs model{name} with weights sha256 {sha256[:16]}..., "
                           "which is not installed; copy its .safetensors file and manifest entry "
                           "into resources/weights or a folder named by $GEORSIC_WEIGHTS")
    model_id = model_id or default_model_id(kind)
    for entry in models:
        if entry.id == model_id:
            return entry
    same_kind = [e.id for e in models if e.kind == kind]
    raise WeightsError(f"{kind} model {model_id!r} is not installed; installed {kind} "
                       f"models: {', '.join(same_kind) or 'none'} (georsic models lists all)")


def write_manifest(path: Path, manifest: dict) -> None:
    """Write a manifest atomically (a temporary file beside it, renamed into place)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=8)
def _verified(path: Path, sha256: str) -> bool:
    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing")
    if file_sha256(path) != sha256:
        raise WeightsError(f"weights file {path} is damaged (sha256 does not match its manifest)")
    return True


def verify_entry(entry: ModelEntry) -> str | None:
    """What is wrong with an installed model's weights file, or None when it is intact."""
    try:
        _verified(entry.path, entry.sha256)
    except WeightsError as exc:
        return str(exc)
    return None


def manifest_entry_for(path: str | Path) -> dict | None:
    """The entry of the manifest beside weights file ``path`` that describes it (by sha256).

    A renamed copy of exported weights is still found; ``None`` when there is no such entry.
    """
    path = Path(path)
    manifest_path = path.parent / MANIFEST
    if not manifest_path.is_file() or not path.is_file():
        return None
    sha = file_sha256(path)
    for entry in read_manifest(path.parent).get("models", []):
        if entry.get("sha256") == sha:
            return entry
    return None


def load_state_dict_file(path: str | Path) -> dict:
    """A state dict from a safetensors file (or a training checkpoint ``.pt``)."""
    path = Path(path)
    if path.suffix == ".pt":
        import torch

        return torch.load(path, map_location="cpu", weights_only=False)["model"]
    from safetensors.torch import load_file

    from georsic.models.exact import PREFIX

    # the exact entropy path's calibration is not a parameter of the model
    return dequantized({k: v for k, v in load_file(str(path)).items() if not k.startswith(PREFIX)})


def quantize_int8(weight, bits: int = 8):
    """Symmetric integers of ``bits`` bits (2 to 8) stored as int8, one scale per slice along dim 0.

    Returns ``(values, scales)``: ``values * scales`` (see `dequantize_int8`) is the weight as
    stored.  Weight-only quantization, as in PyTorch's weight-only int8 schemes.  At 8 bits the
    scale maps each output channel's largest magnitude to 127.  Below 8 bits, where rounding
    costs more than clipping a few outliers, each channel's clipping point is the one of
    `CLIP_RATIOS` (times its largest magnitude) with the least squared error.  Fewer bits
    give values of lower entropy: the file is no smaller, but git's zlib stores it in less.
    """
    import torch

    _check_weight_bits(bits)
    levels = 2 ** (bits - 1) - 1
    flat = weight.detach().float().reshape(weight.shape[0], -1)
    peak = flat.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    ratios = torch.tensor((1.0,) if bits == 8 else CLIP_RATIOS)
    candidates = ratios[:, None] * peak / levels  # (ratios, channels)
    restored = torch.round(flat / candidates[..., None]).clamp(-levels, levels)
    error = (restored * candidates[..., None] - flat).square().sum(dim=2)
    scales = candidates.gather(0, error.argmin(dim=0)[None])[0]  # first ratio wins ties
    values = torch.round(flat / scales[:, None]).clamp(-levels, levels).to(torch.int8)
    return values.reshape(weight.shape), scales


def _check_weight_bits(bits: int) -> None:
    if not 2 <= bits <= 8:
        raise ValueError(f"weight bits must be 2 to 8, not {bits}")


@dataclass(frozen=True)
class WeightBits:
    """Bits of the integers each int8-stored layer weight uses: a default, per-name exceptions.

    ``WeightBits(7, (("channel_context", 5),))`` stores weights whose name contains
    ``channel_context`` in 5 bits and the others in 7.  Written ``"7,channel_context=5"``.
    """

    default: int = 8
    overrides: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        for bits in (self.default, *(b for _, b in self.overrides)):
            _check_weight_bits(bits)

    @classmethod
    def parse(cls, text: str) -> WeightBits:
        """``"8"`` or ``"7,channel_context=5,entropy_parameters=6"``."""
        default, *rest = [part.strip() for part in str(text).split(",")]
        try:
            overrides = tuple((key.strip(), int(bits)) for key, bits in
                              (part.split("=", 1) for part in rest))
            return cls(int(default), overrides)
        except ValueError as exc:
            raise ValueError(f"weight bits {text!r}: expected e.g. '8' or "
                             f"'7,channel_context=5' ({exc})") from None

    @classmethod
    def of(cls, bits: int | str | WeightBits) -> WeightBits:
        return bits if isinstance(bits, WeightBits) else cls.parse(str(bits))

    def for_name(self, name: str) -> int:
        return next((bits for key, bits in self.overrides if key in name), self.default)

    def __str__(self) -> str:
        return ",".join([str(self.default), *(f"{k}={b}" for k, b in self.overrides)])


CLIP_RATIOS = tuple(1.0 - 0.025 * i for i in range(21))
"""Clipping points tried below 8 bits, as fractions of a channel's largest magnitude."""


def dequantize_int8(values, scales):
    """float32 weights from `quantize_int8`'s output (bit-exact on every machine)."""
    shape = (-1,) + (1,) * (values.dim() - 1)
    return values.float() * scales.float().reshape(shape)


def dequantized(tensors: dict) -> dict:
    """A state dict with every int8 tensor (one that has scales beside it) back in float32."""
    out = {}
    for name, tensor in tensors.items():
        if name.endswith(INT8_SCALE_SUFFIX):
            continue
        scales = tensors.get(name + INT8_SCALE_SUFFIX)
        out[name] = tensor if scales is None else dequantize_int8(tensor, scales)
    return out


def load_entry_state_dict(entry: ModelEntry) -> dict:
    _verified(entry.path, entry.sha256)
    return load_state_dict_file(entry.path)


def load_entry_raw_tensors(entry: ModelEntry) -> dict:
    """The entry's tensors as stored (int8 layers beside their ``.int8_scale``), checked."""
    _verified(entry.path, entry.sha256)
    from safetensors.torch import load_file

    return load_file(str(entry.path))
