#!/usr/bin/env bash
# One lent GPU call, run by the device tool from the repository root; results land in $OUT.
# MODE=train (default), gpupack/ carried (gpupack/pack: `georsic train pack`, gpupack/whl: the
#   compressai and pytorch-msssim wheels for the machine's Python): continue training from the
#   shipped default, export the weights, and time the codec alone on the GPU.
#   TRAIN_SECONDS   training time limit (default 400)   INIT   weights to start from
#   MODEL_ID        id of the new weights (default elic-vr-s-v5)   DEVICE   cuda (default) or cpu
#   LR              learning rate (default 1e-4; lower fine-tunes a trained model more gently)
#   QUALITIES       qualities the codec is timed at afterwards (default "1 3 5 7"; empty: not timed)
# MODE=qat, gpupack/ carried as for train (`bash scripts/gpu_prepare.sh qat PHOTOS RS`):
#   quantisation-aware fine-tuning of g_s on 8-bit activations (issue 29's route to an exact
#   synthesis as fast as today's), held out on benchmarks/data; QAT_MINUTES (default 8);
#   QAT_LEVELS (default 255: VNNI's exact int8; 127 keeps every u8 x s8 pair sum below
#   2**15, so that AVX2's int8 kernels are exact too: the route for CPUs without VNNI).
# MODE=distill, gpupack/ carried as for train (`bash scripts/gpu_prepare.sh train PHOTOS RS`):
#   issue 29's narrower transforms, distilled from the shipped elic-vr-s-v5 with its entropy
#   model kept (`georsic train distill`): g_s then g_a, DISTILL_SECONDS each (default 240), at
#   DISTILL_WIDTH channels (default 32), on 256-px crops in batches of 32; exports both as
#   MODEL_ID (default elic-vr-s-v6) into $OUT with the two run logs. RESUME_S / RESUME_A: run
#   folders (carried) to go on from.
# MODE=speed, gpupack/whl carried with rasterio's wheels too (rasterio, affine, cligj,
#   click-plugins; 36 MB, so no pack beside them): `georsic bench rd`, which times the whole
#   pipeline (GeoTIFF in, archive, GeoTIFF out) on the CPU and the GPU, against GDAL's codecs
#   and Pillow's AVIF (imagecodecs, 28 MB more, stays behind), after `georsic bench speed` at
#   4 and 16 MP (MP/s of compress and decompress on the GPU).
set -o pipefail
export PYTHONUNBUFFERED=1
out=${OUT:-runs/gpu-session}; mkdir -p "$out"
if [ -d gpupack/whl ] && [ -z "$NO_WHEELS" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site --find-links gpupack/whl compressai pytorch-msssim \
        $([ "$MODE" = speed ] && echo rasterio affine cligj click-plugins) || exit 2
fi
export PYTHONPATH=/tmp/site:$PWD/backend
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, compressai, numpy; from georsic.train import codec
print('torch', torch.__version__, 'compressai', compressai.__version__, 'numpy',
      numpy.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))" | tee -a "$out/gpu.txt" || exit 3
georsic() { python3 -c 'import sys; from georsic.cli import main; sys.exit(main())' "$@"; }
if [ "$MODE" = speed ]; then
    # whole pipeline against raster size on the GPU (tiles batched on the device; AVIF/JPEG XL
    # columns only where imagecodecs is installed), then the rate-distortion bench
    georsic bench speed --sizes 4 16 --qualities 1 3 5 --out "$out/speed.md" 2>&1 \
        | tee "$out/speed.log"
    georsic bench rd --out "$out/rd" 2>&1 | tee "$out/rd.log"
    exit
fi
if [ "$MODE" = qat ]; then
    python3 -m georsic.train.synthesis_qat --data gpupack/pack --held-out benchmarks/data \
        --device "${DEVICE:-cuda}" --crops "${QAT_CROPS:-1}" --batch "${QAT_BATCH:-32}" \
        --qualities ${QAT_QUALITIES:-1 3 5 7} \
        --minutes "${QAT_MINUTES:-8}" --lr "${QAT_LR:-1e-4}" --levels "${QAT_LEVELS:-255}" \
        --out "$out/qat" 2>&1 \
        | tee "$out/qat.log"
    exit
fi
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
if [ "$MODE" = distill ]; then
    runs_s=${RESUME_S:-runs/distill-s}; runs_a=${RESUME_A:-runs/distill-a}
    for part in synthesis analysis; do
        run=$([ $part = synthesis ] && echo "$runs_s" || echo "$runs_a")
        georsic train distill gpupack/pack --part $part --width "${DISTILL_WIDTH:-32}" \
            --patch 256 --batch 32 --lr "${LR:-3e-4}" --steps 1000000 --device "${DEVICE:-cuda}" \
            --time-limit "${DISTILL_SECONDS:-240}" --out "$run" 2>&1 | tee "$out/distill-$part.log"
    done
    georsic train distill gpupack/pack --part analysis --width "${DISTILL_WIDTH:-32}" \
        --steps 0 --out "$runs_a" --export "$out" --with "$runs_s" \
        --model-id "${MODEL_ID:-elic-vr-s-v6}" --hardware "1x ${gpu_name:-GPU} (lent GPU machine)" \
        2>&1 | tee -a "$out/distill-export.log"
    cp "$runs_s/train_log.jsonl" "$out/distill-synthesis.jsonl"
    cp "$runs_a/train_log.jsonl" "$out/distill-analysis.jsonl"
    exit
fi
start=$(date +%s)
georsic train codec gpupack/pack --N 64 --M 128 --gray-fraction 0.1 --patch 256 --batch 16 \
    --lr "${LR:-1e-4}" --lambdas 0.00005 0.0001 0.00023 0.0005 0.0011 0.0024 0.0051 0.011 \
    --init "${INIT:-resources/weights/elic-vr-s-v4.safetensors}" --steps 100000 \
    --time-limit "${TRAIN_SECONDS:-400}" --device "${DEVICE:-cuda}" --out runs/gpu-train \
    --export runs/gpu-stage --model-id "${MODEL_ID:-elic-vr-s-v5}" --weights-dtype int8 \
    --weight-bits 5,g_a=7,g_s=8 --hardware "1x ${gpu_name:-CPU} (lent GPU machine)" \
    2>&1 | tee "$out/train.log"
echo "training took $(( $(date +%s) - start )) s" | tee -a "$out/train.log"
# the same checkpoint unquantised (float16, about 15 MB): tells training from rounding apart
python3 -c "from georsic.train.export import export_codec as e
e('runs/gpu-train/checkpoint.pt', 'runs/gpu-stage16', '${MODEL_ID:-elic-vr-s-v5}-f16')" \
    && mkdir -p "$out/f16" && cp runs/gpu-stage16/* "$out/f16/"
cp runs/gpu-stage/* runs/gpu-train/train_log.jsonl "$out/"
qualities=${QUALITIES-1 3 5 7}
[ -n "$qualities" ] || exit 0
python3 benchmarks/tile_speed.py benchmarks/data/deepforest_SOAP_031.png --devices "${DEVICE:-cuda}" \
    --qualities $qualities --tile 1024 --repeat 3 --json "$out/tile_speed.json"
