#!/usr/bin/env bash
# Builds the multiad Dataflow Flex Template: the linux/amd64 binary, the
# container image (launcher + Beam worker, templates/Dockerfile or
# templates/Dockerfile.gpu), and the template spec in Cloud Storage.
#
#   scripts/template.sh            build, push, write gs://$BUCKET/templates/...
#   scripts/template.sh --dry-run  build the binary and context, print the
#                                  docker/gcloud commands instead of running them
#
# Before building the image it runs the Go tests of the template
# (go test -run '^TestTemplate' ./cmd/multiad: the binary's ELF and glibc
# needs, the Dockerfiles' COPY lines and environment, the entry point) on
# the binary it is about to push; they also run in `make test`.
#
# Environment:
#   PROJECT        Google Cloud project (default: gcloud config get-value project)
#   REGION         Artifact Registry and Dataflow region (default us-central1)
#   BUCKET         bucket for the template spec, staging and temp files (no gs://)
#   REPOSITORY     Artifact Registry Docker repository (default multiad)
#   TAG            image tag (default: git short hash, else "latest")
#   GPU            0: CPU image (templates/Dockerfile); 1: CUDA image (templates/Dockerfile.gpu)
#   IMAGE          full image name (default $REGION-docker.pkg.dev/$PROJECT/$REPOSITORY/multiad[-gpu]:$TAG)
#   TEMPLATE       template spec (default gs://$BUCKET/templates/multiad-score[-gpu].json)
#   MACHINE_TYPE   default worker machine type in the spec (default: n1-standard-2, or g2-standard-4 with GPU=1)
#   BUILDER        docker (local engine, then docker push) or cloudbuild (gcloud builds submit);
#                  default: docker when `docker info` works, else cloudbuild
#   ORT_GPU_URL    GPU=1: ONNX Runtime GPU package (default: GitHub release onnxruntime-linux-x64-gpu-1.24.1.tgz)
#   ORT_GPU_SHA256 GPU=1: its sha256 (required; "skip" builds without checking)
#   MULTIAD_BIN    use this prebuilt linux/amd64 multiad instead of building one
#   GO             go command (default go); CC for cgo when not on linux/amd64
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# The Go toolchain go.mod names, fetched by the go command if missing and
# patched by scripts/toolchain.sh, first on PATH.
goenv=$(scripts/toolchain.sh --env)
eval "$goenv"

dry=0
case "${1:-}" in
  --dry-run) dry=1 ;;
  "") ;;
  -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
  *) echo "template: unknown argument $1 (want --dry-run or nothing)" >&2; exit 2 ;;
esac
# run CMD...: runs a cloud or Docker command, or prints it with --dry-run.
run() {
  if [ "$dry" = 1 ]; then printf '+'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}

GPU=${GPU:-0}
GO=${GO:-go}
REGION=${REGION:-us-central1}
REPOSITORY=${REPOSITORY:-multiad}
case "$GPU" in
  0) dockerfile=templates/Dockerfile; suffix=""; MACHINE_TYPE=${MACHINE_TYPE:-n1-standard-2} ;;
  1) dockerfile=templates/Dockerfile.gpu; suffix="-gpu"; MACHINE_TYPE=${MACHINE_TYPE:-g2-standard-4} ;;
  *) echo "template: GPU=$GPU: want 0 or 1" >&2; exit 2 ;;
