"""Code-RSIC: a codebook prior for decoding ELIC-compressed remote-sensing images.

Li & Hou 2024 (arXiv 2407.12295); see :mod:`georsic.prior.model` for the inference class
:class:`CodePrior`, :mod:`georsic.prior.vqgan` (stage 1), :mod:`georsic.prior.lookup`
(stage 2) and :mod:`georsic.prior.hpin` (stage 3).
"""

from georsic.prior.model import MODES, PRESETS, PRIORS, CodePrior, build_prior, load_prior

__all__ = ["MODES", "PRESETS", "PRIORS", "CodePrior", "build_prior", "load_prior"]
