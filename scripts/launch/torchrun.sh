#!/usr/bin/env bash
# Pretrain with N processes on one machine: N GPUs (NCCL), or N CPU processes (gloo) without GPUs.
#
#   scripts/launch/torchrun.sh 8 --config scripts/pretrain/3diebench/sie.yaml data.root=/data/3DIEBench
#   scripts/launch/torchrun.sh 8 --resume runs/3diebench_sie          # continue after a stop
#
# Everything after N goes to `equivision pretrain`. data.batch_size stays the GLOBAL batch: each
# process gets batch_size / N (it must divide). BatchNorm layers are synchronised across processes
# and the object order depends only on the seed, so N processes train what one process would.
# Only rank 0 writes the run folder. PYTHON picks the interpreter (default: .venv/bin/python if it
# exists, else python3). OMP_NUM_THREADS defaults to cores / N.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 NPROC --config FILE [key=value ...] | $0 NPROC --resume RUN_DIR" >&2
  exit 2
fi
NPROC="$1"
shift
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
CORES="$(nproc 2>/dev/null || echo 1)"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( CORES / NPROC > 0 ? CORES / NPROC : 1 ))}"
exec "$PYTHON" -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node "$NPROC" \
  -m equivision pretrain "$@"