esac
die() { echo "template: $*" >&2; exit 1; }
note() { echo "template: $*" >&2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# build_binary OUT: the linux/amd64 multiad with cgo (ONNX Runtime bindings).
build_binary() {
  local out=$1
  if [ -n "${MULTIAD_BIN:-}" ]; then
    [ -f "$MULTIAD_BIN" ] || die "MULTIAD_BIN=$MULTIAD_BIN does not exist"
    mkdir -p "$(dirname "$out")"
    cp "$MULTIAD_BIN" "$out"
    return
  fi
  local host
  host=$("$GO" env GOOS)/$("$GO" env GOARCH)
  if [ "$host" != linux/amd64 ] && [ -z "${CC:-}" ]; then
    die "building on $host: set CC to a linux/amd64 C cross-compiler (e.g. CC=x86_64-linux-gnu-gcc or 'zig cc -target x86_64-linux-gnu.2.34')"
  fi
  note "building linux/amd64 multiad (CGO_ENABLED=1) into $out"
  GOOS=linux GOARCH=amd64 CGO_ENABLED=1 GOEXPERIMENT=simd GOFLAGS=-buildvcs=false \
    "$GO" build -ldflags="-s -w" -o "$out" ./cmd/multiad
}

# check_template BIN: the Go tests of the template (cmd/multiad/template_test.go)
# on BIN, the binary about to be pushed.
check_template() {
  MULTIAD_TEMPLATE_BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") GOEXPERIMENT=simd GOFLAGS=-buildvcs=false \
    run "$GO" test -count=1 -run '^TestTemplate' ./cmd/multiad
}

# stage_context DIR BIN: the Docker build context: the binary at
# bin/linux_amd64/multiad and the scripts and templates folders
# (TestTemplateDockerfiles checks that the COPY lines need nothing else).
stage_context() {
  local ctx=$1 bin=$2
  mkdir -p "$ctx/bin/linux_amd64"
  cp "$bin" "$ctx/bin/linux_amd64/multiad"
  cp -R scripts templates "$ctx/"
}

# --- build, push and write the template ---
[ "$dry" = 1 ] || command -v gcloud >/dev/null || die "gcloud is needed (https://cloud.google.com/sdk/docs/install)"
PROJECT=${PROJECT:-$(gcloud config get-value project 2>/dev/null || true)}
[ -n "$PROJECT" ] || die "set PROJECT"
[ -n "${BUCKET:-}" ] || die "set BUCKET (a Cloud Storage bucket name, without gs://)"
BUCKET=${BUCKET#gs://}
TAG=${TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo latest)}
IMAGE=${IMAGE:-$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY/multiad$suffix:$TAG}
TEMPLATE=${TEMPLATE:-gs://$BUCKET/templates/multiad-score$suffix.json}
build_args=(--build-arg "IMAGE=$IMAGE")
if [ "$GPU" = 1 ]; then
  [ -n "${ORT_GPU_SHA256:-}" ] || die "GPU=1: set ORT_GPU_SHA256 to the sha256 of ${ORT_GPU_URL:-onnxruntime-linux-x64-gpu-1.24.1.tgz} (or ORT_GPU_SHA256=skip)"
  [ "$ORT_GPU_SHA256" = skip ] || build_args+=(--build-arg "ORT_GPU_SHA256=$ORT_GPU_SHA256")
  [ -z "${ORT_GPU_URL:-}" ] || build_args+=(--build-arg "ORT_GPU_URL=$ORT_GPU_URL")
fi
if [ -z "${BUILDER:-}" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then BUILDER=docker; else BUILDER=cloudbuild; fi
fi

bin=bin/linux_amd64/multiad
[ "$dry" = 0 ] || bin=$tmp/multiad
mkdir -p "$(dirname "$bin")"
build_binary "$bin"
check_template "$bin"
stage_context "$tmp/ctx" "$bin"

note "building $IMAGE from $dockerfile with $BUILDER"
case "$BUILDER" in
  docker)
    DOCKER_BUILDKIT=1 run docker build --platform linux/amd64 -f "$tmp/ctx/$dockerfile" "${build_args[@]}" -t "$IMAGE" "$tmp/ctx"
    run docker push "$IMAGE" ;;
  cloudbuild)
    {
      echo "steps:"
      echo "- name: gcr.io/cloud-builders/docker"
      echo "  env: [DOCKER_BUILDKIT=1]"
      printf '  args: [build, --platform, linux/amd64, -f, %s' "$dockerfile"
      for a in "${build_args[@]}"; do printf ', "%s"' "$a"; done
      printf ', -t, "%s", .]\n' "$IMAGE"
      echo "images: [\"$IMAGE\"]"
      echo "options: {machineType: E2_HIGHCPU_8}"
    } >"$tmp/ctx/cloudbuild.yaml"
    [ "$dry" = 0 ] || cat "$tmp/ctx/cloudbuild.yaml"
    run gcloud builds submit "$tmp/ctx" --project "$PROJECT" --region "$REGION" --config "$tmp/ctx/cloudbuild.yaml" ;;
  *) die "BUILDER=$BUILDER: want docker or cloudbuild" ;;
esac

note "writing $TEMPLATE"
run gcloud dataflow flex-template build "$TEMPLATE" \
  --project "$PROJECT" \
  --image "$IMAGE" \
  --sdk-language GO \
  --metadata-file templates/score/metadata.json \
  --staging-location "gs://$BUCKET/staging" \
  --temp-location "gs://$BUCKET/tmp" \
  --worker-machine-type "$MACHINE_TYPE"

cat <<EOF
template: done. Run it with:
  gcloud dataflow flex-template run "multiad-score-\$(date +%Y%m%d-%H%M%S)" \\
    --project $PROJECT --region $REGION \\
    --template-file-gcs-location $TEMPLATE \\
    --parameters model=gs://$BUCKET/models/MODEL,input=gs://$BUCKET/images/,output=gs://$BUCKET/runs/RUN$([ "$GPU" = 1 ] && echo ',gpu=nvidia-l4')
EOF
