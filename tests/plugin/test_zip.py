"""The plugin zip follows the QGIS plugin repository rules and installs into a QGIS profile."""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile

import pytest
from plugin_testutils import PLUGIN_DIR, REPO, qgis_process_env, qgis_process_executable


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory):
    output = tmp_path_factory.mktemp("dist") / "georsic_qgis.zip"
    done = subprocess.run(
        [sys.executable, str(PLUGIN_DIR / "build_zip.py"), "--output", str(output)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert output.is_file()
    return output


def test_zip_layout(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        files = [n for n in names if not n.endswith("/")]
        assert {n.split("/", 1)[0] for n in names} == {"georsic_qgis"}  # one top folder
        for required in ("__init__.py", "metadata.txt", "LICENSE", "provider.py", "plugin.py"):
            assert f"georsic_qgis/{required}" in names, required
        assert zf.read("georsic_qgis/metadata.txt") == (REPO / "metadata.txt").read_bytes()
        licence = zf.read("georsic_qgis/LICENSE").decode()
        assert licence.startswith("MIT License") and "GeoRSIC developers" in licence
        meta = configparser.ConfigParser(interpolation=None)
        meta.read_string(zf.read("georsic_qgis/metadata.txt").decode())
        assert f"georsic_qgis/{meta['general']['icon']}" in names
        for algorithm in ("compress", "decompress", "info"):
            assert f"georsic_qgis/algorithms/{algorithm}.py" in names
        for name in files:
            assert "__pycache__" not in name and "/." not in name, name
            assert not name.endswith((".pyc", ".pyo", ".so", ".pyd", ".dll", ".dylib", ".exe",
                                      ".safetensors", ".pt", ".pth", ".bin", ".onnx")), name
        assert all(info.file_size < 1_000_000 for info in zf.infolist())
    assert plugin_zip.stat().st_size <= 25 * 1024 * 1024


def test_zip_is_reproducible(plugin_zip, tmp_path):
    again = tmp_path / "again.zip"
    subprocess.run([sys.executable, str(PLUGIN_DIR / "build_zip.py"), "-o", str(again)],
                   check=True, capture_output=True, timeout=60)
    assert again.read_bytes() == plugin_zip.read_bytes()


@pytest.mark.skipif(qgis_process_executable() is None, reason="qgis_process not installed")
def test_zip_installs_into_a_qgis_profile(plugin_zip, tmp_path):
    """What a user does: unzip into the profile's python/plugins folder, enable the plugin."""
    home = tmp_path / "home"
    plugins = home / ".local/share/QGIS/QGIS3/profiles/default/python/plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins)
    env = qgis_process_env(home)
    del env["QGIS_PLUGINPATH"]  # found in the profile, not through the source tree

    def qgis_process(*args):
        return subprocess.run([qgis_process_executable(), *args], env=env, capture_output=True,
                              text=True, timeout=120)

    enabled = qgis_process("plugins", "enable", "georsic_qgis")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    listing = qgis_process("list")
    assert "georsic:compress" in listing.stdout, listing.stdout + listing.stderr
    assert "georsic:decompress" in listing.stdout and "georsic:info" in listing.stdout

    # installed from the zip there is no source folder to point the install command at
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
         "from georsic_qgis import dependencies as d; "
         "print(d.source_folder()); print(d.install_message(['torch']))", str(plugins)],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith("None\n"), probe.stdout
    assert "-m pip install georsic" in probe.stdout and "/path/to/georsic" in probe.stdout
