#!/usr/bin/env bash
# Installs the C libraries multiad links against (CharLS for JPEG-LS and
# OpenJPEG for JPEG 2000 DICOM, libdeflate for .nii.gz), from Debian's
# packages, when missing. Set MULTIAD_SKIP_APT=1 to skip (then build with
# -tags multiad_nocgo: those two transfer syntaxes report "unsupported" and
# .nii.gz inflates with the slower pure-Go klauspost/compress).
set -euo pipefail
[ "${MULTIAD_SKIP_APT:-0}" = 1 ] && exit 0
need=()
for p in libcharls-dev libopenjp2-7-dev libdeflate-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "setup: please install ${need[*]} (apt-get install ${need[*]}), or set MULTIAD_SKIP_APT=1 and build with -tags multiad_nocgo" >&2
  exit 1
fi
echo "setup: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
