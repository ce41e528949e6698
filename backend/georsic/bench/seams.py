"""Tile seam visibility (``georsic bench seams``).

Compresses a real image with a given tile size and overlap, decodes it, and compares the mean
squared error on the pixel rows and columns at tile borders with that of the interior.  A ratio
near 1 means that tile borders cannot be told from the rest of the image.  With ``--prior``
the same archive is also decoded through the codebook prior, and the ratio is also given at
the junctions of the prior's windows inside the tiles (``ratio_prior_windows``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from georsic.defaults import DEFAULT_FIDELITY


def border_mask(width: int, height: int, tile_size: int, overlap: int,
                reach: int = 1) -> np.ndarray:
    """Pixels within ``reach`` of a line where one tile starts or ends inside the raster."""
    from georsic.tiling import TileGrid

    grid = TileGrid(width, height, tile_size, overlap)
    cols, rows = set(), set()
    for tile in grid:
        w = tile.window
        for x in (w.col_off, w.col_off + w.width):
            if 0 < x < width:
                cols.add(int(x))
        for y in (w.row_off, w.row_off + w.height):
            if 0 < y < height:
                rows.add(int(y))
    mask = np.zeros((height, width), dtype=bool)
    for x in cols:
        mask[:, max(x - reach, 0):x + reach] = True
    for y in rows:
        mask[max(y - reach, 0):y + reach, :] = True
    return mask


def prior_window_mask(width: int, height: int, tile_size: int, overlap: int,
                      window: int, window_overlap: int, reach: int = 1) -> np.ndarray:
    """Pixels within ``reach`` of a line inside a tile where one window of the codebook prior
    starts (:func:`georsic.prior.restore.window_starts`, run per tile)."""
    from georsic.prior.restore import window_starts
    from georsic.tiling import TileGrid

    mask = np.zeros((height, width), dtype=bool)
    for tile in TileGrid(width, height, tile_size, overlap):
        w = tile.window
        x0, y0, tw, th = int(w.col_off), int(w.row_off), int(w.width), int(w.height)
        for x in window_starts(tw, window, window_overlap)[1:]:
            mask[y0:y0 + th, max(x0 + x - reach, 0):x0 + x + reach] = True
        for y in window_starts(th, window, window_overlap)[1:]:
            mask[max(y0 + y - reach, 0):y0 + y + reach, x0:x0 + tw] = True
    return mask


def seam_ratio(source: Path, quality: float, tile_size: int, overlap: int,
               device: str = "cpu", prior: bool = False,
               fidelity: float = DEFAULT_FIDELITY) -> dict:
    """Error at tile borders over error inside tiles; with ``prior`` decoded through the
    codebook prior, which also reports the ratio at its window junctions inside tiles."""
    import rasterio

    import georsic

    with rasterio.open(source) as src:
        original = src.read().astype(np.float64)
    with tempfile.TemporaryDirectory() as tmp:
        summary = georsic.compress(source, Path(tmp) / "a.grsc", quality=quality,
                                   tile_size=tile_size, overlap=overlap, device=device)
        georsic.decompress(Path(tmp) / "a.grsc", Path(tmp) / "b.tif", device=device,
                           prior=prior, fidelity=fidelity)
        with rasterio.open(Path(tmp) / "b.tif") as dst:
            decoded = dst.read().astype(np.float64)
            tag = dst.tags().get("GEORSIC_PRIOR")
    error = ((original - decoded) ** 2).mean(axis=0)
    border = border_mask(original.shape[2], original.shape[1], tile_size, overlap)
    if not border.any():
        raise ValueError("the image is smaller than one tile: no seams to measure")
    result = {"image": source.name, "quality": quality, "tile_size": tile_size,
              "overlap": overlap, "prior": tag, "fidelity": fidelity if prior else None,
              "bpp": round(summary.bpp, 4), "mse_border": round(float(error[border].mean()), 3),
              "mse_interior": round(float(error[~border].mean()), 3),
              "ratio": round(float(error[border].mean() / error[~border].mean()), 4)}
    if prior:
        from georsic.prior.restore import DEFAULT_OVERLAP, DEFAULT_WINDOW

        inner = prior_window_mask(original.shape[2], original.shape[1], tile_size, overlap,
                                  DEFAULT_WINDOW, DEFAULT_OVERLAP) & ~border
        rest = ~border & ~inner
        if inner.any():
            result["ratio_prior_windows"] = round(float(error[inner].mean() /
                                                        error[rest].mean()), 4)
    return result


def check(args: argparse.Namespace) -> None:
    """The arguments, before any compression: IMAGE a raster (not an archive), sizes valid."""
    from georsic.bench import args as checks
    from georsic.prior.restore import check_fidelity
    from georsic.sampling import checked_quality
    from georsic.tiling import TileGrid

    checks.raster(args.image, "image")
    checked_quality(args.quality)
    for overlap in args.overlaps:
        TileGrid.check(args.tile_size, overlap)
    check_fidelity(args.fidelity)


def main(args: argparse.Namespace) -> int:
    check(args)
    for prior in (False, True) if args.prior else (False,):
        for overlap in args.overlaps:
            result = seam_ratio(Path(args.image), args.quality, args.tile_size, overlap,
                                args.device, prior, args.fidelity)
            print(json.dumps(result), flush=True)
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("seams", help="error at tile borders against the interior")
    p.add_argument("image")
    p.add_argument("--quality", type=float, default=3.0)
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--overlaps", type=int, nargs="+", default=[0, 32])
    p.add_argument("--device", default="cpu")
    p.add_argument("--prior", action="store_true",
                   help="also decode through the codebook prior (rows without and with it)")
    p.add_argument("--fidelity", type=float, default=DEFAULT_FIDELITY,
                   help=f"the prior's w (with --prior; default {DEFAULT_FIDELITY:g})")
    p.set_defaults(func=main)
