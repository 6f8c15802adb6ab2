#!/usr/bin/env bash
# make bench: multiad's benchmarks against baselines measured in the same run.
# Prints each table and its bench.<name>.<figure>=<value> lines, and
# regenerates bench/BENCHMARKS.md. Under 20 minutes on 2 cores (the run
# prints its time; `make bench` must stay under 20 minutes).
#
#   scripts/bench.sh [NAME...]   NAME: scoring heads scaling decode metrics train memory (default: all)
#
# Environment: MULTIAD_SHARED (default ../shared), BENCH_RUNS (default 3),
# BENCH_HEADS_RUNS (default 1: each round scores the tiles once per head),
# BENCH_OUT (work folder, default /tmp/multiad-bench), BENCH_MEMORY_SIZES
# (the stand-in scorer's input sizes, default 1000,10000; 1000,10000,100000
# for the flatness check: the 100k row takes about 5.5-6 minutes on 2 cores,
# and with it a full make bench took 22 minutes, over its 20, so it is not the
# default; sizes whose extrapolated peak RSS passes 40% of memory are
# skipped). bin/multiad must be built (make build).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export GOEXPERIMENT=simd GOMLX_NO_AUTO_INSTALL=1 GOFLAGS=${GOFLAGS:--buildvcs=false}
# The project's Go toolchain, patched (scripts/toolchain.sh), first on PATH.
goenv=$(scripts/toolchain.sh --env)
eval "$goenv"
export MULTIAD_SHARED=${MULTIAD_SHARED:-$(cd .. && pwd)/shared}
shared=$MULTIAD_SHARED
runs=${BENCH_RUNS:-3}
out=${BENCH_OUT:-/tmp/multiad-bench}
bin=${MULTIAD_BIN:-$root/bin/multiad}
tiles=$shared/data/industrial/magnetic_tile
lgg=$shared/data/medical/lgg_dicom/test.csv
all=(scoring heads scaling decode metrics train memory)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${all[@]}")
log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

[ -d "$tiles" ] || { echo "bench: $tiles not found (set MULTIAD_SHARED)" >&2; exit 1; }
[ -x "$bin" ] || { echo "bench: $bin missing: run make build" >&2; exit 1; }

# The Debian reference tools (the python3 on PATH may be a pyenv without them).
need=()
for p in python3-pydicom python3-nibabel python3-numpy python3-scipy python3-sklearn dcmtk; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    log "warning: ${need[*]} missing and not root: their baselines are skipped"
  fi
fi

mkdir -p "$out" bin/bench
log "building the harnesses"
for n in scoring heads stages decode metrics train memory; do
  go build -o "bin/bench/$n" "./bench/cmd/$n"
done

# The scoring benchmarks use bundles trained with `multiad train`'s defaults
# (256 px, the shipped size) on few images and one epoch: speed does not
# depend on accuracy. A 128 px bundle keeps the earlier row for comparison.
bundle=$out/bundle
bundle128=$out/bundle128
cmd_train="$bin train --data $tiles --epochs 1 --max-images 64 --out $bundle"
cmd_train128="$bin train --data $tiles --size 128 --epochs 1 --max-images 64 --out $bundle128"
# The heads benchmark adds a student-only and a fused bundle (each head's
# default bank size) to the default one (the bank head).
cmd_train_student="$bin train --data $tiles --head student --epochs 1 --max-images 64 --out $out/bundle_student"
cmd_train_fused="$bin train --data $tiles --head fused --epochs 1 --max-images 64 --out $out/bundle_fused"
trains=()
for n in "${names[@]}"; do case $n in scoring|scaling|memory|heads) trains=("$cmd_train" "$cmd_train128") ;; esac; done
for n in "${names[@]}"; do if [ "$n" = heads ]; then trains+=("$cmd_train_student" "$cmd_train_fused"); fi; done
if [ ${#trains[@]} -gt 0 ]; then
  for c in "${trains[@]}"; do
    b=${c##* }
    rm -rf "$b"
    log "training a small bundle for the scoring benchmarks: $c"
    $c >"$b.log" 2>&1 || { tail -20 "$b.log" >&2; exit 1; }
  done
fi

declare -A cmds
# The raw loop and the bound time a sample of the files (-max, -bound-max);
# the pipeline always scores the whole input.
sample="-max 160 -bound-max 80"
cmds[scoring]="bin/bench/scoring -name tiles -model $bundle -input $tiles -bin $bin -runs $runs $sample && bin/bench/scoring -name lgg_dicom -model $bundle -input $lgg -bin $bin -runs $runs $sample && bin/bench/scoring -name tiles_128 -model $bundle128 -input $tiles -bin $bin -runs $runs $sample"
cmds[heads]="bin/bench/heads -models student=$out/bundle_student,bank=$bundle,fused=$out/bundle_fused -input $tiles -bin $bin -runs ${BENCH_HEADS_RUNS:-1}"
cmds[scaling]="bin/bench/stages -model $bundle -input $tiles -max 80 -runs $runs -threads 1,2 -batch 1,8"
cmds[decode]="bin/bench/decode -runs $runs -min-secs 0.2"
cmds[metrics]="bin/bench/metrics -runs $runs -maps 256"
cmds[train]="bin/bench/train -runs $runs"
cmds[memory]="bin/bench/memory -bin $bin -model $bundle128 -input $tiles -sizes ${BENCH_MEMORY_SIZES:-1000,10000}"

start=$(date +%s)
for n in "${names[@]}"; do
  [ -n "${cmds[$n]:-}" ] || { echo "bench: unknown benchmark $n (want ${all[*]})" >&2; exit 2; }
  log "== $n: ${cmds[$n]}"
  echo "${cmds[$n]}" >"$out/$n.cmd"
  bash -c "${cmds[$n]}" | tee "$out/$n.md"
done
log "done in $(( $(date +%s) - start )) s"

# bench/BENCHMARKS.md: only a full run rewrites it.
if [ ${#names[@]} -eq ${#all[@]} ]; then
  md=bench/BENCHMARKS.md
  {
    echo "# multiad benchmarks"
    echo
    echo "Regenerated by \`make bench\` (scripts/bench.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
    echo "Every baseline ran in the same run on the same machine; compare ratios, not absolute times (the machine is a shared, noisy box)."
    echo "Figures are medians of $runs runs with (min–max) unless a table says otherwise."
    echo
    echo "## Machine"
    echo
    echo "- CPUs: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
    echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "- load average at the end of the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $(go version | cut -d' ' -f3-), ONNX Runtime $(basename "$(readlink -f .cache/onnxruntime/libonnxruntime.so.1 2>/dev/null || echo libonnxruntime.so.1)"), Debian python3 $(/usr/bin/python3 -c 'import platform; print(platform.python_version())' 2>/dev/null || echo absent)"
    echo
    echo "## Commands"
    echo
    echo '```'
    echo "$cmd_train"
    echo "$cmd_train128"
    echo "$cmd_train_student"
    echo "$cmd_train_fused"
    for n in "${names[@]}"; do cat "$out/$n.cmd"; done
    echo '```'
    echo
    for n in "${names[@]}"; do
      echo "## ${n^}"
      echo
      cat "$out/$n.md"
      if [ -f "bench/readings/$n.md" ]; then cat "bench/readings/$n.md"; echo; fi
    done
  } >"$md"
  log "wrote $md"
fi
