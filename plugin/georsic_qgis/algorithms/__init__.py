"""The GeoRSIC Processing algorithms, one module each."""

from .compress import CompressRasterAlgorithm
from .decompress import DecompressArchiveAlgorithm
from .estimate import EstimateSizeAlgorithm
from .info import ArchiveInfoAlgorithm

ALGORITHMS = (CompressRasterAlgorithm, DecompressArchiveAlgorithm, ArchiveInfoAlgorithm,
              EstimateSizeAlgorithm)

__all__ = [
    "ALGORITHMS",
    "ArchiveInfoAlgorithm",
    "CompressRasterAlgorithm",
    "DecompressArchiveAlgorithm",
    "EstimateSizeAlgorithm",
]
