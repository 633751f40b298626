#!/usr/bin/env bash
# The LiDAR BEV detection probe on one CUDA GPU and 16 CPU cores in about 6 minutes (H200, measured
# with 600 fine-tuning steps and 0.25 m pillars: render 13 s, pretraining 48 s, probe 281 s; today's
# defaults, 800 steps on 0.5 m pillars, are not timed yet):
#   1. render LiDAR sequences with Mitsuba on the CPU (8 worker processes),
#   2. pretrain the pillar encoder with E-SSL3D on the GPU (scripts/pretrain/lidar/gpu.yaml),
#   3. fine-tune the detector at 5 / 20 / 100 % of the labels, scratch vs pretrained, on the GPU.
#
#   bash scripts/lidar/gpu_detection.sh [OUT]            # OUT defaults to runs/lidar_gpu
#   TINY=1 bash scripts/lidar/gpu_detection.sh /tmp/t    # every command at toy sizes (CPU, ~1 min)
#
# Writes under OUT: data/ (the render), pretrain/lidar_gpu/ (the run folder), detection/results.json
# and results.md (the table), logs/*.log (one per stage) and timings.txt (seconds per stage).
# Re-running resumes the render and skips a finished pretraining.
#
# Environment (all optional): PYTHON (default: the repository's .venv/bin/python if it exists, else
# python3), VARIANT (a Mitsuba variant; default: the first of
# cuda_ad_rgb, llvm_ad_rgb, scalar_rgb that casts a ray here), WORKERS (8), DEVICE (auto: cuda if
# there is one), SEQUENCES, FRAMES, BEAMS, AZIMUTH, PRE_STEPS, PRE_BATCH, DET_STEPS, DET_BATCH,
# DET_LR, FRACTIONS. Mitsuba must be importable by PYTHON (pip install mitsuba, or PYTHONPATH).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-runs/lidar_gpu}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT"  # `python -m equivision` works from the repository without installing it
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi
EQ=("$PY" -m equivision)
mkdir -p "$OUT/logs"
: >"$OUT/timings.txt"

if [[ "${TINY:-0}" == 1 ]]; then
  : "${SEQUENCES:=2}" "${FRAMES:=3}" "${BEAMS:=8}" "${AZIMUTH:=128}" "${WORKERS:=2}"
  : "${PRE_STEPS:=2}" "${PRE_BATCH:=2}" "${DET_STEPS:=2}" "${DET_BATCH:=2}" "${FRACTIONS:=0.5,1}"
  SCENE=(--objects 3-4 --area-radius 10)
  PRE_EXTRA=(encoder.backbone=test_resnet encoder.x_range=[-16,16] encoder.y_range=[-16,16]
    encoder.pillar_size=0.5 data.workers=0 method.num_points=64 log_every=1 checkpoint_every=1)
else
  # 1600 frames of 32 beams x 1024 azimuth steps (~27k points each): about 50 s on 8 worker processes
  # with the scalar variant (0.22 s per frame and core, measured on a 2-core CPU), less with cuda.
  : "${SEQUENCES:=160}" "${FRAMES:=10}" "${BEAMS:=32}" "${AZIMUTH:=1024}" "${WORKERS:=8}"
  : "${PRE_STEPS:=300}" "${PRE_BATCH:=16}" "${DET_STEPS:=800}" "${DET_BATCH:=8}" "${FRACTIONS:=0.05,0.2,1}"
  SCENE=(--objects 10-18 --area-radius 30)
  PRE_EXTRA=()
fi
DEVICE="${DEVICE:-auto}"
DET_LR="${DET_LR:-4e-3}"

stamp() { date +%s; }
record() { echo "$1 $(($(stamp) - $2))" | tee -a "$OUT/timings.txt"; }
T0=$(stamp)

# --- which Mitsuba variant renders here: set it, then cast one ray at a triangle ---------------------
if [[ -z "${VARIANT:-}" ]]; then
  VARIANT=$("$PY" - <<'EOF'
import os, sys
import numpy as np
from equivision.renderers.variants import find_libllvm
lib = find_libllvm()
if lib:
    os.environ.setdefault("DRJIT_LIBLLVM_PATH", lib)
import mitsuba as mi
for v in ("cuda_ad_rgb", "llvm_ad_rgb", "scalar_rgb"):
    if v not in mi.variants() or (v.startswith("llvm") and not lib):
        continue
    try:
        mi.set_variant(v)
        mesh = mi.Mesh("t", 3, 1, props=mi.Properties())
        p = mi.traverse(mesh)
        p["vertex_positions"] = type(p["vertex_positions"])([0.0, -1, -1, 0, 1, -1, 0, 0, 1])
        p["faces"] = type(p["faces"])([0, 1, 2])
        p.update()
        scene = mi.load_dict({"type": "scene", "m": mesh})
        si = scene.ray_intersect(mi.Ray3f(mi.Point3f(-1, 0, 0), mi.Vector3f(1, 0, 0)))
        if np.asarray(si.is_valid(), dtype=bool).any() and abs(float(np.asarray(si.t).ravel()[0]) - 1) < 1e-4:
            print(v)
            sys.exit(0)
    except Exception as e:  # noqa: BLE001 - any failure: try the next variant
        print(f"{v}: {e}", file=sys.stderr)
sys.exit("no Mitsuba variant can cast rays here")
EOF
)
fi
echo "Mitsuba variant: $VARIANT" | tee "$OUT/logs/variant.log"

# --- 1. render ---------------------------------------------------------------------------------------
T=$(stamp)
"${EQ[@]}" render lidar --out "$OUT/data" --sequences "$SEQUENCES" --frames "$FRAMES" --beams "$BEAMS" \
  --azimuth-steps "$AZIMUTH" --classes car,bench,table "${SCENE[@]}" --variant "$VARIANT" \
  --workers "$WORKERS" --no-progress 2>&1 | tee "$OUT/logs/render.log"
record render "$T"

# --- 2. pretrain -------------------------------------------------------------------------------------
T=$(stamp)
"${EQ[@]}" lidar pretrain --config scripts/pretrain/lidar/gpu.yaml data.root="$OUT/data" \
  out_dir="$OUT/pretrain" device="$DEVICE" max_steps="$PRE_STEPS" data.batch_size="$PRE_BATCH" \
  "${PRE_EXTRA[@]}" 2>&1 | tee "$OUT/logs/pretrain.log" | grep -v 'it/s]' || true
[[ -f "$OUT/pretrain/lidar_gpu/checkpoints/backbone.json" ]] || { echo "pretraining failed: see $OUT/logs/pretrain.log"; exit 1; }
record pretrain "$T"

# --- 3. detection probe ------------------------------------------------------------------------------
T=$(stamp)
"${EQ[@]}" lidar detect --data "$OUT/data" --pretrained "$OUT/pretrain/lidar_gpu" --fractions "$FRACTIONS" \
  --steps "$DET_STEPS" --batch-size "$DET_BATCH" --lr "$DET_LR" --device "$DEVICE" \
  --out "$OUT/detection" 2>&1 | tee "$OUT/logs/detect.log" | grep -v 'it/s]' || true
[[ -f "$OUT/detection/results.md" ]] || { echo "detection failed: see $OUT/logs/detect.log"; exit 1; }
record detect "$T"
record total "$T0"
echo "results: $OUT/detection/results.md"
