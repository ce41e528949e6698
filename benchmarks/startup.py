#!/usr/bin/env python
"""Start-up time of the command line: wall and CPU (user + system) seconds, best of N, of
``georsic --help``, ``info`` and ``verify`` on a small archive, ``models``, an argument error,
and importing the codec, each a fresh ``python -m georsic.cli`` process.

Each ``--tree`` is a source folder whose ``backend/`` goes first on ``PYTHONPATH`` (default:
this one), so that another commit's start-up can be measured beside it, e.g.::

    git archive 2ed3e02 backend | tar -x -C /tmp/base
    python benchmarks/startup.py --tree /tmp/base --tree . -n 3

The CPU seconds hardly move when other processes share the cores; the wall seconds do.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT / "tests" / "data" / "legacy_v3_osbs_crop.grsc"
COMMANDS = (("-m", "georsic.cli", "--help"), ("-m", "georsic.cli", "info", str(ARCHIVE)),
            ("-m", "georsic.cli", "verify", str(ARCHIVE)), ("-m", "georsic.cli", "models"),
            ("-m", "georsic.cli", "info", "--bogus"), ("-c", "import georsic.codec"))


def run_once(tree: Path, args: tuple[str, ...]) -> tuple[float, float]:
    """Wall and CPU seconds of one process."""
    env = {**os.environ, "PYTHONPATH": str(tree / "backend")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-W", "ignore", *args], cwd=ROOT, env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, action="append",
                        help="a source folder (repeatable; default: this one)")
    parser.add_argument("-n", type=int, default=3, help="runs of each command (default 3)")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree or [ROOT]]
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs, best of {args.n}")
    print("| command | " + " | ".join(f"{t.name}: wall s / CPU s" for t in trees) + " |")
    print("|---|" + "---|" * len(trees))
    for command in COMMANDS:
        cells = []
        for tree in trees:
            runs = [run_once(tree, command) for _ in range(args.n)]
            cells.append(f"{min(r[0] for r in runs):.2f} / {min(r[1] for r in runs):.2f}")
        shown = " ".join(command).replace(str(ARCHIVE), ARCHIVE.name)
        print(f"| `{shown}` | " + " | ".join(cells) + " |", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
