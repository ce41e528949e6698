#!/usr/bin/env python
"""How much of the weights budget git holds: every weights file in the history (160 MB at
most) and those in the tip tree (120 MB at most).

A clone downloads every version of every ``*.safetensors`` file ever committed, so the budget
counts them all, each at the size git stores it in (zlib at git's default level; a pack may
store less when it finds deltas between versions, which trained weights rarely allow).  Files
in the working tree that are not committed yet are counted too, as they will be.

    python benchmarks/weights_budget.py [--budget 160e6] [--tree-budget 120e6]

The tip tree's weights are the ``*.safetensors`` files in ``resources/weights`` now (committed
or not), counted the same way.  Exits 1 when either total is over its budget.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True,
                          capture_output=True).stdout


def committed_weights() -> dict[str, str]:
    """blob id -> path, for every ``.safetensors`` blob reachable from any ref."""
    blobs = {}
    for line in git("rev-list", "--objects", "--all").decode().splitlines():
        object_id, _, path = line.partition(" ")
        if path.endswith(".safetensors"):
            blobs[object_id] = path
    return blobs


def uncommitted_weights(known: set[str]) -> dict[str, str]:
    """The same for weights files in the tree whose content no commit holds yet."""
    blobs = {}
    for path in sorted((ROOT / "resources" / "weights").glob("*.safetensors")):
        object_id = git("hash-object", str(path)).decode().strip()
        if object_id not in known:
            blobs[object_id] = str(path.relative_to(ROOT))
    return blobs


def git_stored_bytes(data: bytes) -> int:
    """What git stores of a file's content as a loose object (zlib, level 6 as default -1)."""
    return len(zlib.compress(data, 6))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=160e6,
                        help="bytes of every version ever committed (default 160 MB)")
    parser.add_argument("--tree-budget", type=float, default=120e6,
                        help="bytes of the weights in the tree now (default 120 MB)")
    args = parser.parse_args()
    committed = committed_weights()
    rows = [(path, object_id, "committed", git("cat-file", "blob", object_id))
            for object_id, path in committed.items()]
    rows += [(path, object_id, "not committed", (ROOT / path).read_bytes())
             for object_id, path in uncommitted_weights(set(committed)).items()]
    total = 0
    print("| file | blob | state | git bytes (zlib) |\n|---|---|---|---|")
    for path, object_id, state, data in sorted(rows):
        size = git_stored_bytes(data)
        total += size
        print(f"| {path} | {object_id[:12]} | {state} | {size:,} |")
    tree = sum(git_stored_bytes(path.read_bytes())
               for path in (ROOT / "resources" / "weights").glob("*.safetensors"))
    print(f"\ntotal {total:,} bytes of {args.budget:,.0f} ({total / args.budget:.1%})")
    print(f"tree {tree:,} bytes of {args.tree_budget:,.0f} ({tree / args.tree_budget:.1%})")
    return 0 if total <= args.budget and tree <= args.tree_budget else 1


if __name__ == "__main__":
    sys.exit(main())
