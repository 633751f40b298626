#!/usr/bin/env bash
# VICReg, SIE, EquiCaps and seq-JEPA on the same embedded mini dataset with equal budgets, probed the
# same way; writes one table and an invariance-vs-equivariance scatter (as in the papers).
#
#   scripts/compare_mini.sh                                # render a mini dataset, then everything
#   COMPARE_DATA=/path/to/rendered scripts/compare_mini.sh # reuse a dataset in the 3DIEBench layout
#
# Equal budget: every method gets the same data (same split, image size), seed, backbone (timm
# resnet18, standard stem), number of epochs and batch of OBJECTS per step (data.batch_size), so the
# same number of optimiser steps over the same objects. Per object, VICReg/SIE/EquiCaps encode 2 views
# and seq-JEPA 3 observed + 1 target view (its M_train + 1 = 4; the target only through the EMA
# encoder, without gradients). Everything else (optimiser, schedule, loss weights) is each recipe's
# own (scripts/pretrain/mini/<method>.yaml).
#
# Probes: the frozen backbone (pooled output; SIE's halves too) for all four; EquiCaps' capsule
# activations (emb_inv) and poses (emb_equi) too; seq-JEPA's aggregate z_AGG of M_val views
# (linear_agg_M<M_val>). Retrieval (PRE/MRR) where a method has a predictor (SIE; seq-JEPA against a
# bank of target-encoder embeddings). The summary's top-1 is seq-JEPA's aggregate at its training
# length (M_val = M_train = 3, as in its paper) and the single-view backbone output for the others;
# the full table has linear/full for every method. Every step resumes or is skipped if re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
OUT="${COMPARE_DIR:-compare_out}"
DATA="${COMPARE_DATA:-$OUT/data}"       # an existing dataset folder is reused as it is
OBJECTS="${COMPARE_OBJECTS:-8}"         # per class (15 procedural classes), when rendering
VIEWS="${COMPARE_VIEWS:-6}"             # per object, when rendering (>= 5 for --agg-views 1,3,5)
RES="${COMPARE_RES:-64}"
EPOCHS="${COMPARE_EPOCHS:-10}"
BATCH="${COMPARE_BATCH:-32}"            # objects per optimiser step, for every method
PROBE_EPOCHS="${COMPARE_PROBE_EPOCHS:-100}"
LR_GRID="${COMPARE_LR_GRID:-3e-4,1e-3,3e-3}"   # one value (e.g. 1e-3, official) skips the held-out search
AGG_VIEWS="${COMPARE_AGG_VIEWS:-1,3,5}"
WORKERS="${COMPARE_WORKERS:-2}"
METHODS=(vicreg sie equicaps seqjepa)
NAMES="VICReg,SIE,EquiCaps,seq-JEPA"
t0=$(date +%s)
mkdir -p "$OUT"

if [ -f "$DATA/manifest.json" ] || [ -f "$DATA/train_images.npy" ]; then
  echo "== 1/4 reuse the dataset in $DATA"
else
  echo "== 1/4 render the mini dataset ($OBJECTS objects x 15 classes x $VIEWS views, ${RES}px)"
  $BIN/equivision render iebench --out "$DATA" --objects-per-class "$OBJECTS" --views "$VIEWS" \
    --resolution "$RES" --spp 25 --refine none --seed 0
fi

budget=(data.root="$DATA" data.image_size="$RES" data.batch_size="$BATCH" data.workers="$WORKERS"
        epochs="$EPOCHS" seed=0 checkpoint_every=5 out_dir="$OUT/runs")
for m in "${METHODS[@]}"; do
  echo "== 2/4 pretrain $m ($EPOCHS epochs, $BATCH objects per step)"
  run="$OUT/runs/mini_$m"
  if [ -f "$run/checkpoints/backbone.safetensors" ]; then
    # equal budgets: a finished run from another budget must not be reused silently
    done_as=$($BIN/python -c 'import json, sys; r = json.load(open(sys.argv[1])); c = r["config"]
print(r["epochs"], c["data"]["batch_size"], r["input_size"])' "$run/checkpoints/backbone.json")
    if [ "$done_as" != "$EPOCHS $BATCH $RES" ]; then
      echo "error: $run was trained with (epochs batch res) = ($done_as), not ($EPOCHS $BATCH $RES);" \
        "use another COMPARE_DIR" >&2
      exit 1
    fi
    echo "already trained: $run"
    continue
  fi
  resume=()
  [ -f "$run/checkpoints/last.pt" ] && resume=(--resume "$run")
  own=()  # EquiCaps' routing kernel is the whole feature map: resnet18's stride 32, rounded up
  [ "$m" = equicaps ] && own=(method.map_size=$(( (RES + 31) / 32 )))
  $BIN/equivision pretrain --config "scripts/pretrain/mini/$m.yaml" "${resume[@]}" "${budget[@]}" "${own[@]}" \
    run_name="mini_$m"
done

for m in "${METHODS[@]}"; do
  echo "== 3/4 probe $m"
  extra=()
  case "$m" in
    equicaps) extra=(--method-features emb_inv,emb_equi) ;;
    seqjepa) extra=(--agg-views "$AGG_VIEWS") ;;
  esac
  if [ -f "$OUT/probes/$m/results.json" ] && [ "${COMPARE_REPROBE:-0}" != "1" ]; then
    echo "already probed: $OUT/probes/$m (COMPARE_REPROBE=1 to redo)"
    continue
  fi
  $BIN/equivision probe run --checkpoint "$OUT/runs/mini_$m" --data "$DATA" --epochs "$PROBE_EPOCHS" \
    --lr-grid "$LR_GRID" --workers "$WORKERS" --cache-dir "$OUT/cache" --out "$OUT/probes/$m" "${extra[@]}"
done

echo "== 4/4 compare"
results=()
for m in "${METHODS[@]}"; do results+=("$OUT/probes/$m/results.json"); done
$BIN/equivision probe compare "${results[@]}" --names "$NAMES" --summary \
  --top1 linear_agg_M3,linear/full --scatter "$OUT/compare/invariance_vs_equivariance.png" --out "$OUT/compare"
t1=$(date +%s)
cat <<MSG

comparison finished in $((t1 - t0)) s (budget: $EPOCHS epochs x batch $BATCH objects, ${RES}px, seed 0;
probes: $PROBE_EPOCHS epochs, lr grid $LR_GRID).
  dataset      $DATA
  runs         $OUT/runs/mini_{vicreg,sie,equicaps,seqjepa}
  probes       $OUT/probes/<method>/  (results.json, results.md, plots/)
  table        $OUT/compare/compare.md
  scatter      $OUT/compare/invariance_vs_equivariance.png
MSG
