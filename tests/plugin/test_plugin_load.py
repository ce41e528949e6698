"""The plugin loads, registers its provider and explains missing dependencies (no backend work)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
from plugin_testutils import PLUGIN_DIR, REPO, SOLARIS
from qgis.core import (
    QgsApplication,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterDefinition,
)

ALGORITHM_IDS = ("georsic:compress", "georsic:decompress", "georsic:info", "georsic:estimate")

# What plugins.qgis.org refuses an upload without.
REQUIRED_METADATA = (
    "name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
    "repository", "tracker",
)


def read_metadata(path):
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive (qgisMinimumVersion)
    assert parser.read(path, encoding="utf-8"), path
    return dict(parser["general"])


def test_metadata_has_every_required_field():
    meta = read_metadata(REPO / "metadata.txt")
    for key in REQUIRED_METADATA:
        assert meta.get(key, "").strip(), f"metadata.txt lacks {key}"
    assert meta["hasProcessingProvider"] == "yes"
    assert meta["qgisMinimumVersion"] == "3.22"
    assert (PLUGIN_DIR / "georsic_qgis" / meta["icon"]).is_file()
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, re.M).group(1)
    assert meta["version"] == version


def test_plugin_folder_metadata_is_the_root_copy():
    # QGIS reads plugin/georsic_qgis/metadata.txt when QGIS_PLUGINPATH points at plugin/.
    root = (REPO / "metadata.txt").read_bytes()
    assert (PLUGIN_DIR / "georsic_qgis" / "metadata.txt").read_bytes() == root


def test_provider_and_algorithms_registered(georsic_plugin):
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("georsic")
    assert provider is not None
    assert provider.name() == "GeoRSIC"
    assert not provider.icon().isNull()
    ids = sorted(alg.id() for alg in provider.algorithms())
    assert ids == sorted(ALGORITHM_IDS)
    for alg_id in ALGORITHM_IDS:
        alg = registry.algorithmById(alg_id)
        assert alg is not None, alg_id
        assert alg.flags() & QgsProcessingAlgorithm.FlagSupportsBatch
        assert alg.flags() & QgsProcessingAlgorithm.FlagCanCancel
        assert len(alg.shortHelpString()) > 200
        assert not alg.icon().isNull()


def test_compress_parameters(georsic_plugin):
    alg = QgsApplication.processingRegistry().algorithmById("georsic:compress")
    params = {p.name(): p for p in alg.parameterDefinitions()}
    assert set(params) == {"INPUT", "QUALITY", "TARGET_PSNR", "TARGET_BPP", "TILE_SIZE",
                           "OVERLAP", "REFINE", "DEVICE", "WORKERS", "MAX_ERROR", "LOSSLESS",
                           "EXACT", "OUTPUT"}
    for name in ("TARGET_PSNR", "TARGET_BPP", "MAX_ERROR"):
        assert params[name].flags() & QgsProcessingParameterDefinition.FlagOptional, name
    for name in ("TILE_SIZE", "OVERLAP", "REFINE", "DEVICE", "WORKERS", "EXACT"):
        assert params[name].flags() & QgsProcessingParameterDefinition.FlagAdvanced, name
    assert params["EXACT"].defaultValue() is False
    assert params["QUALITY"].minimum() == 0 and params["QUALITY"].maximum() == 7
    assert params["DEVICE"].options()[1:] == ["CPU", "GPU (CUDA)"]
    assert "grsc" in params["OUTPUT"].fileFilter()


def test_decompress_parameters(georsic_plugin):
    alg = QgsApplication.processingRegistry().algorithmById("georsic:decompress")
    params = {p.name(): p for p in alg.parameterDefinitions()}
    assert {"INPUT", "EXTENT", "PRIOR", "FIDELITY", "OVERVIEWS", "COG", "IGNORE_ERRORS",
            "OUTPUT"} <= set(params)
    assert params["IGNORE_ERRORS"].flags() & QgsProcessingParameterDefinition.FlagAdvanced
    assert params["IGNORE_ERRORS"].defaultValue() is False
    assert params["EXTENT"].flags() & QgsProcessingParameterDefinition.FlagOptional
    assert len(params["OVERVIEWS"].options()) == 3 and params["OVERVIEWS"].defaultValue() == 0
    assert params["OUTPUT"].type() == "rasterDestination"
    from georsic.prior.restore import DEFAULT_FIDELITY

    assert params["FIDELITY"].defaultValue() == DEFAULT_FIDELITY  # the CLI's and the API's


def test_unload_removes_the_provider_and_reload_restores_it(georsic_plugin):
    registry = QgsApplication.processingRegistry()
    georsic_plugin.unload()
    try:
        assert registry.providerById("georsic") is None
    finally:
        georsic_plugin.initProcessing()
    assert registry.providerById("georsic") is not None
    georsic_plugin.initProcessing()  # a second call (initGui after initProcessing) is harmless
    assert len([p for p in registry.providers() if p.id() == "georsic"]) == 1


@pytest.fixture
def no_torch(monkeypatch):
    """Make torch unimportable, as in a QGIS where the backend's dependencies are missing."""
    monkeypatch.setitem(sys.modules, "torch", None)


