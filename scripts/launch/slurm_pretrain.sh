#!/usr/bin/env bash
# Slurm example: SIE on 3DIEBench on 1 node x 8 GPUs (the SIE paper: batch 1024 = 8 x 128), with
# automatic requeue. Adapt the #SBATCH lines to your cluster, then:
#
#   sbatch scripts/launch/slurm_pretrain.sh scripts/pretrain/3diebench/sie.yaml data.root=/data/3DIEBench
#
# How stopping works: Slurm sends SIGUSR1 to this script 5 minutes before the time limit (or on
# preemption, SIGTERM); the trap forwards SIGTERM to torchrun, which passes it to the workers; they
# finish the current step, write checkpoints/last.pt and exit; the script requeues the job. The
# requeued job runs the same command with --resume and continues exactly where it stopped
# (a run folder without a checkpoint simply starts). Several nodes: set --nodes and replace
# --standalone by a c10d rendezvous on the first node (shown below, commented out).
#SBATCH --job-name=equivision-pretrain
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=80
#SBATCH --time=72:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail
CONFIG="${1:?usage: sbatch $0 CONFIG.yaml [key=value ...]}"
shift
ROOT="${SLURM_SUBMIT_DIR:-$(pwd)}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
NPROC="${SLURM_GPUS_ON_NODE:-8}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( ${SLURM_CPUS_PER_TASK:-8} / NPROC ))}"

requeue() {
  echo "slurm_pretrain: signal received, asking the workers to checkpoint and stop"
  kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" || true
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
}
trap requeue USR1 TERM

cd "$ROOT"
srun --kill-on-bad-exit=1 "$PYTHON" -m torch.distributed.run \
  --standalone --nnodes 1 --nproc_per_node "$NPROC" \
  -m equivision pretrain --config "$CONFIG" --resume "$@" &
# several nodes instead of --standalone:
#   HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
#   --nnodes "$SLURM_NNODES" --rdzv_backend c10d --rdzv_endpoint "$HEAD:29500" --rdzv_id "$SLURM_JOB_ID"
PID=$!
wait "$PID"
