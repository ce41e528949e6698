"""*Add GeoRSIC archive*: an archive as a QGIS layer read in place (issue 31), rendered
headless by QGIS's own map renderer (the parallel job the map canvas uses: GDAL runs the pixel
function on a rendering thread) and compared with the decompressed GeoTIFF's rendering."""

from __future__ import annotations

import numpy as np
import pytest
from plugin_testutils import aerial_raster, needs_backend
from qgis.core import (
    Qgis,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QSize

pytestmark = needs_backend


@pytest.fixture(scope="module")
def archive_and_tif(tmp_path_factory):
    """The 400x400 aerial raster in 128-pixel tiles with a pyramid level of factor 4, and
    its decompressed GeoTIFF with an overview of the same factor."""
    import georsic

    folder = tmp_path_factory.mktemp("archive_layer")
    path = folder / "aerial.grsc"
    georsic.compress(aerial_raster(), path, quality=4, tile_size=128, overlap=16,
                     device="cpu", pyramid_levels=[4])
    georsic.decompress(path, folder / "aerial.tif", overviews=[4])
    return path, folder / "aerial.tif"


@pytest.fixture()
def plugin(georsic_plugin):
    """The session's plugin with its GUI (another test may have unloaded it)."""
    georsic_plugin.initGui()
    return georsic_plugin


def _render(layer, extent: QgsRectangle, size: int) -> np.ndarray:
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setOutputSize(QSize(size, size))
    settings.setExtent(extent)
    settings.setFlag(QgsMapSettings.Antialiasing, False)
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage().convertToFormat(job.renderedImage().Format_RGBA8888)
    data = np.frombuffer(image.constBits().asstring(image.sizeInBytes()), np.uint8)
    return data.reshape(image.height(), image.width(), 4).copy()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def test_the_action_and_the_drop_handler_are_there(plugin):
    from georsic_qgis.plugin import ADD_ARCHIVE

    assert plugin.action.text() == ADD_ARCHIVE
    assert plugin.drop_handler.handleFileDrop("/tmp/not-an-archive.tif") is False
    plugin.unload()
    assert plugin.action is None and plugin.drop_handler is None
    plugin.initGui()
    assert plugin.action.text() == ADD_ARCHIVE and plugin.provider is not None


def test_a_dropped_archive_renders_as_its_decompressed_geotiff(plugin,
                                                               archive_and_tif):
    from osgeo import gdal

    from georsic_qgis.archive_layer import ARCHIVE_PROPERTY, vrt_folder

    path, tif = archive_and_tif
    before = set(QgsProject.instance().mapLayers())
    assert plugin.drop_handler.handleFileDrop(str(path)) is True
    added = [QgsProject.instance().mapLayer(i) for i in
             set(QgsProject.instance().mapLayers()) - before]
    assert len(added) == 1
    layer = added[0]
    assert layer.isValid() and layer.name() == "aerial (GeoRSIC archive)"
    assert layer.customProperty(ARCHIVE_PROPERTY) == str(path.resolve())
    assert "GeoRSIC archive" in layer.abstract()
    assert layer.source().endswith(".vrt") and layer.source().startswith(str(vrt_folder()))
    assert not list(vrt_folder().glob("*.tif")) and not list(path.parent.glob("*.vrt"))
    # only the backend's module is trusted, never every Python VRT
    assert gdal.GetConfigOption("GDAL_VRT_ENABLE_PYTHON") == "TRUSTED_MODULES"
    assert "georsic.vrt" in gdal.GetConfigOption("GDAL_VRT_PYTHON_TRUSTED_MODULES").split(",")

    reference = QgsRasterLayer(str(tif), "decompressed", "gdal")
    layer.setRenderer(reference.renderer().clone())  # the same colours on both
    # full resolution: one screen pixel per raster pixel, across tile borders
    pixel = reference.rasterUnitsPerPixelX()
    extent = reference.extent()
    window = QgsRectangle(extent.xMinimum() + 90 * pixel, extent.yMaximum() - 290 * pixel,
                          extent.xMinimum() + 290 * pixel, extent.yMaximum() - 90 * pixel)
    full = _render(layer, window, 200)
    assert full[..., :3].std() > 10 and (full[..., 3] == 255).all()  # an image, not blank
    assert np.array_equal(full, _render(reference, window, 200))
    # the whole extent at a quarter of the resolution: the archive's pyramid against the
    # GeoTIFF's overview (the average of the decoded pixels)
    whole = _render(layer, extent, 100)
    assert whole.shape == (100, 100, 4) and whole[..., :3].std() > 10
    score = _psnr(whole[..., :3], _render(reference, extent, 100)[..., :3])
    print(f"whole extent, archive's pyramid against the GeoTIFF's overview: {score:.2f} dB")
    assert 20 < score < float("inf")  # measured 22.60 dB
    QgsProject.instance().removeMapLayer(layer.id())


def test_an_archive_that_cannot_be_read_in_place_is_told(plugin, qgis_iface,
                                                         tmp_path):
    from georsic_qgis.archive_layer import ArchiveLayerError, archive_layer

    bad = tmp_path / "bad.grsc"
    bad.write_bytes(b"not an archive at all")
    with pytest.raises(ArchiveLayerError, match="not a GeoRSIC archive"):
        archive_layer(bad, folder=tmp_path)
    qgis_iface.messageBar().clear_messages()
    before = len(QgsProject.instance().mapLayers())
    assert plugin.add_archive(str(bad)) is None
    messages = qgis_iface.messageBar().get_messages(Qgis.Critical)
    assert len(messages) == 1 and "not a GeoRSIC archive" in messages[0]
    assert len(QgsProject.instance().mapLayers()) == before
    assert not list(tmp_path.glob("*.tif"))
