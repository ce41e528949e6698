"""Decompression: an archive (or a region of it) to a georeferenced GeoTIFF or COG."""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio._err import CPLE_BaseError
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window

from georsic.archive import check_output
from georsic.blockcache import sized_block_cache
from georsic.control import Cancel, Progress, check_cancel
from georsic.defaults import DEFAULT_FIDELITY
from georsic.errors import GeorsicWarning, OutputError
from georsic.overviews import OverviewSpec, auto_factors
from georsic.overviews import resolve as resolve_overviews
from georsic.parallel import check_tiles_per_task
from georsic.prior.restore import TilePrior
from georsic.rasterinfo import write_categories
from georsic.reader import Archive, open
from georsic.source import gdal_message

#: GDAL's COG block size: its driver builds overviews until the smallest is below it.
COG_BLOCK = 512


def decompress(
    src: str | Path,
    dst: str | Path,
    *,
    window: Window | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    bounds_crs: str | None = None,
    prior: bool | str = False,
    fidelity: float = DEFAULT_FIDELITY,
    device: str = "auto",
    ignore_errors: bool = False,
    overviews: OverviewSpec | None = "source",
    cog: bool = False,
    overwrite: bool = False,
    errors: list[str] | None = None,
    client=None,
    threads: int | None = None,
    tiles_per_task: int | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    storage_options: dict | None = None,
) -> Path:
    """Decode an archive (or a region of it) to a GeoTIFF with the source's georeferencing.

    ``src`` is a local file or a URL (``https://``, ``s3://`` ...; fsspec's credentials or
    ``storage_options``): a region of a remote archive fetches its header, index and the
    tiles it covers, not the whole archive.

    ``bounds`` are in ``bounds_crs`` (default the archive's CRS); ``window`` is in pixels.
    With ``ignore_errors`` a corrupt tile is written as no-data (or zeros) instead of
    stopping the run. ``overviews``: ``"source"`` rebuilds the compressed raster's overview
    levels (none if it had none), ``"auto"`` adds levels down to 256 pixels, ``"none"`` none,
    or a list of factors such as ``[2, 4, 8]`` (see :mod:`georsic.overviews`); they are built
    from the decoded pixels with average resampling. ``cog`` writes a Cloud Optimized GeoTIFF
    (GDAL's COG layout: tiles, then overviews, in the order a range reader needs them); as
    GDAL's COG driver does, a COG gets overviews down to 512 pixels when ``overviews`` is
    ``"source"`` and the source had none.

    ``overwrite``: replace an existing ``dst`` (else an :class:`OutputError`); the output is
    never the archive itself nor anything but a regular file. With ``ignore_errors`` an
    archive whose index is lost (cut short, bytes appended) is read by scanning for its
    tiles; each tile lost is described in ``errors`` (when given) and listed in the output's
    ``GEORSIC_LOST_TILES`` tag.

    ``client`` (a ``distributed.Client``): the tiles are decoded on its workers, which open
    the archive by path; this process blends them and writes the GeoTIFF in order.  Without
    one, ``threads`` tiles are decoded at once here (default one per core).  The pixels are
    the same either way.  ``tiles_per_task``: consecutive tiles decoded in one task (see
    :func:`georsic.compress`).  With ``prior`` on a cluster each worker loads the prior
    itself, the weights of the sha256 resolved here (a worker without them fails the run
    with a one-line error); its windows lie inside one tile's image, so where a tile is
    decoded does not change the result.
    """
    if tiles_per_task is not None:
        check_tiles_per_task(tiles_per_task)
    tile_prior = Archive.tile_prior(prior, fidelity, device)  # before any output is made
    dst = Path(dst)
    check_output(dst, overwrite, src)
    lost: list[str] = [] if errors is None else errors
    with open(src, recover=ignore_errors, storage_options=storage_options) as archive:
        if bounds is not None:
            window = archive.window_for(bounds, bounds_crs)
        window = archive._clip(window or Window(0, 0, archive.width, archive.height))
        transform = rasterio.windows.transform(window, archive.transform)
        profile = archive.info.geotiff_profile(int(window.width), int(window.height), transform)
        factors = resolve_overviews(overviews, archive.info.overviews, int(window.width),
                                    int(window.height))
        if cog and overviews == "source" and not archive.info.overviews:
            factors = auto_factors(int(window.width), int(window.height), COG_BLOCK)
        with _atomic_output(dst) as tmp:
            try:
                # GDAL writes a COG as a copy of a finished GeoTIFF (removed as a sidecar)
                staging = tmp.with_name(tmp.name + ".staging.tif") if cog else tmp
                with sized_block_cache(int(window.width), archive.grid.size + 2 *
                                       archive.grid.overlap, archive.count,
                                       np.dtype(archive.info.dtype).itemsize):
                    _write_decoded(archive, window, staging, profile, factors, device=device,
                                   progress=progress, cancel=cancel,
                                   ignore_errors=ignore_errors, errors=lost, prior=tile_prior,
                                   fidelity=fidelity, client=client, threads=threads,
                                   tiles_per_task=tiles_per_task)
                if cog:
                    check_cancel(cancel)
                    rasterio.shutil.copy(staging, tmp, driver="COG",
                                         **_cog_options(profile, factors))
                write_categories(tmp, archive.info)  # PAM sidecar, moved with tmp
            except (RasterioError, CPLE_BaseError) as exc:
                raise OutputError(f"cannot write {dst}: {gdal_message(exc)}") from None
    unsuited = tile_prior.unsuited() if tile_prior is not None else None
    if unsuited:  # measured where the prior ran here (a cluster's workers keep no count)
        warnings.warn(f"{Path(src).name}: {unsuited}", GeorsicWarning, stacklevel=2)
    return dst


