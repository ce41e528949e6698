"""The Python API: :func:`compress`, :func:`decompress` and :func:`open`.

The plugin, the command line and the tests all go through these functions. Each concern has
its module: :mod:`georsic.source` (reading a raster), :mod:`georsic.compressor`,
:mod:`georsic.sampling` (rate control's probes, :func:`estimate`), :mod:`georsic.reader`
(:class:`Archive`) and :mod:`georsic.geotiff` (decompression to GeoTIFF).
"""

from __future__ import annotations

from georsic.compressor import MAX_REFINE, ArchiveSummary, compress
from georsic.geotiff import decompress
from georsic.reader import Archive, open
from georsic.sampling import HEADER_ESTIMATE, Estimate, estimate, fit_quality

__all__ = ["HEADER_ESTIMATE", "MAX_REFINE", "Archive", "ArchiveSummary", "Estimate", "compress",
           "decompress", "estimate", "fit_quality", "open"]
