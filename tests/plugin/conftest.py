"""Fixtures for the QGIS plugin tests: real QGIS 3.22, headless (pytest-qgis)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Headless before anything creates the QgsApplication (pytest-qgis also does this when
# qgis_gui_enabled is false; this keeps the tests headless whatever the ini says).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

QGIS_PYTHON_PLUGINS = "/usr/share/qgis/python/plugins"
PLUGIN_DIR = str(Path(__file__).resolve().parents[2] / "plugin")

if QGIS_PYTHON_PLUGINS not in sys.path:
    sys.path.append(QGIS_PYTHON_PLUGINS)
if PLUGIN_DIR not in sys.path:
    sys.path.insert(0, PLUGIN_DIR)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def georsic_plugin(qgis_app, qgis_processing, qgis_iface):
    """The GeoRSIC plugin loaded the way QGIS loads it: classFactory, then initProcessing."""
    import georsic_qgis

    plugin = georsic_qgis.classFactory(qgis_iface)
    plugin.initGui()
    yield plugin
    plugin.unload()


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("georsic_plugin")
