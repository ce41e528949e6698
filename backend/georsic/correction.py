"""A learned, exact context model for the correction layer of bounded archives (issue 30).

The correction layer of a bounded archive codes, per band, the quantised residual
``q = quantise(source - base, D)`` (:func:`georsic.bounded.quantise`).  JPEG XL and JPEG-LS
code ``q`` as an image of its own: they never see the base, which the decoder already has.
This module codes ``q`` with probabilities conditioned on what the decoder holds when it
decodes each value, in the spirit of the conditional residual coder of Bai et al., "Learning
Scalable l-infinity-constrained Near-lossless Image Compression via Joint Lossy Image and
Residual Compression" (CVPR 2021):

* the **base**: its local activity (the sum of absolute differences to the four neighbours),
  in units of the quantisation step ``2D + 1``: where the base has edges and texture, the
  base's error, hence ``q``, is larger;
* the **bands already decoded** in the group (three bands coded together): the value of ``q``
  at the same pixel and its neighbourhood's magnitude.  A base's error is mostly shared by the
  bands (luma), so the first band's ``q`` predicts the others' sign and size;
* the **values of the same band already decoded**: each band is coded in four interleaved
  passes (:func:`passes`); each pass after the first sees four neighbours decoded before it.

Each value's context is a tuple of small integers (:func:`contexts`), computed with integer
numpy only, and indexes a table of 16-bit CDFs trained on remote-sensing images that are not
benchmark images (``georsic train correction``) and shipped with the weights
(``resources/weights/correction-*.safetensors``).  The coder is CompressAI's rANS with those
CDFs (values beyond the table's range are bypass-coded), the same integer machinery as the
latents' entropy path: the decoder computes the same contexts and CDFs on every machine.  Per
band, the encoder picks one of the model's tables (each trained on the residuals of one range
of sparsity) and one of :data:`ACTIVITY_OFFSETS` (moving every value's activity class up or
down: noisier or cleaner images than the training set's), and writes both in the section.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

#: Largest |q| with its own symbol; larger values are the escape symbol plus bypass bits.
RADIUS = 12
#: Symbols per CDF: ``2 * RADIUS + 1`` values and the escape.
SYMBOLS = 2 * RADIUS + 2
#: Upper edges of the activity classes, in eighths of a quantisation step.
ACTIVITY_EDGES = (1, 2, 4, 6, 9, 13, 18, 26, 38, 56, 82, 120)
#: Upper edges of the neighbourhood-magnitude classes (sum of |q| over known neighbours).
MAGNITUDE_EDGES = (1, 2, 3, 4, 6, 9, 14)
#: Sign hints and previous-band values are clipped to ``[-HINT, HINT]``.
HINT = 2
#: Activity-class offsets an encoder may pick per band.
ACTIVITY_OFFSETS = tuple(range(-8, 9))
#: Passes over a band: (even, even) pixels whose half-coordinates sum to an even number, then
#: the other (even, even) ones, then the (odd, odd) ones, then the rest (:func:`passes`).
PASSES = 4
#: The neighbours (row, column offsets) already decoded that each pass after the first sees.
NEIGHBOURS = {1: ((-2, 0), (2, 0), (0, -2), (0, 2)),
              2: ((-1, -1), (-1, 1), (1, -1), (1, 1)),
              3: ((-1, 0), (1, 0), (0, -1), (0, 1))}
#: Bits of a CDF (CompressAI's rANS precision).
PRECISION = 16

ACTIVITY_CLASSES = len(ACTIVITY_EDGES) + 1
MAGNITUDE_CLASSES = len(MAGNITUDE_EDGES) + 1
HINT_CLASSES = 2 * HINT + 1
#: (later band?, pass, activity, magnitude, sign hint, previous band's value)
CONTEXT_SHAPE = (2, PASSES, ACTIVITY_CLASSES, MAGNITUDE_CLASSES, HINT_CLASSES, HINT_CLASSES)
CONTEXTS = int(np.prod(CONTEXT_SHAPE))


def _four(plane: np.ndarray) -> list[np.ndarray]:
    """The four neighbours of every pixel (edge pixels repeat themselves)."""
    p = np.pad(plane, 1, mode="edge")
    return [p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]


def activity(base: np.ndarray, step: int) -> np.ndarray:
    """Per pixel, the base's activity class (0 .. :data:`ACTIVITY_CLASSES` - 1): the sum of
    absolute differences to its four neighbours, in eighths of ``step``."""
    plane = base.astype(np.int64)
    total = sum(np.abs(plane - n) for n in _four(plane))
    return np.searchsorted(np.asarray(ACTIVITY_EDGES) * step, total * 8, side="right")


def passes(shape: tuple[int, int]) -> np.ndarray:
    """The pass (0 .. :data:`PASSES` - 1) in which each pixel is coded."""
    rows, cols = np.indices(shape)
    odd_row, odd_col = rows & 1, cols & 1
    first = ((rows >> 1) + (cols >> 1)) & 1
    return np.where(odd_row & odd_col, 2, np.where(odd_row | odd_col, 3, first))


def _shifted(plane: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``plane`` at (row + dy, col + dx) for every pixel, 0 outside."""
    pad = max(abs(dy), abs(dx))
    p = np.pad(plane, pad)
    h, w = plane.shape
    return p[pad + dy:pad + dy + h, pad + dx:pad + dx + w]