def test_missing_dependency_is_explained(georsic_plugin, no_torch, tmp_path):
    import processing

    alg = QgsApplication.processingRegistry().algorithmById("georsic:compress")
    ok, message = alg.canExecute()
    assert not ok
    assert "torch" in message and "-m pip install" in message
    assert "Not ready" in alg.shortHelpString()
    source = tmp_path / "solaris.tif"  # a copy: QGIS writes .aux.xml files next to its inputs
    shutil.copyfile(SOLARIS, source)
    output = tmp_path / "out.grsc"
    with pytest.raises(QgsProcessingException) as info:
        processing.run("georsic:compress", {"INPUT": str(source), "OUTPUT": str(output)})
    message = str(info.value)
    assert "torch" in message
    assert f"{sys.executable} -m pip install georsic" in message
    # run from the source tree, the editable install names this very folder
    assert f"{sys.executable} -m pip install -e {REPO}" in message
    assert not output.exists()


def test_plugin_loads_in_a_qgis_python_without_the_backend(tmp_path):
    """Debian's own python3.11 (QGIS bindings, no torch/georsic): the plugin loads and every
    algorithm answers with the install command for that Python."""
    system_python = "/usr/bin/python3.11"
    check = subprocess.run(
        [system_python, "-c", "import qgis.core, importlib.util as u; "
         "raise SystemExit(u.find_spec('torch') is not None)"],
        capture_output=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    if check.returncode != 0:
        pytest.skip("no system Python with QGIS bindings and without torch")
    archive = str(tmp_path / "o.grsc")
    source = str(tmp_path / "solaris.tif")  # a copy: QGIS writes .aux.xml files next to inputs
    shutil.copyfile(SOLARIS, source)
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        sys.path[:0] = [{str(PLUGIN_DIR)!r}, "/usr/share/qgis/python/plugins"]
        from qgis.core import QgsApplication, QgsProcessingException
        app = QgsApplication([], False)
        app.initQgis()
        from processing.core.Processing import Processing
        Processing.initialize()
        import georsic_qgis
        plugin = georsic_qgis.classFactory(None)
        plugin.initProcessing()
        import processing
        for alg_id, params in (
            ("georsic:compress", {{"INPUT": {source!r}, "OUTPUT": {archive!r}}}),
            ("georsic:decompress", {{"INPUT": {archive!r}, "OUTPUT": "TEMPORARY_OUTPUT"}}),
            ("georsic:info", {{"INPUT": {archive!r}}}),
        ):
            try:
                processing.run(alg_id, params)
            except QgsProcessingException as exc:
                print("MESSAGE", alg_id, str(exc).replace("\\n", " | "))
        plugin.unload()
        app.exitQgis()
    """)
    (tmp_path / "o.grsc").write_bytes(b"not an archive")
    proc = subprocess.run(
        [system_python, "-c", script], capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("MESSAGE")]
    assert len(lines) == 3, proc.stdout + proc.stderr
    for line in lines:
        assert "lacks georsic, torch, compressai, rasterio" in line, line
        assert (
            f"{system_python} -m pip install --user --break-system-packages georsic" in line
            or f"{system_python} -m pip install --user georsic" in line
        ), line


def test_algorithm_dialogs_build(georsic_plugin, qgis_iface, monkeypatch):
    """The toolbox dialog of each algorithm builds (widgets for every parameter)."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.gui import QgsBrowserGuiModel

    browser = QgsBrowserGuiModel()  # the stub iface returns a MagicMock here
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)

    for alg_id in ALGORITHM_IDS:
        alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
        dialog = AlgorithmDialog(alg, parent=qgis_iface.mainWindow())
        try:
            assert dialog.mainWidget() is not None
        finally:
            dialog.close()
            dialog.deleteLater()
