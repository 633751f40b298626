# Sourced by the device check scripts (gpu_check.sh, render_gpu_check.sh): the Python environment
# of a GPU machine, the output folders and the time-limited `stage` runner.
#
# Needs DEST (where summary.txt and all.tgz go) set by the caller; reads PYTHON, VARIANT, DEVICE,
# TINY, WORK from the environment. Without an installed equivision it runs from the checkout
# (PYTHONPATH); a tarball of extra site-packages at .whl/site.tgz (Mitsuba, Dr.Jit, kornia,
# omegaconf, trimesh for the GPU image's Python) is unpacked first when those are missing.
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

BUDGET="${BUDGET:-0}"  # seconds for all stages (0 = no limit): a stage whose limit would overrun it is skipped
GPU_SAMPLER=""
gpu_util_start() {  # sample the GPU's utilisation and memory every 200 ms into $OUT/NAME.gpu.csv
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200 \
    >"$OUT/$1.gpu.csv" 2>/dev/null &
  GPU_SAMPLER=$!
}
gpu_util_stop() {  # stop the sampler; print "gpu util mean M% busy B% of N samples" for $OUT/NAME.gpu.csv
  [ -n "$GPU_SAMPLER" ] || return 0
  kill "$GPU_SAMPLER" 2>/dev/null
  wait "$GPU_SAMPLER" 2>/dev/null
  GPU_SAMPLER=""
  awk -F', *' '$1 ~ /^[0-9]+$/ {n++; s += $1; if ($1 >= 90) b++}
    END {if (n) printf " gpu util mean %.0f%% >=90%% in %.0f%% of %d samples", s / n, 100 * b / n, n}' "$OUT/$1.gpu.csv"
}

stage() {  # stage NAME SECONDS CMD...: run with a time limit, log to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  if [ "$BUDGET" -gt 0 ] && [ $((SECONDS + limit)) -gt "$BUDGET" ]; then
    echo "$name skipped: ${limit}s would overrun the ${BUDGET}s budget at ${SECONDS}s" | tee -a "$OUT/summary.txt"
    pack
    return 0
  fi
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s)"
  gpu_util_start "$name"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  local util
  util=$(gpu_util_stop "$name")
  echo "$name rc=$rc $(($(date +%s) - t0))s$util" | tee -a "$OUT/summary.txt"
  tail -n 4 "$OUT/$name.log"
  pack
}

pack() {  # refresh DEST: summary.txt and all.tgz (logs and results, no datasets or checkpoints)
  cp "$OUT/summary.txt" "$DEST/summary.txt"
  tar czf "$DEST/all.tgz.part" -C "$WORK" out && mv "$DEST/all.tgz.part" "$DEST/all.tgz"
}

environment() {  # the machine, the driver's libraries, torch and Mitsuba: $OUT/environment.txt
  {
    date -u
    nvidia-smi -L 2>&1 || true
    echo "DRJIT_LIBCUDA_PATH=${DRJIT_LIBCUDA_PATH:-}"
    ldconfig -p 2>/dev/null | grep -E "libcuda\.so|libnvoptix" || true
    ls /usr/local/nvidia/lib64 2>/dev/null | grep -E "libcuda|optix" || true
    "$PY" -c "import torch, mitsuba as mi; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''); print('mitsuba', mi.__version__, mi.variants())"
  } 2>&1 | tee "$OUT/environment.txt"
  touch "$OUT/summary.txt"
}
