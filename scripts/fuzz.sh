#!/usr/bin/env bash
# Runs every decoder fuzz target for the given time each (default 60s).
set -euo pipefail
t=${1:-60s}
cd "$(dirname "$0")/.."
# The project's Go toolchain, patched (scripts/toolchain.sh), first on PATH.
goenv=$(scripts/toolchain.sh --env)
eval "$goenv"
for pkg in ./io/dicom ./io/nifti ./io/codec/rle ./io/codec/jpegll; do
  for target in $(go test -list 'Fuzz.*' "$pkg" | grep '^Fuzz'); do
    echo "fuzz: $pkg $target for $t"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$t" "$pkg"
  done
done
