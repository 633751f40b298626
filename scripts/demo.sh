#!/usr/bin/env bash
# `make demo`: the main job on the embedded default data, on a quiet 2-core CPU in about 5 minutes:
# render the mini dataset -> check it -> contact sheet -> pretrain SIE and VICReg -> probe both ->
# print one results table and write the plots. Every step resumes if re-run.
# Sizes can be changed through the environment (DEMO_OBJECTS, DEMO_VIEWS, DEMO_RES, DEMO_EPOCHS,
# DEMO_BATCH, DEMO_PROBE_EPOCHS). DEMO_BATCH (objects per step, default 64) must not exceed the
# training objects (the render's last line gives them; 150 by default), and the probes' held-out
# learning-rate search needs a class with 2 training objects (DEMO_OBJECTS=2 is too few). A toy run (about 1-2 minutes):
#   DEMO_OBJECTS=4 DEMO_VIEWS=4 DEMO_RES=32 DEMO_EPOCHS=1 DEMO_BATCH=8 DEMO_PROBE_EPOCHS=2 make demo
# DEMO_RENDER_ONLY=1 stops after the data and its contact sheet; DEMO_DIR is the output folder.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT="${DEMO_DIR:-demo_out}"
OBJECTS="${DEMO_OBJECTS:-12}"      # per class (15 procedural classes)
VIEWS="${DEMO_VIEWS:-8}"           # per object
RES="${DEMO_RES:-64}"
EPOCHS="${DEMO_EPOCHS:-25}"
BATCH="${DEMO_BATCH:-64}"          # objects per optimiser step (the recipes' batch)
PROBE_EPOCHS="${DEMO_PROBE_EPOCHS:-50}"
DATA="$OUT/data"
mkdir -p "$OUT"
t0=$(date +%s)

echo "== 1/5 render the embedded mini dataset ($OBJECTS objects x 15 classes x $VIEWS views, ${RES}px)"
$BIN/equivision render iebench --out "$DATA" --objects-per-class "$OBJECTS" --views "$VIEWS" \
  --resolution "$RES" --spp 25 --refine none --seed 0

echo "== 2/5 check it and draw its contact sheet"
$BIN/equivision data check "$DATA"
$BIN/equivision render preview "$DATA" --out "$OUT/preview.png" --objects 15 --views 8

if [ "${DEMO_RENDER_ONLY:-0}" = "1" ]; then
  echo "DEMO_RENDER_ONLY=1: stopping after the data"; exit 0
fi

for m in sie vicreg; do
  echo "== 3/5 pretrain $m ($EPOCHS epochs)"
  # the same command resumes an interrupted run, says "nothing to do" for a finished one, and refuses
  # a run folder trained with other sizes (use another DEMO_DIR), so a finished run is never reused
  # silently under another budget
  $BIN/equivision pretrain --config "scripts/pretrain/mini/$m.yaml" \
    data.root="$DATA" data.image_size="$RES" data.batch_size="$BATCH" epochs="$EPOCHS" \
    out_dir="$OUT/runs" run_name="mini_$m"
done

for m in sie vicreg; do
  echo "== 4/5 probe $m"
  $BIN/equivision probe run --checkpoint "$OUT/runs/mini_$m" --data "$DATA" --epochs "$PROBE_EPOCHS" \
    --out "$OUT/probes/$m"
done

echo "== 5/5 results"
$BIN/equivision probe compare "$OUT/probes/sie/results.json" "$OUT/probes/vicreg/results.json" --names SIE,VICReg --out "$OUT/compare"
t1=$(date +%s)
cat <<MSG

demo finished in $((t1 - t0)) s. Where everything is:
  dataset          $DATA  (manifest.json, split files, <class>/<object>/image_i.jpg + latent_i.npy)
  contact sheet    $OUT/preview.png
  pretraining runs $OUT/runs/mini_sie, $OUT/runs/mini_vicreg  (config.yaml, metrics.jsonl, checkpoints/, report/)
  probe results    $OUT/probes/{sie,vicreg}/  (results.json, results.md, plots/*.png)
  comparison       $OUT/compare/
MSG
