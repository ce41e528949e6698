"""The "GeoRSIC" Processing provider."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import ALGORITHMS
from .algorithms.base import ICON_PATH
from .metadata import plugin_version


class GeorsicProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "georsic"

    def name(self) -> str:
        return "GeoRSIC"

    def longName(self) -> str:
        return "GeoRSIC learned raster compression"

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def svgIconPath(self) -> str:
        return ICON_PATH

    def versionInfo(self) -> str:
        return plugin_version()

    def loadAlgorithms(self) -> None:
        for cls in ALGORITHMS:
            self.addAlgorithm(cls())

    def supportedOutputRasterLayerExtensions(self):
        # The backend writes GeoTIFF only.
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:
        return "tif"
