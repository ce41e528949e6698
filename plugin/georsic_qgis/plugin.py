"""The QGIS plugin object: registers the GeoRSIC Processing provider."""

from __future__ import annotations

from qgis.core import QgsApplication

from .provider import GeorsicProvider


class GeorsicPlugin:
    """Adds the "GeoRSIC" provider to the Processing toolbox; nothing else in the GUI."""

    def __init__(self, iface=None):
        self.iface = iface
        self.provider = None

    def initProcessing(self) -> None:
        """Called by QGIS (and qgis_process) for plugins with hasProcessingProvider=yes."""
        if self.provider is None:
            self.provider = GeorsicProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
