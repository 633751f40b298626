#!/usr/bin/env bash
# One short check of the CUDA paths on a machine with one NVIDIA GPU (about 8 minutes; stages in order of importance, each with a time limit):
# Mitsuba's cuda_ad_rgb renderer (bench render + a dataset render), two pretraining epochs of every
# image method with bf16 autocast and channels_last, `bench train` on the GPU, and the LiDAR
# detection probe (scripts/lidar/gpu_detection.sh, when present). Every stage has a time limit and
# its own log; summary.txt lists each stage's exit status and seconds.
#
#   bash scripts/device/gpu_check.sh OUT_DIR
#
# The environment (PYTHONPATH, .whl/site.tgz, the driver's libraries) and the stage runner are in
# scripts/device/common.sh; scripts/device/render_gpu_check.sh is the renderer-only check (issue 2's
# GPU target). On a CPU, VARIANT=llvm_ad_rgb DEVICE=cpu TINY=1 runs the same stages at toy sizes
# (to check the script itself).
set -uo pipefail
cd "$(dirname "$0")/../.."
DEST="${1:-gpu_check_out}"  # gets summary.txt and all.tgz (every log and result), refreshed after each stage
source scripts/device/common.sh

if [ "$TINY" = "1" ]; then
  OBJ=1; VIEWS=4; RES=32; EPOCHS=1; BATCH=4; BENCH_VIEWS=2; BENCH_RES=32,64; TRAIN_SIZE=32; TRAIN_BATCH=4; STEPS=1
  COMPILE=eager  # dynamo capture only: inductor's code generation takes minutes on a small CPU
else
  OBJ=10; VIEWS=8; RES=256; EPOCHS=2; BATCH=32; BENCH_VIEWS=20; BENCH_RES=64,128,256; TRAIN_SIZE=256; TRAIN_BATCH=64
  STEPS=10
  COMPILE=inductor
fi

environment

stage render_bench 60 "${EV[@]}" bench render --variant "$VARIANT" --res "$BENCH_RES" --spp 32 --denoise off \
  --views "$BENCH_VIEWS" --out "$OUT/bench_render.json"
stage render_dataset 60 "${EV[@]}" render iebench --variant "$VARIANT" --out "$WORK/data" --objects-per-class "$OBJ" \
  --views "$VIEWS" --resolution "$RES" --spp 25 --denoise off --workers 8
if [ -f scripts/lidar/gpu_detection.sh ]; then
  stage lidar 240 env TINY="$TINY" PYTHON="$PY" bash scripts/lidar/gpu_detection.sh "$WORK/lidar"
  mkdir -p "$OUT/lidar"
  cp -r "$WORK"/lidar/detection/results.* "$WORK"/lidar/logs "$WORK"/lidar/timings.txt "$OUT/lidar/" 2>/dev/null
  cp "$WORK"/lidar/pretrain/lidar_gpu/metrics.jsonl "$OUT/lidar/pretrain_metrics.jsonl" 2>/dev/null
  pack
fi
for m in sie vicreg simclr equicaps seqjepa; do
  extra=()
  [ "$m" = equicaps ] && extra=(method.map_size=$((RES / 32)))  # the capsule map is the backbone's output side
  stage "pretrain_$m" 45 "${EV[@]}" pretrain --config "scripts/pretrain/mini/$m.yaml" "${extra[@]}" data.root="$WORK/data" \
    data.image_size="$RES" epochs="$EPOCHS" device="$DEVICE" out_dir="$WORK/runs" run_name="$m" data.workers=4 \
    data.batch_size="$BATCH"
  cp "$WORK/runs/$m/metrics.jsonl" "$OUT/metrics_$m.jsonl" 2>/dev/null || true
done
stage bench_train 45 "${EV[@]}" bench train --method sie --device "$DEVICE" --image-size "$TRAIN_SIZE" \
  --batch-size "$TRAIN_BATCH" --steps "$STEPS" --out "$OUT/bench_train.json"
stage render_bench_adaptive 45 "${EV[@]}" bench render --variant "$VARIANT" --res "${BENCH_RES##*,}" --spp 49 \
  --refine 0.12:256 --denoise off --views "$BENCH_VIEWS" --out "$OUT/bench_render_adaptive.json"
# last (it compiles for a minute or two): the SIE step's overhead with torch.compile (inductor), after
# +37.9 % eager on an H200 (2026-11-26)
stage bench_train_compiled 150 "${EV[@]}" bench train --method sie --device "$DEVICE" --image-size "$TRAIN_SIZE" \
  --batch-size "$TRAIN_BATCH" --steps "$STEPS" --warmup 2 --compile "$COMPILE" --out "$OUT/bench_train_compiled.json"
echo "done: $DEST (summary.txt, all.tgz)"
