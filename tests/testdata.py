"""Paths and helpers shared by the backend tests (a module of its own: tests/plugin has its own
conftest.py, so ``from conftest import ...`` would be ambiguous)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(peak**2 / mse))


def damaged_copy(archive: Path, target: Path, tile: int) -> Path:
    """``archive`` with one byte flipped inside ``tile``."""
    from georsic.archive import ArchiveReader

    data = bytearray(archive.read_bytes())
    with ArchiveReader(archive) as reader:
        data[reader._index[tile][0] + 40] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


def copy_needing_other_weights(archive: Path, target: Path) -> Path:
    """``archive`` rewritten to name weights that are not installed (``elic-vr-future``)."""
    from georsic.archive import ArchiveReader, ArchiveWriter

    with ArchiveReader(archive) as reader:
        header = dict(reader.header)
        tiles = [reader.read_tile(i) for i in range(reader.tile_count)]
    header["codec"] = {**header["codec"], "model_id": "elic-vr-future",
                       "weights_sha256": "0" * 64}
    with ArchiveWriter(target, header) as writer:
        for tile in tiles:
            writer.add_tile(tile)
    return target


def with_header(archive: Path, target: Path, edit) -> Path:
    """``archive`` rewritten with ``edit(header)`` applied to its header (checksums valid): a
    crafted archive."""
    import copy

    from georsic.archive import ArchiveReader, ArchiveWriter

    with ArchiveReader(archive) as reader:
        header = copy.deepcopy(reader.header)
        tiles = [reader.read_tile(i) for i in range(reader.tile_count)]
    edit(header)
    with ArchiveWriter(target, header) as writer:
        for tile in tiles:
            writer.add_tile(tile)
    return target


def aerial_crop(target: Path, width: int, height: int, **tags: str) -> Path:
    """The top-left ``width`` x ``height`` of the NEON aerial image as an untiled GeoTIFF at
    ``target`` (its georeferencing kept), with ``tags`` added."""
    import rasterio
    from rasterio.windows import Window

    window = Window(0, 0, width, height)
    with rasterio.open(DATA / "osbs_aerial_rgb.tif") as src:
        profile = src.profile | {"width": width, "height": height, "tiled": False,
                                 "transform": src.window_transform(window)}
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(src.read(window=window))
            if tags:
                dst.update_tags(**tags)
    return target


def rewritten(archive: Path, target: Path, header_edit=None, version: int | None = None,
              first_tile_edit=None) -> Path:
    """``archive`` written again to ``target`` (valid checksums) with its header changed by
    ``header_edit``, as format ``version`` (default: its own), and its first tile's sections
    changed by ``first_tile_edit``."""
    import copy

    from georsic.archive import ArchiveReader, ArchiveWriter, pack_sections, unpack_sections

    with ArchiveReader(archive) as reader:
        header = copy.deepcopy(reader.header)
        tiles = [reader.read_tile(i) for i in range(reader.tile_count)]
        own = reader.version
    if header_edit is not None:
        header_edit(header)
    if first_tile_edit is not None:
        sections = unpack_sections(tiles[0], own)
        first_tile_edit(sections)
        tiles[0] = pack_sections(sections)
    with ArchiveWriter(target, header, version=own if version is None else version) as writer:
        for tile in tiles:
            writer.add_tile(tile)
    return target
