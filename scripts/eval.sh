#!/usr/bin/env bash
# make eval: train and evaluate Multi-AD on the two real datasets in the
# shared folder and print the accuracy table (image AUROC, pixel AUROC,
# AU-PRO). The two trainings run in parallel (GoMLX's pure-Go backend uses
# about one core each). `make ablation` (--ablation) repeats it without SE,
# without the discriminator, with hard-feature mining switched (off for the
# tiles, on for lgg_flair: the opposite of --hard-mining auto), with fusion
# switched (product for the tiles, sum for lgg_flair), with feature pooling
# switched (none for the tiles, the tiles' default for lgg_flair: the shell
# formula mirrors training.DefaultFeaturePool, checked by TestEvalScriptPool) and with
# random shifts of up to size/32 pixels, with the MobileNet EdgeTPU teacher and with plain bilinear resizing. At 256 px the ablation takes about 3
# hours on 2 cores; EVAL_SIZE=128 EVAL_OUT=out/ablation128 make ablation about 40 min.
# Without EVAL_* settings every training runs with exactly `multiad train`'s
# defaults (the shipped model: 256 px, 7 epochs, the auto choices).
#   EVAL_EPOCHS, EVAL_SIZE (override the defaults), EVAL_OUT (out/eval), EVAL_ARGS (extra train flags),
#   EVAL_ONLY (variant names to run, e.g. "no-se shift")
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${MULTIAD_SHARED:-$(cd .. && pwd)/shared}
out=${EVAL_OUT:-out/eval}
# Flags only where overridden; size is the default model size (256) where
# a variant's formula needs it.
shape=()
[ -n "${EVAL_SIZE:-}" ] && shape+=(--size "$EVAL_SIZE")
[ -n "${EVAL_EPOCHS:-}" ] && shape+=(--epochs "$EVAL_EPOCHS")
size=${EVAL_SIZE:-256}
bin=./bin/multiad
tiles="$shared/data/industrial/magnetic_tile"
lgg="$shared/data/medical/lgg_flair"
# name:args for both datasets[:extra tiles args:extra lgg_flair args]
variants=("multiad:")
if [ "${1:-}" = --ablation ]; then
  variants=("multiad:" "no-se:--se-reduction 0" "no-disc:--adv-weight 0" "hard-switched::--hard-mining 0:--hard-mining 2.5"
    "fusion-switched::--fusion product:--fusion sum"
    "pool-switched::--feature-pool 1,1,1:--feature-pool 1,$((2 * ((2 * size + 128) / 256) + 1)),1" "shift:--shift $((size / 32))")
  # Teacher, head and resize (issue 17): the teacher that auto does not
  # pick (training.AutoTeacher: EdgeTPU for the tiles, MobileNetV2 for
  # lgg_flair), each head (training.AutoHead picks bank for the tiles and
  # fused for lgg_flair, so one of the three repeats the default) and
  # plain bilinear resizing instead of the antialiased default. The student variants above (no-se ... shift) only
  # change a student, so they run with --head student.
  variants=("${variants[0]}" "student:--head student" "no-se:--head student --se-reduction 0" "no-disc:--head student --adv-weight 0"
    "hard-switched:--head student:--hard-mining 0:--hard-mining 2.5" "fusion-switched:--head student:--fusion product:--fusion sum"
    "pool-switched:--head student:--feature-pool 1,1,1:--feature-pool 1,$((2 * ((2 * size + 128) / 256) + 1)),1"
    "shift:--head student --shift $((size / 32))"
    "teacher-switched::--teacher mobilenet_v2:--teacher mobilenet_edgetpu" "bank:--head bank" "fused:--head fused" "resize-bilinear:--resize bilinear")
fi
# EVAL_ONLY="name ..." keeps only these variants.
if [ -n "${EVAL_ONLY:-}" ]; then
  kept=()
  for v in "${variants[@]}"; do
    case " $EVAL_ONLY " in *" ${v%%:*} "*) kept+=("$v") ;; esac
  done
  variants=("${kept[@]}")
