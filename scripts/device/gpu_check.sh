#!/usr/bin/env bash
# One short check of the CUDA paths on a machine with one NVIDIA GPU (about 8 minutes; stages in order of importance, each with a time limit):
# Mitsuba's cuda_ad_rgb renderer (bench render + a dataset render), one pretraining epoch of every
# image method with bf16 autocast and channels_last, `bench train` on the GPU, and the LiDAR
# detection probe (scripts/lidar/gpu_detection.sh, when present). Every stage has a time limit and
# its own log; summary.txt lists each stage's exit status and seconds.
#
#   bash scripts/device/gpu_check.sh OUT_DIR
#
# Without an installed equivision it runs from the checkout (PYTHONPATH); a tarball of extra
# site-packages at .whl/site.tgz (Mitsuba, Dr.Jit, kornia, omegaconf, trimesh for the GPU image's
# Python) is unpacked first when those are missing. On a CPU, VARIANT=llvm_ad_rgb DEVICE=cpu TINY=1 runs the
# same stages at toy sizes (to check the script itself).
set -uo pipefail
cd "$(dirname "$0")/../.."
DEST="${1:-gpu_check_out}"  # gets summary.txt and all.tgz (every log and result), refreshed after each stage
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
PY="${PYTHON:-python3}"
VARIANT="${VARIANT:-cuda_ad_rgb}"
DEVICE="${DEVICE:-cuda}"
TINY="${TINY:-0}"
WORK="${WORK:-/tmp/equivision_gpu_check}"
rm -rf "$WORK" && mkdir -p "$WORK/out"
OUT="$WORK/out"
if ! "$PY" -c "import mitsuba, drjit, kornia, omegaconf, trimesh" 2>/dev/null && [ -f .whl/site.tgz ]; then
  mkdir -p "$WORK/site" && tar xzf .whl/site.tgz -C "$WORK/site"
  export PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=5
# the driver's libraries (libcuda, libnvoptix for Mitsuba's cuda variant) in containers that mount them here
export LD_LIBRARY_PATH="/usr/local/nvidia/lib64:/usr/local/nvidia/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -z "${DRJIT_LIBCUDA_PATH:-}" ]; then
  for f in $(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 /{print $NF}') /usr/local/nvidia/lib64/libcuda.so.1; do
    [ -e "$f" ] && export DRJIT_LIBCUDA_PATH="$f" && break
  done
fi
EV=("$PY" -m equivision)

if [ "$TINY" = "1" ]; then
  OBJ=1; VIEWS=4; RES=32; EPOCHS=1; BATCH=4; BENCH_VIEWS=2; BENCH_RES=32,64; TRAIN_SIZE=32; TRAIN_BATCH=4; STEPS=1
else
  OBJ=10; VIEWS=8; RES=256; EPOCHS=2; BATCH=32; BENCH_VIEWS=20; BENCH_RES=64,128,256; TRAIN_SIZE=256; TRAIN_BATCH=64
  STEPS=10
fi

stage() {  # stage NAME SECONDS CMD...: run with a time limit, log to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $(($(date +%s) - t0))s" | tee -a "$OUT/summary.txt"
  tail -n 4 "$OUT/$name.log"
  pack
}

pack() {  # refresh DEST: summary.txt and all.tgz (logs and results, no datasets or checkpoints)
  cp "$OUT/summary.txt" "$DEST/summary.txt"
  tar czf "$DEST/all.tgz.part" -C "$WORK" out && mv "$DEST/all.tgz.part" "$DEST/all.tgz"
}

{
  date -u
  nvidia-smi -L 2>&1 || true
  echo "DRJIT_LIBCUDA_PATH=${DRJIT_LIBCUDA_PATH:-}"
  ldconfig -p 2>/dev/null | grep -E "libcuda\.so|libnvoptix" || true
  ls /usr/local/nvidia/lib64 2>/dev/null | grep -E "libcuda|optix" || true
  "$PY" -c "import torch, mitsuba as mi; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''); print('mitsuba', mi.__version__, mi.variants())"
} 2>&1 | tee "$OUT/environment.txt"

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
echo "done: $DEST (summary.txt, all.tgz)"
