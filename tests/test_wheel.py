"""The wheel: built from a copy of the sources, installed with ``--no-deps`` into a fresh folder
and run from outside the source tree with no ``$GEORSIC_WEIGHTS``: it must hold every package
and the models, and compress, verify and decode on its own (the dependencies from this venv)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from testdata import DATA, psnr

import georsic

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: PyPI's default limit on a file's size.
PYPI_LIMIT = 100 * 1000 * 1000


def _copy_sources(dest: Path) -> None:
    """What a build reads: the project files, the package, the models (nothing built before)."""
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "backend", dest / "backend",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    shutil.copytree(ROOT / "resources" / "weights", dest / "resources" / "weights")


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300,
                          **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src, dist = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    _copy_sources(src)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--no-index", "-q", "-w", dist, src], env=env)
    assert built.returncode == 0, built.stderr[-2000:]
    (path,) = dist.glob("georsic-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    done = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                 "--disable-pip-version-check", "--target", target, wheel])
    assert done.returncode == 0, done.stderr[-2000:]
    return target


def _packages() -> set[str]:
    backend = ROOT / "backend"
    return {".".join(init.parent.relative_to(backend).parts)
            for init in backend.rglob("__init__.py")}


def test_wheel_holds_every_package_and_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [p for p in sorted(_packages()) if f"{p.replace('.', '/')}/__init__.py" not in names]
    assert not missing, f"pyproject.toml's packages lack {missing}"
    manifest = json.loads((ROOT / "resources" / "weights" / "manifest.json").read_text())
    files = {"manifest.json"} | {entry["file"] for entry in manifest["models"]}
    assert {f"georsic_weights/{name}" for name in files} <= names
    assert {"codec", "prior"} <= {entry.get("kind", "codec") for entry in manifest["models"]}
    assert wheel.stat().st_size < PYPI_LIMIT


def test_installed_wheel_runs_without_the_sources(installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("GEORSIC_WEIGHTS", "GEORSIC_DEBUG")}
    env["PYTHONPATH"] = str(installed)  # and not the sources' backend/
    run = tmp_path / "run"
    run.mkdir()
    source = run / "aerial.tif"
    shutil.copy2(DATA / "osbs_aerial_rgb.tif", source)

    def cli(*args) -> subprocess.CompletedProcess:
        done = _run([sys.executable, installed / "bin" / "georsic", *args], cwd=run, env=env)
        assert done.returncode == 0, (args, done.stderr[-2000:])
        return done

    where = _run([sys.executable, "-c", "import georsic, georsic.weights as w; "
                  "print(georsic.__file__); print(*w.weights_dirs(), sep='\\n')"],
                 cwd=run, env=env)
    assert where.returncode == 0, where.stderr
    lines = where.stdout.split()
    assert lines[0] == str(installed / "georsic" / "__init__.py")
    assert lines[1:] == [str(installed / "georsic_weights")]

    models = cli("models", "--verify").stdout
    assert "elic-vr-s-v5" in models and "code-rsic-s2" in models
    assert models.count(" ok\n") == len(json.loads(
        (installed / "georsic_weights" / "manifest.json").read_text())["models"])
    cli("compress", source, "aerial.grsc", "--quality", "2", "--device", "cpu", "--quiet")
    assert "1 tile(s) intact" in cli("verify", "aerial.grsc").stdout
    cli("decompress", "aerial.grsc", "restored.tif", "--device", "cpu", "--quiet")
    with rasterio.open(source) as a, rasterio.open(run / "restored.tif") as b:
        original, restored = a.read(), b.read()
        assert (b.crs, b.transform, b.dtypes) == (a.crs, a.transform, a.dtypes)
    assert psnr(original, restored) > 15
    # the sources' package, in this process, decodes the wheel's archive to the same pixels
    with georsic.open(run / "aerial.grsc") as archive:
        assert np.array_equal(archive.read(device="cpu"), restored)
