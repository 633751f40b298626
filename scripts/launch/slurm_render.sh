#!/usr/bin/env bash
# Render a 3DIEBench-style dataset as a Slurm job array: one shard per array task.
# Every view depends only on (seed, object, view), so shards can run in any order, be re-queued
# or re-run after a failure, and the result is byte-identical to a single-machine render. The
# last shard to finish writes manifest.json and the split files.
#
#   sbatch --array=0-11 scripts/launch/slurm_render.sh /data/shapenet/ShapeNetCore.v2 /data/3diebench
#   (set NUM_SHARDS to the array size; add --translation for 3DIEBench-T)
#
#SBATCH --job-name=equivision-render
#SBATCH --cpus-per-task=8
#SBATCH --gres=gpu:1
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --output=render-%A_%a.log
set -euo pipefail
SOURCE_ROOT="${1:?ShapeNetCore v2 folder}"
OUT="${2:?output folder}"
shift 2
NUM_SHARDS="${NUM_SHARDS:-${SLURM_ARRAY_TASK_COUNT:-12}}"
SHARD="${SLURM_ARRAY_TASK_ID:-0}"

.venv/bin/equivision render iebench \
  --source shapenet --source-root "$SOURCE_ROOT" --out "$OUT" \
  --views 50 --resolution 256 --seed 0 \
  --shard "$SHARD" --num-shards "$NUM_SHARDS" --no-progress "$@"
