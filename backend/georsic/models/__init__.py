"""Model registry: architecture ids to builders, as in CompressAI's ``compressai.zoo``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from georsic.models.elic import ElicVariableRate

MODELS: dict[str, Callable[..., nn.Module]] = {
    "elic-vr": ElicVariableRate,
}


def build_model(architecture: str, config: dict) -> nn.Module:
    """Instantiate architecture ``architecture`` with keyword arguments ``config``."""
    try:
        builder = MODELS[architecture]
    except KeyError:
        raise ValueError(f"unknown model architecture {architecture!r}; known: {sorted(MODELS)}"
                         ) from None
    return builder(**config)


__all__ = ["MODELS", "ElicVariableRate", "build_model"]
