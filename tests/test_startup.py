"""Start-up: the commands that decode nothing import neither torch nor CompressAI, and the codec
imports only the CompressAI modules it uses (not the point-cloud datasets, torch_geometric,
torchvision or torch._dynamo that CompressAI's package ``__init__`` brings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from testdata import DATA

ARCHIVE = DATA / "legacy_v3_osbs_crop.grsc"
HEAVY = ("torch", "compressai", "torch_geometric", "torchvision")

#: Runs the command line in-process, then writes its exit code and the modules it imported.
RUN_CLI = """
import json, sys
from georsic.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def _run(tmp_path: Path, script: str, *args) -> dict:
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", script, str(out), *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    assert out.is_file(), done.stderr[-2000:]
    return json.loads(out.read_text())


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in HEAVY]


@pytest.mark.parametrize(("args", "code"), [
    (["--help"], 0),
    (["info", ARCHIVE], 0),
    (["info", ARCHIVE, "--json"], 0),
    (["verify", ARCHIVE], 0),
    (["models"], 0),
    (["compress"], 2),                                # arguments missing
    (["info", ARCHIVE, "--bogus"], 2),                # an unknown option
    (["decompress", "a.grsc", "b.tif", "--fidelity", "high"], 2),
    (["info", DATA / "missing.grsc"], 2),
    (["verify", DATA / "osbs_aerial_rgb.tif"], 4),    # named, but not an archive
])
def test_commands_that_decode_nothing_import_no_torch(tmp_path, args, code):
    result = _run(tmp_path, RUN_CLI, *args)
    assert result["code"] == code
    assert _heavy(result["modules"]) == []


def test_bench_options_are_built_for_bench_only(tmp_path):
    result = _run(tmp_path, RUN_CLI, "bench", "prior", "--help")
    assert result["code"] == 0
    assert "georsic.bench.prior" in result["modules"]
    assert "georsic.bench.prior" not in _run(tmp_path, RUN_CLI, "--help")["modules"]


#: Imports the codec and writes the modules it brought, then uses what CompressAI's skipped
#: imports provide (they run on first use).
CODEC = """
import json, sys
import georsic.codec
modules = sorted(sys.modules)
import compressai
from compressai import ans
from compressai.models import Cheng2020Anchor
from compressai.registry import MODELS, TRANSFORMS
from compressai.zoo import bmshj2018_factorized
with open(sys.argv[1], "w") as f:
    json.dump({"modules": modules, "coder": compressai.get_entropy_coder(),
               "ans": ans.__name__, "model": Cheng2020Anchor.__name__,
               "registered": "cheng2020-anchor" in MODELS, "transforms": len(TRANSFORMS),
               "zoo": bmshj2018_factorized.__module__}, f)
"""


def test_codec_imports_only_the_compressai_modules_it_uses(tmp_path):
    result = _run(tmp_path, CODEC)
    modules = set(result["modules"])
    assert {"compressai.models.sensetime", "compressai.entropy_models", "compressai.ans"} <= modules
    for unused in ("torch_geometric", "torchvision", "torch._dynamo", "compressai.datasets",
                   "compressai.zoo", "compressai.models.pointcloud", "compressai.transforms",
                   "compressai.registry.transforms"):
        assert unused not in modules
    # the rest of CompressAI is still there, imported when first asked for
    assert result["coder"] == "ans" and result["ans"] == "compressai.ans"
    assert result["model"] == "Cheng2020Anchor" and result["registered"]
    assert result["transforms"] > 0 and result["zoo"].startswith("compressai.zoo")