fi
mkdir -p "$out"
start=$(date +%s)
for v in "${variants[@]}"; do
  IFS=: read -r name extra tiles_extra lgg_extra <<<"$v"
  mkdir -p "$out/$name"
  # The fused head trains the same student as the student variant (same
  # seed and flags): it starts from that variant's finished checkpoint
  # (train --checkpoint re-exports a finished run without training) and
  # only builds its bank. Checkpoints of earlier runs are never resumed.
  rm -f "$out/$name/tiles.ckpt" "$out/$name/lgg.ckpt"
  if [ "$name" = fused ] && [ -n "${student_ran:-}" ]; then
    for d in tiles lgg; do
      if [ -f "$out/student/$d.ckpt" ]; then
        cp "$out/student/$d.ckpt" "$out/fused/$d.ckpt"
        echo "eval: [fused] $d: starting from the student variant's checkpoint $out/student/$d.ckpt"
      fi
    done
  fi
  echo "eval: [$name] training on tiles and lgg_flair (${shape[*]:-the shipped train defaults}) ..."
  $bin train --data "$tiles" --out "$out/$name/tiles.bundle" --checkpoint "$out/$name/tiles.ckpt" "${shape[@]}" --threads 1 $extra ${tiles_extra:-} ${EVAL_ARGS:-} > "$out/$name/tiles.train.log" 2>&1 &
  p1=$!
  $bin train --data "$lgg/train.csv" --out "$out/$name/lgg.bundle" --checkpoint "$out/$name/lgg.ckpt" "${shape[@]}" --threads 1 $extra ${lgg_extra:-} ${EVAL_ARGS:-} > "$out/$name/lgg.train.log" 2>&1 &
  p2=$!
  while kill -0 $p1 2>/dev/null || kill -0 $p2 2>/dev/null; do
    sleep 30
    echo "eval: [$name] $(( $(date +%s) - start ))s | tiles: $(tail -c 200 "$out/$name/tiles.train.log" | tr '\r' '\n' | tail -1) | lgg: $(tail -c 200 "$out/$name/lgg.train.log" | tr '\r' '\n' | tail -1)"
  done
  wait $p1 || { cat "$out/$name/tiles.train.log"; exit 1; }
  wait $p2 || { cat "$out/$name/lgg.train.log"; exit 1; }
  [ "$name" = student ] && student_ran=1
  echo "eval: [$name] scoring the test sets on Prism ..."
  $bin score --model "$out/$name/tiles.bundle" --input "$tiles" --output "$out/$name/tiles" --overwrite --heatmaps none --threads 2 > "$out/$name/tiles.score.log" 2>&1
  $bin score --model "$out/$name/lgg.bundle" --input "$lgg/test.csv" --output "$out/$name/lgg" --overwrite --heatmaps none --threads 2 > "$out/$name/lgg.score.log" 2>&1
done
echo
echo "| variant | dataset | images | image AUROC | pixel AUROC | AU-PRO | image AP | F1-max |"
echo "|---|---|---|---|---|---|---|---|"
for v in "${variants[@]}"; do
  name=${v%%:*}
  for d in tiles lgg; do
    jq -r --arg v "$name" --arg d "$d" '"| \($v) | \($d) | \(.scored) | \(.metrics.image_auroc // "-" | tostring | .[0:6]) | \(.metrics.pixel_auroc // "-" | tostring | .[0:6]) | \(.metrics.aupro // "-" | tostring | .[0:6]) | \(.metrics.image_ap // "-" | tostring | .[0:6]) | \(.metrics.image_f1_max // "-" | tostring | .[0:6]) |"' "$out/$name/$d/summary.json"
  done
done
echo
echo "eval: done in $(( $(date +%s) - start ))s; outputs in $out"
