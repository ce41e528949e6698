"""The plugin from the shell: qgis_process with QGIS_PLUGINPATH pointing at plugin/."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from plugin_testutils import (
    SOLARIS,
    needs_backend,
    qgis_process_env,
    qgis_process_executable,
    read_bands,
)

QGIS_PROCESS = qgis_process_executable()

pytestmark = pytest.mark.skipif(QGIS_PROCESS is None, reason="qgis_process not installed")


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """Runs qgis_process in a fresh profile where `plugins enable georsic_qgis` was run."""
    home = tmp_path_factory.mktemp("qgis_home")
    env = qgis_process_env(home)

    def qgis_process(*args, timeout=240):
        return subprocess.run(
            [QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    # QGIS 3.22's qgis_process loads only the plugins enabled in the profile
    enabled = qgis_process("plugins", "enable", "georsic_qgis")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    return qgis_process


def test_qgis_process_lists_and_documents_the_algorithms(shell):
    listing = shell("list")
    assert listing.returncode == 0, listing.stderr
    for alg_id in ("georsic:compress", "georsic:decompress", "georsic:info",
                   "georsic:estimate"):
        assert alg_id in listing.stdout
    helped = shell("help", "georsic:compress")
    assert helped.returncode == 0, helped.stderr
    assert "QUALITY" in helped.stdout and "TILE_SIZE" in helped.stdout


@needs_backend
def test_qgis_process_compress_then_info(shell, tmp_path):
    src = tmp_path / "solaris.tif"
    shutil.copyfile(SOLARIS, src)
    archive = tmp_path / "solaris.grsc"
    # exactly what a user types: only the input and the output, every other parameter default
    done = shell("run", "georsic:compress", "--", f"INPUT={src}", f"OUTPUT={archive}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert archive.is_file()
    assert "100 - done" in done.stdout  # the progress bar reached the end

    info = shell("--json", "run", "georsic:info", "--", f"INPUT={archive}")
    assert info.returncode == 0, info.stdout + info.stderr
    results = json.loads(info.stdout[info.stdout.index("{"):])["results"]
    assert (results["WIDTH"], results["HEIGHT"], results["BANDS"]) == (200, 200, 3)
    assert results["TILES"] == 1  # the default 1024-pixel tile covers 200x200
    assert "quality 5" in results["TEXT"]  # the default quality

    restored = tmp_path / "restored.tif"
    done = shell("run", "georsic:decompress", "--", f"INPUT={archive}", f"OUTPUT={restored}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_bands(restored).shape == read_bands(src).shape


def test_qgis_process_reports_errors_in_plain_words(shell, tmp_path):
    missing = tmp_path / "missing.grsc"
    done = shell("run", "georsic:info", "--", f"INPUT={missing}")
    assert done.returncode != 0
    assert "does not exist" in done.stdout + done.stderr
