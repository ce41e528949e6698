"""GeoRSIC: learned compression (ELIC, Code-RSIC) for georeferenced remote-sensing rasters.

>>> import georsic
>>> georsic.compress("scene.tif", "scene.grsc", quality=3)
>>> georsic.decompress("scene.grsc", "restored.tif")
>>> with georsic.open("scene.grsc") as archive:
...     patch = archive.read(window=Window(0, 0, 256, 256))
"""

__version__ = "0.1.0"

import os as _os


def _torch_huge_pages() -> None:
    """Have torch ask for transparent huge pages for its arrays of 2 MiB and more
    (``THP_MEM_ALLOC_ENABLE``, read once, before torch's first allocation) where the kernel
    gives them only on request, unless the variable is set: each layer's output is fresh
    memory, and in 4 KiB pages the kernel's first-touch faults cost about as much as the
    arithmetic (docs/speed.md, "Huge pages").  The command line goes further
    (``georsic.cli._huge_pages``: every allocation, ONNX Runtime's too); this reaches the
    Python API and QGIS, where torch is imported after georsic."""
    if "THP_MEM_ALLOC_ENABLE" in _os.environ:
        return
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as modes:
            if "[madvise]" in modes.read():
                _os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
    except OSError:  # not Linux, or no transparent huge pages
        pass


_torch_huge_pages()

from georsic import _compressai, errors  # noqa: E402
from georsic.defaults import (  # noqa: E402
    DEFAULT_OVERLAP,
    DEFAULT_QUALITY,
    DEFAULT_TILE_SIZE,
    QUALITY_LEVELS,
)

_compressai.install()  # the codec's CompressAI modules without the rest (torch_geometric, ...)

#: What ``georsic.api`` provides here, imported on first use (PEP 562): the api needs rasterio
#: and GDAL, which ``georsic.train`` does not, so a training machine can do without them.
_API_NAMES = ("Archive", "ArchiveSummary", "Estimate", "compress", "decompress", "estimate",
              "fit_quality", "open")

#: Batches (:mod:`georsic.batch`), imported on first use too.
_BATCH_NAMES = ("batch_compress", "batch_decompress")

__all__ = ["DEFAULT_OVERLAP", "DEFAULT_QUALITY", "DEFAULT_TILE_SIZE", "QUALITY_LEVELS", "Archive",
           "ArchiveSummary", "Estimate", "compress", "decompress", "errors", "estimate",
           "fit_quality", "open", "__version__", "batch_compress", "batch_decompress"]


#: Of those, what :mod:`georsic.reader` alone provides: opening an archive (``georsic info``)
#: imports neither torch nor the compressor.
_READER_NAMES = ("Archive", "open")


def __getattr__(name: str):
    if name in _READER_NAMES:
        from georsic import reader

        return getattr(reader, name)
    if name in _API_NAMES:
        from georsic import api

        return getattr(api, name)
    if name in _BATCH_NAMES:
        from georsic import batch

        return getattr(batch, name)
    raise AttributeError(f"module 'georsic' has no attribute {name!r}")
