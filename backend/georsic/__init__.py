"""GeoRSIC: learned compression (ELIC, Code-RSIC) for georeferenced remote-sensing rasters.

>>> import georsic
>>> georsic.compress("scene.tif", "scene.grsc", quality=3)
>>> georsic.decompress("scene.grsc", "restored.tif")
>>> with georsic.open("scene.grsc") as archive:
...     patch = archive.read(window=Window(0, 0, 256, 256))
"""

__version__ = "0.1.0"

from georsic import errors  # noqa: E402
from georsic.api import (  # noqa: E402
    DEFAULT_OVERLAP,
    DEFAULT_QUALITY,
    DEFAULT_TILE_SIZE,
    QUALITY_LEVELS,
    Archive,
    ArchiveSummary,
    compress,
    decompress,
    open,
)

__all__ = ["DEFAULT_OVERLAP", "DEFAULT_QUALITY", "DEFAULT_TILE_SIZE", "QUALITY_LEVELS", "Archive",
           "ArchiveSummary", "compress", "decompress", "errors", "open", "__version__"]
