#!/usr/bin/env bash
# Starts or stops a throw-away Orthanc PACS with the DICOMweb plugin, for
# the DICOMweb integration tests (io/dicomweb, transforms/dicomout).
#
#   scripts/orthanc.sh start   # prints the Orthanc URL (DICOMweb under /dicom-web); waits until /system answers
#   scripts/orthanc.sh stop    # stops it and deletes its storage
#   scripts/orthanc.sh url     # prints the URL the tests use (MULTIAD_ORTHANC_URL)
#
# It runs as the current user with its configuration and storage in
# $MULTIAD_ORTHANC_DIR (default /tmp/multiad-orthanc-$UID), HTTP on port
# $MULTIAD_ORTHANC_PORT (default 8042) for loopback clients only
# (RemoteAccessAllowed false: Orthanc 1.10 has no bind-address option, so
# it listens on every interface but refuses any client not on loopback),
# no authentication, no DICOM (DIMSE) port. Needs Debian's orthanc and
# orthanc-dicomweb packages.
set -euo pipefail
dir=${MULTIAD_ORTHANC_DIR:-/tmp/multiad-orthanc-$(id -u)}
port=${MULTIAD_ORTHANC_PORT:-8042}
url="http://127.0.0.1:$port"

# up: Orthanc answers, with the DICOMweb plugin.
up() { curl -fsS -m 2 "$url/system" >/dev/null 2>&1 && curl -fsS -m 2 "$url/dicom-web/studies?limit=1" >/dev/null 2>&1; }

case "${1:-}" in
start)
  if up; then
    echo "orthanc: already answering at $url (with DICOMweb)" >&2
    echo "$url"
    exit 0
  fi
  bin=$(command -v Orthanc || true)
  [ -z "$bin" ] && [ -x /usr/sbin/Orthanc ] && bin=/usr/sbin/Orthanc
  plugin=$(dpkg -L orthanc-dicomweb 2>/dev/null | grep -E '/libOrthancDicomWeb\.so[.0-9]*$' | head -1 || true)
  if [ -z "$bin" ] || [ -z "$plugin" ]; then
    echo "orthanc: install the packages first: apt-get install -y orthanc orthanc-dicomweb" >&2
    exit 1
  fi
  mkdir -p "$dir/db"
  cat >"$dir/orthanc.json" <<JSON
{
  "Name": "multiad-test",
  "StorageDirectory": "$dir/db",
  "IndexDirectory": "$dir/db",
  "HttpPort": $port,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": false,
  "SaveJobs": false,
  "StorageCompression": false,
  "Plugins": ["$plugin"],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/", "EnableWado": false }
}
JSON
  nohup "$bin" "$dir/orthanc.json" >"$dir/orthanc.log" 2>&1 &
  echo $! >"$dir/orthanc.pid"
  for _ in $(seq 1 150); do
    if up; then
      echo "orthanc: started (pid $(cat "$dir/orthanc.pid"), log $dir/orthanc.log)" >&2
      echo "$url"
      exit 0
    fi
    if ! kill -0 "$(cat "$dir/orthanc.pid")" 2>/dev/null; then
      echo "orthanc: exited during start-up; log:" >&2
      tail -20 "$dir/orthanc.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "orthanc: no answer from $url/system after 30 s; log:" >&2
  tail -20 "$dir/orthanc.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/orthanc.pid" ]; then
    pid=$(cat "$dir/orthanc.pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$dir"
  ;;
url)
  echo "$url"
  ;;
*)
  echo "usage: $0 start|stop|url" >&2
  exit 2
  ;;
esac
