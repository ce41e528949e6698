"""GeoRSIC QGIS plugin: a Processing provider for learned compression of GeoTIFFs.

The plugin is a thin front end. The backend (the ``georsic`` Python package with torch,
compressai and rasterio) is imported only when an algorithm runs, so the plugin loads, and
explains how to install the backend, in a QGIS that lacks it.
"""


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    from .plugin import GeorsicPlugin

    return GeorsicPlugin(iface)
