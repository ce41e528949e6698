"""Exact lossy archives (format version :data:`~georsic.archive.EXACT_VERSION`, issue 29): the
same decoded pixels on every machine, and a digest of each tile's pixels to prove it.

An exact archive's tiles are coded as a normal lossy archive's (the same exact entropy path,
the same streams), and its header says that they are synthesised by the exact synthesis
(:mod:`georsic.models.exact_synthesis`), with that synthesis's calibration and the inverse gain
of the archive's quality (float32 values: the gain is an ``exp`` of the model's table, which a
platform's ``exp`` may round differently), as a bounded archive's base stores them
(:mod:`georsic.bounded`).  Every decoder then computes, for each tile:

1. the latent from the exact entropy path (integers), times the stored inverse gain (one
   float32 multiply per value);
2. the image through :class:`~georsic.models.exact_synthesis.ExactSynthesis` (integer sums,
   correctly rounded element-wise steps), cropped to the tile and clamped to [0, 1];
3. the inverse band mapping (:meth:`~georsic.bandmap.BandMapping.decode`: float64 additions,
   one division, one multiplication and one addition per value, in a fixed order), rounded to
   float32; lossless bands from their zlib section;
4. the blend of overlapping tiles (:func:`~georsic.tiling.blend`): the weights are
   ``(k + 0.5) / n`` in float32 (one correctly rounded division) and their outer product (one
   multiplication), each tile's values times its weights (one multiplication), the pieces
   added in the same order for every read (the tile above-left, above, left, then the tile
   itself: :meth:`~georsic.reader.Archive.blocks`, :func:`~georsic.inplace.read_level` and
   :meth:`~georsic.reader.Archive.to_xarray` all do), then one division by the summed weight;
5. rounding and clamping to the output dtype (:meth:`~georsic.bandmap.BandMapping.cast`:
   ``clip``, ``rint``, a cast) and the no-data substitution.

Every step is one IEEE 754 operation per value (correctly rounded whatever the vector width:
no transcendental function, no reduction, no fused multiply-add), so the whole decode is the
same bits on AVX2, AVX-512, any thread count, any ONNX Runtime or oneDNN build, and CUDA for
the synthesis (exact float32 sums, cuDNN and TF32 off).

Each tile record ends with a :data:`DIGEST_BYTES`-byte **pixel digest** (:func:`pixel_digest`):
the encoder decodes every tile it wrote through the same function as the decoder
(:func:`tile_values`) and stores it; ``georsic verify --decode`` decodes every tile and
compares.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import math
import threading
import zlib
from dataclasses import dataclass

import numpy as np

from georsic.bandmap import BandMapping
from georsic.errors import WeightsError

#: How a new exact archive's tiles are synthesised (``exact.synthesis``); ``exact-v1`` archives
#: (the first version-8 archives) still decode.
SYNTHESIS = "exact-v2"
#: The exact syntheses this GeoRSIC decodes (:data:`georsic.models.exact_synthesis.SYNTHESES`,
#: without importing torch).
SYNTHESES = ("exact-v1", "exact-v2")
#: How a tile's pixel digest is computed (``exact.digest``; :func:`pixel_digest`).
DIGEST = "blake2b-128-tile-v1"
#: Bytes of a pixel digest (the last section of every tile record).
DIGEST_BYTES = 16


#: ``exact.gain`` of archives whose inverse gain is derived from the weights
#: (:func:`derived_gain`) instead of listed.
DERIVED_GAIN = "exp-decimal-v1"


@dataclass(frozen=True)
class ExactSpec:
    """What decoding an exact archive's tiles needs beyond the weights: the exact synthesis's
    calibration (largest |input| of each convolution of ``g_s``, by name) and the inverse gain
    of the archive's quality (float32 values, one per latent channel).

    Either may be by reference: ``calibration`` names the weights' shipped calibration
    (:func:`shipped_calibration`, by :func:`calibration_id`) and ``amax`` is then empty; an
    empty ``gain`` is :func:`derived_gain` of the weights at ``quality``.  Archives written
    before 2026-12-07's stop 36 list both (1.2-1.3 KB of header)."""

    amax: tuple[tuple[str, float], ...]
    gain: tuple[float, ...]
    synthesis: str = SYNTHESIS
    calibration: str | None = None
    quality: float = 0.0

    @property
    def amax_dict(self) -> dict[str, float]:
        return dict(self.amax)

    def to_dict(self) -> dict:
        out: dict = {"synthesis": self.synthesis, "digest": DIGEST}
        if self.calibration is not None:
            out["calibration"] = self.calibration
        else:
            out["amax"] = dict(self.amax)
        out["gain"] = list(self.gain) if self.gain else DERIVED_GAIN
        return out

    @classmethod
    def from_dict(cls, data: dict, groups: int = 1, quality: float = 0.0) -> ExactSpec:
        """The spec of a header's ``exact`` object (``quality``: the archive's); a ValueError
        when this GeoRSIC cannot decode it (an unknown synthesis or digest, a missing or
        non-finite calibration)."""
        if not isinstance(data, dict):
            raise ValueError("the exact synthesis's description is not an object")
        if data.get("synthesis") not in SYNTHESES or data.get("digest") != DIGEST:
            raise ValueError(f"unknown exact synthesis {data.get('synthesis')!r} or digest "
                             f"{data.get('digest')!r}: a newer GeoRSIC made this archive")
        calibration = data.get("calibration")
        if calibration is not None and not isinstance(calibration, str):
            raise ValueError("the exact synthesis's calibration id is not a string")
        amax = () if calibration is not None else \
            tuple(sorted((str(k), float(v)) for k, v in data["amax"].items()))
        gain = () if data["gain"] == DERIVED_GAIN else tuple(float(v) for v in data["gain"])
        if groups and calibration is None and not amax:
            raise ValueError("the exact synthesis's calibration is missing")
        if groups and not gain and data["gain"] != DERIVED_GAIN:
            raise ValueError("the exact synthesis's gain is missing")
        if not all(np.isfinite(v) for v in (*dict(amax).values(), *gain)):
            raise ValueError("the exact synthesis's calibration or gain is not finite")
        return cls(amax, gain, data["synthesis"], calibration, float(quality))

    def resolved_amax(self, entry) -> dict[str, float]:
        """The calibration: listed, or the shipped one of ``entry`` (the archive's
        :class:`~georsic.weights.ModelEntry`) that ``calibration`` names."""
        if self.calibration is None:
            return self.amax_dict
        return named_calibration(entry, self.synthesis, self.calibration)