#: The eight neighbours (row, column offsets) of a pixel.
EIGHT = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


def _magnitude(total: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(MAGNITUDE_EDGES), total, side="right")


def contexts(known: np.ndarray, previous: np.ndarray | None, phase: int, later: bool
             ) -> np.ndarray:
    """Every pixel's context index for a value coded in pass ``phase``, without the activity
    class (:func:`with_activity` adds it).

    ``known`` is this band's ``q`` where already decoded (the earlier passes' pixels), 0
    elsewhere; ``previous`` the previous band's ``q`` in the group (None for
    the first band); ``later``: whether the band has a previous one."""
    shape = known.shape
    if phase == 0:
        if previous is None:
            magnitude = np.zeros(shape, dtype=np.int64)
        else:
            absolute = np.abs(previous)
            magnitude = _magnitude(sum(_shifted(absolute, dy, dx) for dy, dx in EIGHT)
                                   + absolute)
        hint = np.zeros(shape, dtype=np.int64)
    else:
        near = [_shifted(known, dy, dx) for dy, dx in NEIGHBOURS[phase]]
        magnitude = _magnitude(sum(np.abs(n) for n in near))
        hint = np.clip(sum(near), -HINT, HINT)
    prev = np.zeros(shape, dtype=np.int64) if previous is None else \
        np.clip(previous, -HINT, HINT)
    return ((((int(later) * PASSES + phase) * ACTIVITY_CLASSES * MAGNITUDE_CLASSES + magnitude)
             * HINT_CLASSES + hint + HINT) * HINT_CLASSES + prev + HINT)


def config() -> dict:
    """The features a table is trained for (a manifest entry's ``config``): a table whose
    config differs is refused."""
    return {"radius": RADIUS, "activity_edges": list(ACTIVITY_EDGES),
            "magnitude_edges": list(MAGNITUDE_EDGES), "hint": HINT, "passes": PASSES,
            "neighbours": {str(k): [list(n) for n in v] for k, v in NEIGHBOURS.items()},
            "activity_offsets": list(ACTIVITY_OFFSETS), "precision": PRECISION}


@dataclass(frozen=True)
class ContextTable:
    """Trained CDFs, one table per *regime* (tables x :data:`CONTEXTS` x :data:`SYMBOLS` + 1,
    int32 with 16-bit precision), with the id and sha256 archives name them by.  Each table
    was trained on residuals of one range of sparsity (the share of zeros): the encoder picks
    one per band."""

    name: str
    sha256: str
    cdfs: np.ndarray = field(repr=False)

    @property
    def tables(self) -> int:
        return self.cdfs.shape[0]

    @cached_property
    def bits(self) -> np.ndarray:
        """Bits of every symbol in every context of every table (tables x contexts,
        symbols; float64): the encoder's estimate of a choice's cost."""
        freq = np.diff(self.cdfs.reshape(-1, SYMBOLS + 1).astype(np.int64), axis=1)
        return PRECISION - np.log2(np.maximum(freq, 1))

    def rows(self, indexes: np.ndarray) -> tuple[list[list[int]], list[int], list[int],
                                                 list[int]]:
        """The CDFs, sizes and offsets of the rows ``indexes`` (into tables x contexts) use,
        and ``indexes`` renumbered into them: CompressAI's coder converts every CDF it is
        given on each call, so it gets only those."""
        used, renumbered = np.unique(indexes, return_inverse=True)
        cdfs = self.cdfs.reshape(-1, SYMBOLS + 1)[used].tolist()
        return cdfs, [SYMBOLS + 1] * len(cdfs), [-RADIUS] * len(cdfs), renumbered.tolist()


