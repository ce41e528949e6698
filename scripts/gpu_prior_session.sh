#!/usr/bin/env bash
# One lent GPU call (run by the device tool from the repository root, gpupack/prior carried;
# see scripts/gpu_prior_prepare.sh): train all three stages of the Code-RSIC prior at the gpu
# preset, then stage 4 (HPIN's image scale, the rest frozen), within about 13 minutes, export it (float16 safetensors + manifest entry) to $OUT.
# The GPU machine has torch and safetensors but neither compressai nor rasterio: the training
# commands run through `python -m georsic.train.prior_cli`, which needs neither, on the crops
# and the pair cache of the pack.  Evaluate the result afterwards here with
# `georsic bench prior` (GEORSIC_WEIGHTS=the fetched folder).
#   STAGE1_SECONDS  stage 1 time limit (default 330)   STAGE23_SECONDS  stages 2,3 (default 220)
#   STAGE4_SECONDS  stage 4 (default 110)
#   BATCH1, BATCH23  batch sizes (32, 16)   DEVICE  cuda (default) or cpu (a dry run here:
#   DEVICE=cpu STAGE1_SECONDS=5 STAGE23_SECONDS=5 BATCH1=1 BATCH23=1)
#   MODEL_ID id of the exported prior (default code-rsic-gpu)
set -euo pipefail
export PYTHONUNBUFFERED=1
out=${OUT:-runs/prior-gpu-session}; mkdir -p "$out"
export PYTHONPATH=$PWD/backend GEORSIC_LPIPS_WEIGHTS=$PWD/gpupack/prior/lpips
device=${DEVICE:-cuda}
run=runs/prior-gpu
train() { python3 -m georsic.train.prior_cli "$@"; }
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null | tee "$out/gpu.txt" || true
start=$(date +%s)
train prior gpupack/prior/crops --exclude --out "$run" --stage 1 --preset gpu --device "$device" \
    --batch "${BATCH1:-32}" --patch 256 --lr 4e-4 --steps 100000 --gan-start 1500 \
    --time-limit "${STAGE1_SECONDS:-330}" 2>&1 | tee "$out/stage1.log"
echo "stage 1 took $(( $(date +%s) - start )) s" | tee -a "$out/stage1.log"
start=$(date +%s)
train prior --out "$run" --stage 2,3 --cache gpupack/prior/cache --preset gpu \
    --device "$device" --batch "${BATCH23:-16}" --patch 192 --lr 2e-4 --steps 100000 --gan-start 800 \
    --time-limit "${STAGE23_SECONDS:-220}" 2>&1 | tee "$out/stage23.log"
echo "stages 2,3 took $(( $(date +%s) - start )) s" | tee -a "$out/stage23.log"
start=$(date +%s)
train prior --out "$run" --stage 4 --cache gpupack/prior/cache --device "$device" \
    --batch "${BATCH23:-16}" --patch 192 --lr 3e-4 --steps 100000 --gan-start 500 \
    --gan-weight 0.02 --fusion-width 64 --time-limit "${STAGE4_SECONDS:-110}" 2>&1 \
    | tee "$out/stage4.log"
echo "stage 4 took $(( $(date +%s) - start )) s" | tee -a "$out/stage4.log"
train prior-export "$run" --out "$out/weights" --model-id "${MODEL_ID:-code-rsic-gpu}" --default
cp "$run/train_log.jsonl" "$out/"
