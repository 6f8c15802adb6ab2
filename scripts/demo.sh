#!/usr/bin/env bash
# make demo: train a small Multi-AD model on the magnetic-tile normals in the
# shared folder, score the whole test set on Beam's embedded Prism runner,
# and write the reports. About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${MULTIAD_SHARED:-$(cd .. && pwd)/shared}
data="$shared/data/industrial/magnetic_tile"
out=${DEMO_OUT:-demo-out}
[ -d "$data" ] || { echo "demo: $data not found (set MULTIAD_SHARED)" >&2; exit 1; }
mkdir -p "$out"
bin=./bin/multiad
echo "demo: 1/2 training on $data/train/good -> $out/bundle"
$bin train --data "$data" --out "$out/bundle" \
  --size "${DEMO_SIZE:-128}" --epochs "${DEMO_EPOCHS:-6}" --width "${DEMO_WIDTH:-32}" --threads 2
echo "demo: 2/2 scoring $data/test on Prism -> $out/report"
$bin score --model "$out/bundle" --input "$data" --output "$out/report" --overwrite --heatmaps anomalous --threads 2
echo
jq -r '"inputs \(.inputs)  scored \(.scored)  failed \(.failed)  threshold \(.threshold)",
       "image AUROC \(.metrics.image_auroc)  AP \(.metrics.image_ap)  F1-max \(.metrics.image_f1_max)",
       "pixel AUROC \(.metrics.pixel_auroc)  AU-PRO \(.metrics.aupro)"' "$out/report/summary.json" 2>/dev/null || cat "$out/report/summary.json"
echo "demo: report at $(cd "$out/report" && pwd)/report.html"
