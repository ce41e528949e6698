#!/usr/bin/env bash
# Set up, then compress the shipped sample with the default model, decompress it, and print the
# archive size, bpp and PSNR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
sample=resources/sample/neon_osbs_aerial.tif
out=${GEORSIC_DEMO_OUT:-/tmp/georsic-demo}
mkdir -p "$out"
.venv/bin/georsic compress "$sample" "$out/sample.grsc" --overwrite   # default model, quality 5
.venv/bin/georsic info "$out/sample.grsc"
.venv/bin/georsic decompress "$out/sample.grsc" "$out/sample_restored.tif" --overwrite
.venv/bin/georsic compare "$sample" "$out/sample_restored.tif" --archive "$out/sample.grsc"
