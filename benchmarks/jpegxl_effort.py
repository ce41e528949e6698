"""JPEG XL lossless (libjxl through imagecodecs) at efforts 5-10 and in each channel order: bits
per pixel per band and encode seconds on the bounded benchmark's images (issue 30: which
efforts and orders the correction layer searches, :data:`georsic.bounded.JPEGXL_EFFORTS`).

    PYTHONPATH=backend .venv/bin/python benchmarks/jpegxl_effort.py
"""

import itertools
import sys
import time
import warnings

import imagecodecs
import numpy as np
import rasterio

IMAGES = sys.argv[1:] or ["benchmarks/data/deepforest_SOAP_031.png",
                          "benchmarks/data/deepforest_OSBS_029.tif",
                          "benchmarks/data/solaris_pan1.tif"]
warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)

for path in IMAGES:
    with rasterio.open(path) as src:
        data = src.read()
    image = np.moveaxis(data, 0, -1) if data.shape[0] == 3 else data[0]
    image = np.ascontiguousarray(image)
    cells = []
    for effort in (5, 6, 7, 8, 9, 10):
        started = time.perf_counter()
        size = len(imagecodecs.jpegxl_encode(image, lossless=True, effort=effort))
        cells.append(f"effort {effort}: {8 * size / data.size:.3f} "
                     f"({time.perf_counter() - started:.1f} s)")
    print(f"{path}: " + ", ".join(cells), flush=True)
    if data.shape[0] == 3:
        for order in itertools.permutations(range(3)):
            reordered = np.ascontiguousarray(np.moveaxis(data[list(order)], 0, -1))
            size = len(imagecodecs.jpegxl_encode(reordered, lossless=True, effort=7))
            print(f"  channel order {order}: {8 * size / data.size:.3f}")
    else:
        for name, flipped in (("left-right", data[0][:, ::-1]), ("upside down", data[0][::-1])):
            size = len(imagecodecs.jpegxl_encode(np.ascontiguousarray(flipped), lossless=True,
                                                 effort=7))
            print(f"  flipped {name}: {8 * size / data.size:.3f}")
