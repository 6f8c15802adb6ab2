#!/usr/bin/env bash
# Prints the GOROOT of the Go toolchain the project builds with, making it the
# first time: go.mod's toolchain line (fetched from the Go module proxy by the
# go command), copied into .cache/toolchain/ with the patches in
# scripts/toolchain/ applied. The Makefile and the scripts put its bin/ first
# on PATH, with GOTOOLCHAIN=local.
#
# The one patch, archsimd-partload.patch: Go 1.27.3's simd/archsimd loads a
# slice's tail (LoadFloat32x16Part and the others in slice_gen_amd64.go) by
# loading a whole vector from the slice's start and zeroing the lanes past its
# end, so it reads up to 60 bytes past the slice. GoMLX's pure-Go backend
# loads every tail that way (through the portable simd package); when one of
# its buffers ends where mapped memory ends, training dies with "unexpected
# fault address" (a third of CI runs on 2026-12-07). The patch copies the tail
# into a zeroed array and loads that: same lanes, no read past the slice.
# internal/tailload's test fails on a toolchain without it. Drop the patch once
# the go.mod toolchain loads tails with masked loads.
#
#   scripts/toolchain.sh          print the patched GOROOT (make it if missing)
#   eval "$(scripts/toolchain.sh --env)"   put it first on PATH, with GOROOT and GOTOOLCHAIN=local, in this shell
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
want=$(sed -n 's/^toolchain //p' "$root/go.mod")
[ -n "$want" ] || { echo "toolchain.sh: go.mod has no toolchain line" >&2; exit 1; }
shopt -s nullglob
patches=("$root"/scripts/toolchain/*.patch)
command -v git >/dev/null || { echo "toolchain.sh: needs git (git apply) to patch the toolchain" >&2; exit 1; }
sum=$(cat /dev/null "${patches[@]}" | sha256sum | cut -c1-12) # no patches: the empty input's sum
dst=$root/.cache/toolchain/$want-$sum

if [ ! -f "$dst/.multiad-patched" ]; then
  # The pristine toolchain, fetched by whatever go is on PATH (not a patched
  # copy already there).
  path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v '/\.cache/toolchain/' | paste -sd:)
  src=$(PATH=$path GOTOOLCHAIN=$want go env GOROOT)
  [ -x "$src/bin/go" ] || { echo "toolchain.sh: no go at $src" >&2; exit 1; }
  echo "toolchain.sh: making $dst from $src" >&2
  mkdir -p "$root/.cache/toolchain"
  tmp=$(mktemp -d "$root/.cache/toolchain/.tmp.XXXXXX")
  trap 'find "$tmp" -type d -exec chmod u+w {} + 2>/dev/null; rm -rf "$tmp"' EXIT
  # Hard links where the file system allows (the module cache's files are
  # read-only, so the copy costs no space); a patched file is unlinked and
  # rewritten first, so the module cache's copy is never touched.
  cp -al "$src/." "$tmp/" 2>/dev/null || { find "$tmp" -type d -exec chmod u+w {} +; rm -rf "$tmp"; mkdir "$tmp"; cp -a "$src/." "$tmp/"; }
  # Writable folders (the module cache's are not), so that rm -rf .cache
  # works; the files keep their modes, which they share with the cache's.
  find "$tmp" -type d -exec chmod u+w {} +
  for p in "${patches[@]}"; do
    for f in $(sed -n 's|^+++ b/||p' "$p"); do
      cp --remove-destination "$src/$f" "$tmp/$f"
      chmod u+w "$tmp/$f"
    done
    (cd "$tmp" && GIT_CEILING_DIRECTORIES=$(dirname "$tmp") git apply -p1 "$p") ||
      { echo "toolchain.sh: $p does not apply to $want" >&2; exit 1; }
  done
  echo "$want with ${patches[*]##*/}" >"$tmp/.multiad-patched"
  if ! mv -T "$tmp" "$dst" 2>/dev/null; then
    [ -f "$dst/.multiad-patched" ] || { echo "toolchain.sh: cannot make $dst" >&2; exit 1; }
  fi
  trap - EXIT
  if [ -d "$tmp" ]; then find "$tmp" -type d -exec chmod u+w {} +; rm -rf "$tmp"; fi
fi

if [ "${1:-}" = --env ]; then
  printf 'export PATH=%q:"$PATH" GOROOT=%q GOTOOLCHAIN=local\n' "$dst/bin" "$dst"
else
  echo "$dst"
fi
