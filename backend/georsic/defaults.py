"""Defaults shared by the API, the command line and the plugin.

A module of its own, importing nothing, so that the command line's ``train`` commands run where
only torch and compressai are installed (a lent GPU machine), without rasterio or GDAL.
"""

#: Number of trained quality levels; ``quality`` is continuous in ``[0, QUALITY_LEVELS - 1]``.
QUALITY_LEVELS = 8
#: Quality used when none is given: about 0.45-0.6 bpp on 10 cm aerial RGB with the shipped model.
DEFAULT_QUALITY = 5.0
#: Tile edge and overlap when none are given.  Every overlap pixel is coded twice: 16 instead of
#: 32 saves 5.5 % of the bits of a 1536x1536 aerial image at equal PSNR, while the blended tile
#: borders stay as good as tile interiors (benchmarks/tiling.py, georsic bench seams).  Tiles of
#: 1024 instead of 512 save 1.4-3.6 % more (fewer borders, more context) for about 230 MiB more
#: peak memory, flat in the raster's size (georsic bench memory).
DEFAULT_TILE_SIZE = 1024
DEFAULT_OVERLAP = 16
#: Window edge and overlap (pixels) the codebook prior runs on; multiples of every preset's
#: stride (georsic.prior.restore).
PRIOR_WINDOW = 256
PRIOR_OVERLAP = 32
#: The codebook prior's fidelity weight ``w`` when none is given: the one default of the API
#: (:func:`georsic.decompress`, ``Archive.read``, ``to_xarray``), the command line and QGIS,
#: chosen from `georsic bench prior` of code-rsic-s2 (docs/prior.md).
DEFAULT_FIDELITY = 0.75
#: The largest GDAL block cache (MB) a run sets, unless ``GDAL_CACHEMAX`` is set: GDAL's own
#: default, 5 % of the RAM, filled with source blocks (each read once or twice) as a raster is
#: coded, so a process's peak grew with the raster up to that much (georsic bench memory).
#: A run sets what one row of tiles needs, up to this (:mod:`georsic.blockcache`).
GDAL_CACHE_MB = 256
