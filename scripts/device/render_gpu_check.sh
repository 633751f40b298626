#!/usr/bin/env bash
# The renderer on one NVIDIA GPU, for issue 2's GPU target (500 img/s at 256 px): at most 9 minutes
# (BUDGET, default 540 s: a stage whose time limit would overrun it is skipped), stages in order of
# importance, each with a time limit and its own log; summary.txt lists each stage's exit status,
# seconds and the GPU's utilisation while it ran (nvidia-smi every 200 ms: the mean, and the share of
# samples at >= 90 %, which says whether the GPU or the host side bounds the rate); all.tgz every log,
# JSON and utilisation trace.
#
#   bash scripts/device/render_gpu_check.sh OUT_DIR
#
# 1. bench_cycles_level: the CPU benchmark's Cycles-level setting (20 spp + refinement tiers,
#    denoised on the GPU: --denoiser auto = oidn-cuda, else OptiX), frozen passes (--freeze auto:
#    on with CUDA; the setting name reports the replay checks and mismatches), with the per-stage
#    profile and the noise over 4 views (Cycles on the 2-core CPU: sigma 0.404 0.404 0.387 0.504);
#    if it fails (e.g. no GPU denoiser in the driver), bench_cycles_level_no_denoiser measures the
#    same setting with --denoise off, and every later stage runs without a denoiser too;
# 2. workers_16 / workers_8: a 3,000-image dataset (8 objects x 15 procedural classes x 25 views)
#    with that setting (frozen), N processes (the summary line gives the steady rate, once every
#    worker has written an image);
# 3. bench_cycles_level_traced: the same as 1 with every pass traced (--freeze off);
# 4. freeze: scripts/device/freeze_check.py (which frozen replays stay exact on CUDA);
# 5. the speed/noise ladder below the Cycles-level setting, each as workers_16_NAME (the rate of 16
#    processes) and bench_NAME (one process: profile and noise over 4 views): spp16_tiers (16 spp +
#    0.06:192,0.15:48, sigma 0.390 on the CPU with OIDN), spp8 and spp4 (no refinement), all denoised;
# 6. bench_plain: 32 spp, no denoiser, profiled (the 63 img/s of 2026-11-26 without a profile).
# On a CPU, VARIANT=llvm_ad_rgb TINY=1 runs the same stages at toy sizes (to check the script).
set -uo pipefail
cd "$(dirname "$0")/../.."
DEST="${1:-render_gpu_check_out}"
WORK="${WORK:-/tmp/equivision_render_gpu_check}"
if [ "${TINY:-0}" = "1" ]; then BUDGET="${BUDGET:-0}"; else BUDGET="${BUDGET:-540}"; fi
source scripts/device/common.sh

if [ "$TINY" = "1" ]; then
  RES=32; VIEWS=3; OBJ=1; CLASSES=chair,mug; BENCH_VIEWS=2; NOISE_VIEWS=2; FREEZE=(--res 32 --spp 4 --views 3)
  WORKERS=2
else
  RES=256; VIEWS=25; OBJ=8; CLASSES=""; BENCH_VIEWS=20; NOISE_VIEWS=4; FREEZE=()
  WORKERS=16
fi
CYCLES_LEVEL=(--spp 20 --refine 0.06:256,0.12:48 --denoise on --denoiser auto)
declare -A LADDER=(
  [spp16_tiers]="--spp 16 --refine 0.06:192,0.15:48"
  [spp8]="--spp 8 --refine none"
  [spp4]="--spp 4 --refine none"
)

render_dataset() {  # render_dataset STAGE LIMIT WORKERS SETTING...: render iebench into $WORK/STAGE
  local name=$1 limit=$2 w=$3
  shift 3
  stage "$name" "$limit" "${EV[@]}" render iebench --variant "$VARIANT" --out "$WORK/$name" --no-progress \
    --objects-per-class "$OBJ" ${CLASSES:+--classes "$CLASSES"} --views "$VIEWS" --resolution "$RES" "$@" \
    --workers "$w"
  rm -rf "${WORK:?}/$name"
}

environment

stage bench_cycles_level 100 "${EV[@]}" bench render --variant "$VARIANT" --res "$RES" "${CYCLES_LEVEL[@]}" \
  --freeze auto --views "$BENCH_VIEWS" --noise-views "$NOISE_VIEWS" --profile --out "$OUT/bench_cycles_level.json"
DENOISE=(--denoise on --denoiser auto)
if grep -q "^bench_cycles_level rc=[1-9]" "$OUT/summary.txt"; then
  # the GPU denoiser could not run here (e.g. no OptiX denoiser in the driver): measure without one
  DENOISE=(--denoise off)
  CYCLES_LEVEL=(--spp 20 --refine 0.06:256,0.12:48 "${DENOISE[@]}")
  stage bench_cycles_level_no_denoiser 100 "${EV[@]}" bench render --variant "$VARIANT" --res "$RES" \
    "${CYCLES_LEVEL[@]}" --freeze auto --views "$BENCH_VIEWS" --profile --out "$OUT/bench_cycles_level_nodn.json"
fi
render_dataset "workers_$WORKERS" 90 "$WORKERS" "${CYCLES_LEVEL[@]}"
render_dataset "workers_$((WORKERS / 2))" 90 $((WORKERS / 2)) "${CYCLES_LEVEL[@]}"
stage bench_cycles_level_traced 100 "${EV[@]}" bench render --variant "$VARIANT" --res "$RES" \
  "${CYCLES_LEVEL[@]}" --freeze off --views "$BENCH_VIEWS" --profile --out "$OUT/bench_cycles_level_traced.json"
stage freeze 80 "$PY" scripts/device/freeze_check.py --variant "$VARIANT" "${FREEZE[@]}" --out "$OUT/freeze.json"
for name in spp16_tiers spp8 spp4; do
  read -ra setting <<<"${LADDER[$name]}"
  render_dataset "workers_${WORKERS}_$name" 60 "$WORKERS" "${setting[@]}" "${DENOISE[@]}"
  stage "bench_$name" 60 "${EV[@]}" bench render --variant "$VARIANT" --res "$RES" "${setting[@]}" "${DENOISE[@]}" \
    --freeze auto --views "$BENCH_VIEWS" --noise-views "$NOISE_VIEWS" --profile --out "$OUT/bench_$name.json"
done
stage bench_plain 60 "${EV[@]}" bench render --variant "$VARIANT" --res "$RES" --spp 32 --denoise off \
  --views "$BENCH_VIEWS" --profile --out "$OUT/bench_plain.json"
echo "done: $DEST (summary.txt, all.tgz)"
