"""Overview (pyramid) levels of a decoded GeoTIFF: the source's, automatic, listed, or none.

A GIS opens a large GeoTIFF quickly only through its overviews. The archive records the
decimation factors of the source's overviews (``RasterInfo.overviews``) and decoding rebuilds
them by default, so that what comes back is laid out like what went in.
"""

from __future__ import annotations

from collections.abc import Sequence

from georsic.errors import InputError

#: Named choices for ``overviews`` (besides a list of factors).
CHOICES = ("source", "auto", "none")

#: ``auto`` adds levels until the smallest one is at most this many pixels across, as
#: ``gdaladdo`` does without levels.
AUTO_MIN_SIZE = 256

OverviewSpec = str | Sequence[int]


def auto_factors(width: int, height: int, min_size: int = AUTO_MIN_SIZE) -> tuple[int, ...]:
    """Factors 2, 4, 8 ... until an overview's longer side is at most ``min_size`` pixels."""
    factors: list[int] = []
    factor = 2
    while -(-max(width, height) // (factor // 2)) > min_size:
        factors.append(factor)
        factor *= 2
    return tuple(factors)


def parse(text: str) -> OverviewSpec:
    """``source``, ``auto``, ``none`` or comma-separated factors (``2,4,8``), as typed."""
    word = text.strip().lower()
    if word in CHOICES:
        return word
    try:
        factors = [int(part) for part in word.split(",")]
    except ValueError:
        raise InputError(f"overviews {text!r}: give source, auto, none or factors such as "
                         "2,4,8") from None
    return check_factors(factors)


def check_factors(factors: Sequence[int]) -> tuple[int, ...]:
    """Sorted, distinct factors, each a whole number of at least 2."""
    try:
        valid = all(not isinstance(f, bool) and int(f) == f and f >= 2 for f in factors)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise InputError(f"overview factors must be whole numbers of at least 2, got "
                         f"{list(factors)}")
    return tuple(sorted({int(f) for f in factors}))


def resolve(spec: OverviewSpec | None, source: Sequence[int], width: int,
            height: int) -> tuple[int, ...]:
    """The factors to build for a ``width`` x ``height`` output.

    ``source`` (the recorded factors of the compressed raster) keeps those that still leave an
    overview of at least one pixel (a decoded region may be small); ``auto`` follows
    :func:`auto_factors`; ``none`` (or None) builds none.
    """
    if spec is None:
        return ()
    if isinstance(spec, str):
        spec = parse(spec)
    if spec == "none":
        return ()
    if spec == "auto":
        return auto_factors(width, height)
    factors = check_factors(source) if spec == "source" else check_factors(spec)
    return tuple(f for f in factors if f <= max(width, height))