def _write_decoded(archive: Archive, window: Window, path: Path, profile: dict,
                   factors: tuple[int, ...], *, device: str, progress: Progress | None,
                   cancel: Cancel | None, ignore_errors: bool, errors: list[str],
                   prior: TilePrior | None = None, fidelity: float = DEFAULT_FIDELITY, client=None,
                   threads: int | None = None, tiles_per_task: int | None = None) -> None:
    """Decode ``window`` of ``archive`` into a new GeoTIFF at ``path``, overviews included;
    through ``prior`` when given (its weights and ``w`` named in the tags)."""
    if prior is not None and not archive.mapping.groups:
        warnings.warn(f"{archive.name}: every band is stored losslessly (a palette, a "
                      "classification), so the codebook prior has nothing to restore; decoded "
                      "without it", GeorsicWarning, stacklevel=3)
        prior = None
    with rasterio.open(path, "w", **profile) as out:
        archive.info.apply_metadata(out)
        if prior is not None:
            out.update_tags(**prior.tags())
        lost: list[int] = []
        for block, values, invalid in archive.blocks(
                window, device=device, progress=progress, cancel=cancel,
                ignore_errors=ignore_errors, errors=errors, lost=lost,
                # a cluster's workers load this prior themselves, by its sha256
                prior=prior or False, fidelity=fidelity, client=client, threads=threads,
                tiles_per_task=tiles_per_task):
            target = Window(block.col_off - window.col_off, block.row_off - window.row_off,
                            block.width, block.height)
            out.write(archive.finalize(values, invalid), window=target)
            if archive.info.mask_kind == "dataset":
                mask = 255 * ~(invalid[0] if invalid is not None else
                               np.zeros((int(block.height), int(block.width)), bool))
                out.write_mask(mask.astype(np.uint8), window=target)
        if lost:
            out.update_tags(GEORSIC_LOST_TILES=",".join(map(str, lost)))
        if factors:
            check_cancel(cancel)
            out.build_overviews(list(factors), Resampling.average)
            out.update_tags(ns="rio_overview", resampling="average")


def _cog_options(profile: dict, factors: tuple[int, ...]) -> dict:
    """GDAL COG driver options matching the GeoTIFF profile: deflate, the same predictor, the
    overviews already built (or none)."""
    return {"compress": "DEFLATE", "predictor": "YES" if "predictor" in profile else "NO",
            "overviews": "FORCE_USE_EXISTING" if factors else "NONE",
            "bigtiff": "IF_SAFER"}


def _replace_sidecar(tmp: Path, dst: Path) -> None:
    """``dst``'s PAM sidecar (``.aux.xml``: category names, attribute tables) becomes
    ``tmp``'s, or goes when ``tmp`` has none: one left from a file replaced would describe
    the old pixels (GDAL removes it too when it creates a file over another)."""
    sidecar, target = Path(f"{tmp}.aux.xml"), Path(f"{dst}.aux.xml")
    if sidecar.exists():
        os.replace(sidecar, target)
    else:
        target.unlink(missing_ok=True)


@contextlib.contextmanager
def _atomic_output(dst: Path) -> Iterator[Path]:
    directory = dst.parent if str(dst.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"output folder {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=".tmp.tif", dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write to {directory}: {exc.strerror}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, dst)
        _replace_sidecar(tmp_path, dst)
    finally:
        tmp_path.unlink(missing_ok=True)
        for sidecar in directory.glob(tmp_path.name + ".*"):
            sidecar.unlink(missing_ok=True)
