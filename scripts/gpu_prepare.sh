#!/usr/bin/env bash
# Get the checkout ready for a lent GPU machine's 64 MiB upload, or put it back afterwards.
#
#   bash scripts/gpu_prepare.sh train PHOTOS RS [SEED]   pack + wheels in gpupack/ for MODE=train
#                                  (PACK_PATCH=320: crops of 320 px, more of them in the 40 MiB)
#   bash scripts/gpu_prepare.sh speed                    wheels (rasterio too) for MODE=speed
#   bash scripts/gpu_prepare.sh qat PHOTOS RS [SEED]     pack + wheels for MODE=qat (issue 29:
#                                  8-bit activations of g_s); keeps the default model instead
#   bash scripts/gpu_prepare.sh distill PHOTOS RS [SEED] pack + wheels for MODE=distill (issue 29:
#                                  narrower g_s and g_a learnt from the default model)
#   bash scripts/gpu_prepare.sh restore                  older weights back, gpupack/ kept
#
# It moves the weights files that training does not start from out of the tree (to
# /tmp/georsic-older-weights; `git checkout -- resources/weights` also restores them), writes
# the pack (the README recipe's data and exclusions, the RS folder listed 12 times, `--seed`
# SEED for a second call's pack), downloads the wheels for the machine's Python 3.12, and prints
# what would travel against the 64 MiB limit.  Then call the device tool with
# `command: TRAIN_SECONDS=400 bash scripts/gpu_session.sh`, `carry: ["gpupack"]` (train) or
# `command: MODE=speed bash scripts/gpu_session.sh`, `carry: ["gpupack/whl"]` (speed).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
older=/tmp/georsic-older-weights
keep=elic-vr-s-v4.safetensors  # the shipped default, which training starts from
limit=$((64 * 1024 * 1024))

# gpupack/ is in .gitignore: carried, never committed
move_older_weights() {
    # QAT fine-tunes the default's g_s; distillation learns from the default
    case "$mode" in qat|distill) keep=elic-vr-s-v5.safetensors ;; esac
    mkdir -p "$older"
    for f in resources/weights/*.safetensors; do
        [ "$(basename "$f")" = "$keep" ] || mv "$f" "$older/"
    done
}

wheels() {  # NAME==VERSION...: wheels for CPython 3.12 on manylinux x86_64, into gpupack/whl
    mkdir -p gpupack/whl
    /usr/bin/python3.11 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d gpupack/whl "$@"
}

travelling_bytes() {  # tracked and untracked-not-ignored files that exist, plus carried paths
    {
        git ls-files -z --cached --others --exclude-standard \
            | xargs -0 -r stat -c %s 2>/dev/null || true  # files moved out are not there
        for path in "$@"; do find "$path" -type f -printf '%s\n'; done
    } | awk '{s += $1} END {print s + 0}'
}

report() {
    local bytes
    bytes=$(travelling_bytes "$@")
    awk -v b="$bytes" -v c="$*" 'BEGIN {printf "would travel: %.1f MiB of 64 (carry: %s)\n", b / 1048576, c}'
    [ "$bytes" -le "$limit" ] || { echo "over the limit: carry less" >&2; exit 1; }
}

case "$mode" in
    train|qat|distill)
        photos=${2:?photos folder}; rs=${3:?remote-sensing folder}; seed=${4:-0}
        move_older_weights
        rm -rf gpupack/pack
        .venv/bin/georsic train pack "$photos" $(for _ in $(seq 12); do echo "$rs"; done) \
            --exclude OSBS_029 SOAP_031 australia_uav solaris_pan1 moon_4k globe_colors \
            --out gpupack/pack --max-mib 40 --seed "$seed" --patch "${PACK_PATCH:-384}"
        rm -f gpupack/whl/rasterio-*.whl  # training needs no rasterio; it would not fit
        wheels compressai==1.2.8 pytorch-msssim==1.0.0
        report gpupack
        ;;
    speed)
        move_older_weights
        wheels compressai==1.2.8 pytorch-msssim==1.0.0 rasterio==1.4.4 affine cligj click-plugins
        report gpupack/whl
        ;;
    restore)
        if [ -d "$older" ]; then mv "$older"/*.safetensors resources/weights/ 2>/dev/null || true; fi
        git checkout -- resources/weights
        git status --short resources/weights
        echo "weights restored"
        ;;
    *)
        sed -n '2,13p' "$0"
        exit 2
        ;;
esac
