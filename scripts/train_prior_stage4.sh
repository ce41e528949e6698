#!/usr/bin/env bash
# Stage 4 of the Code-RSIC prior as code-rsic-s2 was trained on this 2-core CPU: HPIN's image
# scale on top of the shipped code-rsic-s (the rest frozen), one core, 128-px crops of the pair
# cache, with the LPIPS weight lowered in steps (1 -> 0.3 -> 0.1 -> 0.05 -> 0.02) until the
# training crops' PSNR came within about 0.25 dB of the codec's; each command resumes the last
# one's checkpoint and runs to the step it names (1,939 steps, 84 min counted, in all).  A
# resumed run keeps the optimiser's saved learning rate (3e-4 throughout).
#   bash scripts/train_prior_stage4.sh [RUN]   (default runs/prior/stage4)
# then: georsic bench prior --prior code-rsic-s2 ... and georsic train prior-export RUN ...
set -euo pipefail
run=${1:-runs/prior/stage4}
cache=runs/prior/cache
[ -d "$cache" ] || georsic train prior-cache ../shared/data/rs --out "$cache" --regions 4 --threads 1
stage4() {
  nice -n 5 georsic train prior --stage 4 --init code-rsic-s --out "$run" --cache "$cache" \
      --threads 1 --batch 8 --patch 128 --lr 3e-4 --gan-start 500 "$@"
}
stage4 --steps 1082 --lpips-weight 1.0 --gan-weight 0.02
stage4 --steps 1391 --lpips-weight 0.3 --gan-weight 0.01
stage4 --steps 1677 --lpips-weight 0.1 --gan-weight 0.005
stage4 --steps 1751 --lpips-weight 0.05 --gan-weight 0.005
stage4 --steps 1939 --lpips-weight 0.02 --gan-weight 0.003
