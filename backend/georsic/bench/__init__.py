"""Benchmarks (``georsic bench ...``): rate-distortion against classical codecs, and more."""
