"""The weights budget: at most 160 MB of weights in git, every committed version counted, and
at most 120 MB in the tip tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git repository")
def test_weights_in_git_history_fit_the_budget():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "weights_budget.py")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if ".safetensors" in line]
    shipped = {path.name for path in (ROOT / "resources" / "weights").glob("*.safetensors")}
    assert shipped <= {row.split("|")[1].strip().rsplit("/", 1)[-1] for row in rows}
    total = int(result.stdout.rsplit("total ", 1)[1].split(" bytes")[0].replace(",", ""))
    assert 0 < total <= 160_000_000
    tree = int(result.stdout.rsplit("tree ", 1)[1].split(" bytes")[0].replace(",", ""))
    assert 0 < tree <= 120_000_000
