#!/usr/bin/env bash
# Runs every decoder fuzz target for the given time each (default 60s).
set -euo pipefail
t=${1:-60s}
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=$(sed -n 's/^toolchain //p' go.mod)
for pkg in ./io/dicom ./io/nifti ./io/codec/rle ./io/codec/jpegll; do
  for target in $(go test -list 'Fuzz.*' "$pkg" | grep '^Fuzz'); do
    echo "fuzz: $pkg $target for $t"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$t" "$pkg"
  done
done
