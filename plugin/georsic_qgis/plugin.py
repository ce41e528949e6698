"""The QGIS plugin object: registers the GeoRSIC Processing provider and *Add GeoRSIC
archive* (a menu and toolbar entry, and dropping a ``.grsc`` file on the map canvas)."""

from __future__ import annotations

from qgis.core import QgsApplication

from .provider import GeorsicProvider

#: The menu the action goes in (Plugins > GeoRSIC) and the action's text.
MENU = "&GeoRSIC"
ADD_ARCHIVE = "Add GeoRSIC archive…"


def _drop_handler_class():
    from qgis.gui import QgsCustomDropHandler

    class ArchiveDropHandler(QgsCustomDropHandler):
        """Adds a dropped ``.grsc`` file as a layer read in place."""

        def __init__(self, plugin):
            super().__init__()
            self.plugin = plugin

        def customUriProviderKey(self) -> str:  # noqa: N802 - Qt's name
            return "georsic"

        def handleFileDrop(self, file: str) -> bool:  # noqa: N802 - Qt's name
            if not file.lower().endswith(".grsc"):
                return False
            self.plugin.add_archive(file)
            return True

    return ArchiveDropHandler


class GeorsicPlugin:
    """The "GeoRSIC" Processing provider, and *Add GeoRSIC archive*."""

    def __init__(self, iface=None):
        self.iface = iface
        self.provider = None
        self.action = None
        self.drop_handler = None

    def initProcessing(self) -> None:
        """Called by QGIS (and qgis_process) for plugins with hasProcessingProvider=yes."""
        if self.provider is None:
            self.provider = GeorsicProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()
        if self.iface is None or self.action is not None:
            return
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        from .algorithms.base import ICON_PATH

        self.action = QAction(QIcon(ICON_PATH), ADD_ARCHIVE, self.iface.mainWindow())
        self.action.setObjectName("georsicAddArchive")
        self.action.setToolTip("Add a GeoRSIC archive (.grsc) as a layer, read in place")
        self.action.triggered.connect(self.choose_archive)
        self.iface.addPluginToRasterMenu(MENU, self.action)
        self.iface.addRasterToolBarIcon(self.action)
        self.drop_handler = _drop_handler_class()(self)
        self.iface.registerCustomDropHandler(self.drop_handler)

    def choose_archive(self) -> None:
        from qgis.PyQt.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.iface.mainWindow(), "Add GeoRSIC archive",
                                              "", "GeoRSIC archives (*.grsc)")
        if path:
            self.add_archive(path)

    def add_archive(self, path: str):
        """Add the archive as a layer; on failure say why in the message bar (and return
        None): no decompressed copy is made instead."""
        from qgis.core import Qgis

        from .archive_layer import ArchiveLayerError, add_archive_layer

        try:
            layer = add_archive_layer(path)
        except ArchiveLayerError as exc:
            if self.iface is not None:
                self.iface.messageBar().pushMessage("GeoRSIC", str(exc), Qgis.Critical, 0)
            return None
        return layer

    def unload(self) -> None:
        if self.action is not None and self.iface is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeRasterToolBarIcon(self.action)
            self.action = None
        if self.drop_handler is not None and self.iface is not None:
            self.iface.unregisterCustomDropHandler(self.drop_handler)
            self.drop_handler = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
