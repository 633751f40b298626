#!/usr/bin/env bash
# The renderer on one NVIDIA GPU, for issue 2's GPU target (500 img/s at 256 px): about 8 minutes,
# stages in order of importance, each with a time limit and its own log; summary.txt lists each
# stage's exit status and seconds, all.tgz every log and JSON.
#
#   bash scripts/device/render_gpu_check.sh OUT_DIR
#
# 1. bench_cycles_level: the CPU benchmark's Cycles-level setting (20 spp + refinement tiers,
#    denoised on the GPU: --denoiser auto = oidn-cuda, else OptiX), frozen passes (--freeze auto:
#    on with CUDA; the setting name reports the replay checks and mismatches), with the per-stage
#    profile and the noise over 4 views (Cycles on the 2-core CPU: sigma 0.404 0.404 0.387 0.504);
# 2. bench_cycles_level_traced: the same with every pass traced (--freeze off);
# 3. workers_8 / workers_16: a 1,200-image dataset with that setting (frozen), N processes (the
#    summary line gives the steady rate, once every worker has written an image);
# 4. freeze: scripts/device/freeze_check.py (which frozen replays stay exact on CUDA);
# 5. bench_plain: 32 spp, no denoiser, profiled (the 63 img/s of 2026-11-26 without a profile).
# On a CPU, VARIANT=llvm_ad_rgb TINY=1 runs the same stages at toy sizes (to check the script).
set -uo pipefail
cd "$(dirname "$0")/../.."
DEST="${1:-render_gpu_check_out}"
WORK="${WORK:-/tmp/equivision_render_gpu_check}"
source scripts/device/common.sh

if [ "$TINY" = "1" ]; then
  RES=32; VIEWS=3; OBJ=1; CLASSES=chair,mug; BENCH_VIEWS=2; NOISE_VIEWS=2; FREEZE=(--res 32 --spp 4 --views 3)
  WORKER_COUNTS=(2)
else
  RES=256; VIEWS=25; OBJ=4; CLASSES=""; BENCH_VIEWS=20; NOISE_VIEWS=4; FREEZE=()
  WORKER_COUNTS=(8 16)
fi
CYCLES_LEVEL=(--spp 20 --refine 0.06:256,0.12:48 --denoise on --denoiser auto)

environment

stage bench_cycles_level 100 "${EV[@]}" bench render --variant "$VARIANT" --res "$RES" "${CYCLES_LEVEL[@]}" \
  --freeze auto --views "$BENCH_VIEWS" --noise-views "$NOISE_VIEWS" --profile --out "$OUT/bench_cycles_level.json"
if ! grep -q "^bench_cycles_level rc=0 " "$OUT/summary.txt"; then
  # the GPU denoiser could not run here (e.g. no OptiX denoiser in the driver): measure without one
  CYCLES_LEVEL=(--spp 20 --refine 0.06:256,0.12:48 --denoise off)
  stage bench_cycles_level_no_denoiser 100 "${EV[@]}" bench render --variant "$VARIANT" --res "$RES" \
    "${CYCLES_LEVEL[@]}" --freeze auto --views "$BENCH_VIEWS" --profile --out "$OUT/bench_cycles_level_nodn.json"
fi
stage bench_cycles_level_traced 100 "${EV[@]}" bench render --variant "$VARIANT" --res "$RES" \
  "${CYCLES_LEVEL[@]}" --freeze off --views "$BENCH_VIEWS" --profile --out "$OUT/bench_cycles_level_traced.json"
for w in "${WORKER_COUNTS[@]}"; do
  stage "workers_$w" 90 "${EV[@]}" render iebench --variant "$VARIANT" --out "$WORK/data_$w" --no-progress \
    --objects-per-class "$OBJ" ${CLASSES:+--classes "$CLASSES"} --views "$VIEWS" --resolution "$RES" \
    "${CYCLES_LEVEL[@]}" --workers "$w"
done
stage freeze 80 "$PY" scripts/device/freeze_check.py --variant "$VARIANT" "${FREEZE[@]}" --out "$OUT/freeze.json"
stage bench_plain 60 "${EV[@]}" bench render --variant "$VARIANT" --res "$RES" --spp 32 --denoise off \
  --views "$BENCH_VIEWS" --profile --out "$OUT/bench_plain.json"
echo "done: $DEST (summary.txt, all.tgz)"
