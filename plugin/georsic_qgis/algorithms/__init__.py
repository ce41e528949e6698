"""The GeoRSIC Processing algorithms, one module each."""

from .compress import CompressRasterAlgorithm
from .decompress import DecompressArchiveAlgorithm
from .info import ArchiveInfoAlgorithm

ALGORITHMS = (CompressRasterAlgorithm, DecompressArchiveAlgorithm, ArchiveInfoAlgorithm)

__all__ = [
    "ALGORITHMS",
    "ArchiveInfoAlgorithm",
    "CompressRasterAlgorithm",
    "DecompressArchiveAlgorithm",
]
