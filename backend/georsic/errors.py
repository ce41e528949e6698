"""Errors GeoRSIC raises: each carries a one-line message meant for the user."""

from __future__ import annotations


class GeorsicError(Exception):
    """Base class: anything that went wrong for a reason the user can act on."""

    exit_code = 1


class InputError(GeorsicError):
    """The input file is missing, not a raster, or holds data GeoRSIC cannot encode."""

    exit_code = 2


class OutputError(GeorsicError):
    """The output path cannot be written."""

    exit_code = 3


class ArchiveError(GeorsicError):
    """The archive is corrupt, truncated or of an unknown version."""

    exit_code = 4


class TileError(ArchiveError):
    """One tile of an archive fails its checksum or cannot be decoded."""

    def __init__(self, message: str, tile: int) -> None:
        super().__init__(message)
        self.tile = tile

    def __reduce__(self):  # pickled whole: a Dask worker sends it back to the client
        return type(self), (str(self), self.tile)


class DigestError(TileError):
    """A tile of an exact archive decodes to other pixels than the encoder's, whose digest
    the archive stores (``georsic verify --decode``): a decoder that is not exact on this
    machine, or an archive whose digest was altered."""

    exit_code = 8


class WeightsError(GeorsicError):
    """The model weights an archive needs are not installed, or a weights file is damaged."""

    exit_code = 5


class Cancelled(GeorsicError):
    """The caller cancelled the operation; no output was left behind."""

    exit_code = 130


class GeorsicWarning(UserWarning):
    """Something of the source that the output does not keep as it was, said in one line (the
    pixels are never among them: those are kept or an error is raised)."""


def lost_tiles_report(lost: list[str]) -> list[str]:
    """The warning lines for the tiles :func:`georsic.decompress` lost with ``ignore_errors``
    (its ``errors`` list): one per tile, then a count (none when nothing was lost). The CLI
    prints each after ``georsic: warning:``; the QGIS plugin reports them as they are."""
    lines = [f"{message}; written as no-data" for message in lost]
    if lost:
        lines.append(f"{len(lost)} tile(s) lost, listed in the output's GEORSIC_LOST_TILES tag")
    return lines