def cdfs_from_freqs(freqs: np.ndarray) -> np.ndarray:
    """CDFs (int32, a 0 first) from frequencies summing to 2**:data:`PRECISION` (last axis)."""
    cumulative = np.cumsum(freqs.astype(np.int64), axis=-1)
    zero = np.zeros((*freqs.shape[:-1], 1), dtype=np.int64)
    return np.concatenate([zero, cumulative], axis=-1).astype(np.int32)


def freqs_from_counts(counts: np.ndarray) -> np.ndarray:
    """16-bit frequencies (uint16, each at least 1, summing to 2**:data:`PRECISION` along the
    last axis) from symbol counts, the rounding remainder on the most frequent."""
    total = 1 << PRECISION
    flat = counts.reshape(-1, counts.shape[-1]).astype(np.int64)
    sums = np.maximum(flat.sum(axis=1, keepdims=True), 1)
    freq = 1 + flat * (total - flat.shape[1]) // sums
    top = np.argmax(freq, axis=1)
    freq[np.arange(len(freq)), top] += total - freq.sum(axis=1)
    return freq.reshape(counts.shape).astype(np.uint16)


def symbols(values: np.ndarray) -> np.ndarray:
    """The table's symbol of every value (the escape for |q| > :data:`RADIUS`)."""
    clipped = np.clip(values, -RADIUS, RADIUS + 1) + RADIUS
    return np.where(values < -RADIUS, SYMBOLS - 1, clipped)


#: Index stride of the activity class (the third axis of :data:`CONTEXT_SHAPE`).
ACTIVITY_STRIDE = int(np.prod(CONTEXT_SHAPE[3:]))


def with_activity(indexes: np.ndarray, act: np.ndarray, offset: int) -> np.ndarray:
    """``indexes`` plus each value's activity class moved by ``offset`` (clipped)."""
    return indexes + np.clip(act + offset, 0, ACTIVITY_CLASSES - 1) * ACTIVITY_STRIDE


@dataclass(frozen=True)
class Band:
    """One band of a group to code: its values, its base and its quantisation step."""

    q: np.ndarray
    base: np.ndarray
    step: int


