#!/usr/bin/env bash
# Fetches the ONNX Runtime 1.24.1 shared library (linux x64) from the npm package
# onnxruntime-node into .cache/onnxruntime and verifies its sha256. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest="$here/.cache/onnxruntime"
lib="$dest/libonnxruntime.so.1"
want=53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4
if [ -f "$lib" ] && echo "$want  $lib" | sha256sum -c --status; then
  exit 0
fi
command -v npm >/dev/null || { echo "setup: npm is needed to fetch onnxruntime-node@1.24.1" >&2; exit 1; }
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "setup: fetching onnxruntime-node@1.24.1 (86 MB) ..." >&2
(cd "$tmp" && npm pack --silent onnxruntime-node@1.24.1 >/dev/null)
tar -xzf "$tmp"/onnxruntime-node-1.24.1.tgz -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
if ! echo "$want  $tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" | sha256sum -c --status; then
  echo "setup: sha256 mismatch for libonnxruntime.so.1 (want $want)" >&2
  exit 1
fi
mv "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib"
echo "setup: ONNX Runtime 1.24.1 at $lib" >&2