def named_calibration(entry, synthesis: str, calibration: str) -> dict[str, float]:
    """The shipped calibration of ``synthesis`` in ``entry`` (a
    :class:`~georsic.weights.ModelEntry`) whose :func:`calibration_id` is ``calibration``; a
    :class:`WeightsError` naming it where those weights do not ship it."""
    shipped = shipped_calibration(entry, synthesis)
    if shipped is None or calibration_id(shipped) != calibration:
        raise WeightsError(f"the exact synthesis's calibration {calibration} is not "
                           f"installed with weights {entry.id}")
    return shipped


def weights_gain(codec, quality: float) -> tuple[float, ...]:
    """:func:`derived_gain` of ``codec``'s weights at ``quality``."""
    return derived_gain(codec.model.log_inverse_gain.detach().float().cpu().numpy(), quality)


def calibration_id(amax: dict[str, float]) -> str:
    """A calibration's name: the first 16 hex digits of the sha256 of its canonical JSON."""
    text = json.dumps({str(k): float(v) for k, v in amax.items()}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def derived_gain(table: np.ndarray, quality: float) -> tuple[float, ...]:
    """The inverse gain vector of ``quality`` from the weights' table of log inverse gains
    (levels x channels), the same on every machine: the model's interpolation of the logs
    (:meth:`~georsic.models.elic.ElicVariableRate._gain`) in Python floats (IEEE float64, one
    operation at a time), then ``exp`` in 40-digit :mod:`decimal` (exact software arithmetic,
    unlike a platform's ``exp``), rounded to float64 and then to float32."""
    levels = table.shape[0]
    q = min(max(float(quality), 0.0), float(levels - 1))
    low = min(int(math.floor(q)), levels - 2)
    frac = q - low
    context = decimal.Context(prec=40)
    out = []
    for a, b in zip(table[low].tolist(), table[low + 1].tolist(), strict=True):
        log_gain = float(a) * (1.0 - frac) + float(b) * frac
        out.append(float(np.float32(float(context.exp(decimal.Decimal(log_gain))))))
    return tuple(out)


def make_spec(raster, info, mapping: BandMapping, planes: int, quality: float, grid,
              codec) -> ExactSpec:
    """The spec of an archive of ``raster`` at ``quality``: the exact synthesis's calibration
    (the weights' shipped one, :func:`shipped_calibration`, else one measured on the latents of
    a few sample tiles, as a bounded archive's base is: :func:`georsic.bounded.make_spec`) and
    the quality's inverse gain.  ``codec``: a CPU :class:`~georsic.codec.TileCodec` of the
    archive's weights."""
    from georsic import bounded

    if not mapping.groups:  # nothing is synthesised: every band is stored losslessly
        return ExactSpec((), (), quality=float(quality))
    shipped = shipped_calibration(codec.entry)
    if shipped is not None:  # both by reference: 1.2-1.3 KB less header
        return ExactSpec((), (), SYNTHESIS, calibration_id(shipped), float(quality))
    job = bounded.TileJob(info, mapping, planes, (), codec)
    base = bounded.make_spec(raster, job, float(quality), bounded._sample(grid))
    return ExactSpec(tuple(sorted((k, _short(v)) for k, v in base.amax.items())),
                     tuple(_short(v) for v in base.gain), quality=float(quality))


def shipped_calibration(entry, synthesis: str = SYNTHESIS) -> dict[str, float] | None:
    """The calibration of ``synthesis`` stored in the manifest entry of ``entry`` (a
    :class:`~georsic.weights.ModelEntry`) by ``georsic train exact-synthesis``, else None
    (new archives are then calibrated on sample tiles of their raster)."""
    record = entry.info.get("exact_synthesis")
    if not isinstance(record, dict) or record.get("synthesis") != synthesis:
        return None
    amax = record.get("amax")
    if not isinstance(amax, dict) or not amax:
        return None
    return {str(name): float(value) for name, value in amax.items()}


def _short(value: float) -> float:
    """``value`` (a float32 number) as the float64 of its shortest float32 decimal: the header
    holds 8-9 digits instead of 17 (940 fewer deflated bytes for ``elic-vr-s-v5``).  Encoder
    and decoder both use the value as the header holds it, so nothing depends on how a
    decimal rounds; for the gain, cast to float32 as it is used, that is ``value`` again."""
    return float(str(np.float32(value)))


_SYNTHESES: dict[tuple, object] = {}
_SYNTHESES_LOCK = threading.Lock()


def synthesis(codec, spec: ExactSpec):
    """The exact synthesis of ``codec``'s weights with ``spec``'s calibration, on the codec's
    device (built once per weights, calibration and device)."""
    from georsic.models.exact_synthesis import ExactSynthesis

    device = str(codec.device)
    key = (codec.entry.sha256, json.dumps(spec.amax), spec.calibration, spec.synthesis,
           device)
    with _SYNTHESES_LOCK:
        if key not in _SYNTHESES:
            # its fast route prepacks weights at first use: move it to its device first
            try:
                built = ExactSynthesis(codec.model.g_s.float().cpu(),
                                       spec.resolved_amax(codec.entry), spec.synthesis)
            except ValueError as exc:
                raise WeightsError(f"weights {codec.entry.id} have no exact synthesis ({exc})"
                                   ) from None
            _SYNTHESES[key] = built.eval().to(device)
        return _SYNTHESES[key]


def decode_images(codec, spec: ExactSpec, streams: list[bytes], height: int, width: int,
                  entropy: str) -> list[np.ndarray]:
    """The codec images (3, H, W) float32 in [0, 1] of one tile's streams (one per image),
    through the exact entropy path and the exact synthesis: the same bits everywhere."""
    from georsic.bounded import _latent

    if not streams:
        return []
    gain = _gain(codec, spec)
    return synthesise(codec, spec, [_latent(codec, stream, height, width, entropy, gain)
                                    for stream in streams], height, width)


def _gain(codec, spec: ExactSpec):
    """The inverse gain (float32, 1 x M x 1 x 1): listed, or derived from the weights."""
    import torch

    values = spec.gain or weights_gain(codec, spec.quality)
    return torch.tensor(values, dtype=torch.float32).reshape(1, -1, 1, 1)


def synthesise(codec, spec: ExactSpec, latents: list, height: int, width: int
               ) -> list[np.ndarray]:
    """The codec images of a tile's latents (float32, the inverse gain applied, as
    :func:`decode_images` computes them) by the exact synthesis."""
    import torch

    model = synthesis(codec, spec)
    images = []
    for latent in latents:
        with torch.inference_mode():
            image = model(latent.to(codec.device))[0, :, :height, :width].clamp(0, 1)
        images.append(image.cpu().numpy().astype(np.float32))
    return images


def tile_values(mapping: BandMapping, images: list[np.ndarray], raw: bytes, dtype: str,
                height: int, width: int) -> np.ndarray:
    """A tile's values (bands, H, W) float32 before blending: the inverse band mapping of its
    codec images, rounded to float32, and its lossless bands from their section (the reader
    decodes every lossy tile so; the encoder of an exact archive calls it for the digest)."""
    values = mapping.decode(images, height, width).astype(np.float32)
    if mapping.lossless:
        stored = np.frombuffer(zlib.decompress(raw), dtype=dtype)
        values[list(mapping.lossless)] = stored.reshape(len(mapping.lossless), height, width)
    return values


def pixel_digest(values: np.ndarray, mapping: BandMapping) -> bytes:
    """The :data:`DIGEST` of a tile: BLAKE2b with a 16-byte digest of the line
    ``georsic-tile-v1 BANDSxHEIGHTxWIDTH DTYPE\\n`` (ASCII) followed by the tile's decoded block
    (:func:`tile_values`: the whole tile, every band, before blending with its neighbours)
    cast to the output dtype as decompression casts it (:meth:`BandMapping.cast`: clipped to
    each band's range, rounded half to even for integer dtypes), before the no-data
    substitution, in C order, little-endian."""
    out = mapping.cast(values)
    out = np.ascontiguousarray(out, dtype=out.dtype.newbyteorder("<"))
    bands, height, width = out.shape
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    digest.update(f"georsic-tile-v1 {bands}x{height}x{width} {out.dtype.name}\n".encode())
    digest.update(out.tobytes())
    return digest.digest()


def tile_digest(codec, spec: ExactSpec, sections: list[bytes], latents: list,
                mapping: BandMapping, height: int, width: int, dtype: str) -> bytes:
    """The pixel digest of a tile whose sections (mask, lossless bands, one stream per codec
    image) the encoder just made, from the latents the exact entropy path gave it for them
    (:meth:`~georsic.codec.TileCodec.encode_exact`: the ones every decoder decodes from the
    streams): synthesised and mapped as every decoder does."""
    gain = _gain(codec, spec)
    images = synthesise(codec, spec, [latent.float() * gain for latent in latents], height,
                        width)
    return pixel_digest(tile_values(mapping, images, sections[1], dtype, height, width),
                        mapping)