def coding_order(bands: Sequence[Band]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per band, in the order the decoder decodes them: its values, their context indexes
    without the activity class, and their activity classes (:func:`with_activity`)."""
    order = passes(bands[0].q.shape)
    wheres = [order == phase for phase in range(PASSES)]
    previous = None
    for number, band in enumerate(bands):
        plane = band.q.astype(np.int64)
        act = activity(band.base, band.step)
        rest = np.concatenate([contexts(np.where(order < phase, plane, 0), previous, phase,
                                        number > 0)[where]
                               for phase, where in enumerate(wheres)])
        yield (np.concatenate([plane[where] for where in wheres]), rest,
               np.concatenate([act[where] for where in wheres]))
        previous = plane


def _choice(table: ContextTable, coded: np.ndarray, rest: np.ndarray, act: np.ndarray
            ) -> tuple[int, int]:
    """The (table, activity offset) with the shortest code for one band: the best table at
    offset 0, its best offset, then the best table at that offset."""
    def cost(number: int, offset: int) -> float:
        index = with_activity(rest, act, offset) + number * CONTEXTS
        return float(table.bits[index, coded].sum())

    number = min(range(table.tables), key=lambda k: cost(k, 0))
    offset = min(ACTIVITY_OFFSETS, key=lambda o: cost(number, o))
    return min(range(table.tables), key=lambda k: cost(k, offset)), offset


def encode_group(bands: Sequence[Band], table: ContextTable
                 ) -> tuple[list[tuple[int, int]], bytes]:
    """The bands' ``q`` coded in order with ``table``: per band the (table, activity offset)
    of :data:`ACTIVITY_OFFSETS` with the shortest code, and the rANS stream of all."""
    from compressai import ans

    choices, values, indexes = [], [], []
    for items, rest, act_items in coding_order(bands):
        number, offset = _choice(table, symbols(items), rest, act_items)
        choices.append((number, offset))
        values.append(items)
        indexes.append(with_activity(rest, act_items, offset) + number * CONTEXTS)
    cdfs, sizes, starts, renumbered = table.rows(np.concatenate(indexes))
    stream = ans.RansEncoder().encode_with_indexes(np.concatenate(values).tolist(),
                                                   renumbered, cdfs, sizes, starts)
    return choices, stream


def decode_group(stream: bytes, bases: Sequence[np.ndarray], steps: Sequence[int],
                 choices: Sequence[tuple[int, int]], table: ContextTable) -> list[np.ndarray]:
    """The ``q`` (int64) of each band of :func:`encode_group`'s ``stream``; ``choices``: each
    band's (table, activity offset)."""
    from compressai import ans

    if any(o not in ACTIVITY_OFFSETS or not 0 <= k < table.tables for k, o in choices):
        raise ValueError("a context-coded correction's table or activity offset is out of "
                         "range")
    decoder = ans.RansDecoder()
    decoder.set_stream(stream)
    order = passes(bases[0].shape)
    zero = np.zeros(bases[0].shape, dtype=np.int64)
    out: list[np.ndarray] = []
    for number, (base, step, (chosen, offset)) in enumerate(zip(bases, steps, choices,
                                                                 strict=True)):
        act = activity(base, step)
        plane = zero.copy()
        previous = out[-1] if out else None
        for phase in range(PASSES):
            where = order == phase
            index = with_activity(contexts(plane, previous, phase, number > 0)[where],
                                  act[where], offset) + chosen * CONTEXTS
            cdfs, sizes, starts, renumbered = table.rows(index)
            plane[where] = decoder.decode_stream(renumbered, cdfs, sizes, starts)
        out.append(plane)
    return out


#: The architecture a correction model's manifest entry names (these features and passes).
ARCHITECTURE = "context-table-v1"
#: Loaded tables by (file, sha256), and which one each request (id, sha256, weights folders)
#: resolved to.
_TABLES: dict[tuple[str, str], ContextTable] = {}
_FOUND: dict[tuple, tuple[str, str]] = {}
_TABLES_LOCK = threading.Lock()


def load_table(model_id: str | None = None, sha256: str | None = None) -> ContextTable:
    """The installed context model with this sha256 (an archive's) or id (default: the
    manifest's default correction model), checked against its manifest: a
    :class:`~georsic.errors.WeightsError` naming what is missing or wrong."""
    from safetensors.numpy import load_file

    from georsic.errors import WeightsError
    from georsic.weights import find_model, verify_entry, weights_dirs

    # each tile's decode asks: the manifests are read once per request and weights folders
    request = (model_id, sha256, tuple(map(str, weights_dirs())))
    with _TABLES_LOCK:
        if request in _FOUND:
            return _TABLES[_FOUND[request]]
    entry = find_model(model_id, sha256, kind="correction")
    key = (str(entry.path), entry.sha256)
    with _TABLES_LOCK:
        if key in _TABLES:
            _FOUND[request] = key
            return _TABLES[key]
    if entry.architecture != ARCHITECTURE or entry.config != config():
        raise WeightsError(f"correction model {entry.id} is a {entry.architecture!r} table for "
                           "other context features: this GeoRSIC codes with "
                           f"{ARCHITECTURE!r}")
    problem = verify_entry(entry)
    if problem:
        raise WeightsError(problem)
    freqs = load_file(str(entry.path)).get("freqs")
    if freqs is None or freqs.ndim != 3 or freqs.shape[1:] != (CONTEXTS, SYMBOLS) or \
            freqs.dtype != np.uint16 or (freqs == 0).any() or \
            (freqs.sum(axis=2, dtype=np.int64) != 1 << PRECISION).any():
        raise WeightsError(f"correction model {entry.id}'s frequencies are not a valid table")
    table = ContextTable(entry.id, entry.sha256, cdfs_from_freqs(freqs))
    with _TABLES_LOCK:
        _TABLES[key], _FOUND[request] = table, key
    return table


def default_table() -> ContextTable | None:
    """The default correction model, or None where none is installed (the encoder then
    writes the correction layer without it)."""
    from georsic.errors import WeightsError

    try:
        return load_table()
    except WeightsError:
        return None
