#!/usr/bin/env bash
# Builds the multiad Dataflow Flex Template: the linux/amd64 binary, the
# container image (launcher + Beam worker, templates/Dockerfile or
# templates/Dockerfile.gpu), and the template spec in Cloud Storage.
#
#   scripts/template.sh            build, push, write gs://$BUCKET/templates/...
#   scripts/template.sh --check    validate everything that can be checked
#                                  offline (no Docker engine, no cloud)
#   scripts/template.sh --dry-run  build the binary and context, print the
#                                  docker/gcloud commands instead of running them
#
# Environment (all optional with --check):
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

check=0 dry=0
case "${1:-}" in
  --check) check=1 ;;
  --dry-run) dry=1 ;;
  "") ;;
  -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
  *) echo "template: unknown argument $1 (want --check, --dry-run or nothing)" >&2; exit 2 ;;
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
# The oldest glibc among the runtime bases (Ubuntu 22.04 in the GPU image,
# Debian 12 in the CPU image): the binary must not need a newer one.
max_glibc=2.35

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

# check_binary BIN: a linux/amd64 ELF that the image's glibc can run.
check_binary() {
  local bin=$1 magic
  magic=$(head -c 20 "$bin" | od -An -tx1 | tr -d ' \n')
  # \x7fELF, 64-bit, little endian ... e_machine 0x3e (x86-64) at offset 18.
  [ "${magic:0:10}" = 7f454c4602 ] || die "$bin is not a 64-bit ELF"
  [ "${magic:36:4}" = 3e00 ] || die "$bin is not x86-64"
  local need=""
  if command -v objdump >/dev/null; then
    need=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
  elif command -v readelf >/dev/null; then
    need=$(readelf -W --dyn-syms "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
  else
    note "no objdump or readelf: glibc requirement not checked"
  fi
  if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "$max_glibc" | sort -V | tail -n1)" != "$max_glibc" ]; then
    die "$bin needs glibc $need but the images have $max_glibc; build on an older system (e.g. in golang:1.26-bookworm)"
  fi
  note "binary ok: linux/amd64 ELF${need:+, needs glibc $need (images have >= $max_glibc)}"
}

# stage_context DIR BIN: the minimal Docker build context.
stage_context() {
  local ctx=$1 bin=$2
  mkdir -p "$ctx/bin/linux_amd64" "$ctx/scripts" "$ctx/templates"
  cp "$bin" "$ctx/bin/linux_amd64/multiad"
  cp scripts/setup-ort.sh "$ctx/scripts/"
  cp templates/entrypoint.sh templates/score.sh templates/Dockerfile templates/Dockerfile.gpu "$ctx/templates/"
}

# dockerfile_lines FILE: instructions with continuations joined, comments dropped.
dockerfile_lines() {
  awk '/^[[:space:]]*#/ {next} { if (sub(/\\[[:space:]]*$/, "")) { buf = buf $0 " "; next } print buf $0; buf = "" }' "$1"
}

# check_dockerfile FILE CTX: COPY sources exist in CTX, stages exist, and the
# paths the environment names are copied into the image.
check_dockerfile() {
  local df=$1 ctx=$2 stages=" " dests=" " line
  while IFS= read -r line; do
    read -r -a w <<<"$line"
    [ ${#w[@]} -gt 0 ] || continue
    case "${w[0]^^}" in
      FROM)
        for ((i = 1; i < ${#w[@]}; i++)); do
          if [ "${w[i]^^}" = AS ]; then stages+="${w[i+1]} "; fi
        done ;;
      COPY|ADD)
        local from="" args=()
        for ((i = 1; i < ${#w[@]}; i++)); do
          case "${w[i]}" in
            --from=*) from=${w[i]#--from=} ;;
            --*) ;;
            *) args+=("${w[i]}") ;;
          esac
        done
        [ ${#args[@]} -ge 2 ] || die "$df: malformed: $line"
        local dest=${args[-1]}
        dests+="$dest "
        if [ -n "$from" ]; then
          [[ "$stages" == *" $from "* ]] || die "$df: COPY --from=$from: no such stage"
        else
          for src in "${args[@]:0:${#args[@]}-1}"; do
            [ -e "$ctx/$src" ] || die "$df: COPY source $src is not in the build context"
          done
        fi ;;
    esac
  done < <(dockerfile_lines "$df")
  local want
  for want in /template/multiad /template/score /opt/multiad/entrypoint.sh; do
    [[ "$dests" == *" $want "* ]] || die "$df: nothing is copied to $want"
  done
  grep -q '^ENTRYPOINT \["/opt/multiad/entrypoint.sh"\]' "$df" || die "$df: ENTRYPOINT is not /opt/multiad/entrypoint.sh"
  grep -q 'FLEX_TEMPLATE_GO_BINARY=/template/score' "$df" || die "$df: FLEX_TEMPLATE_GO_BINARY is not /template/score"
  grep -q 'MULTIAD_ORT_LIB=/opt/multiad/lib/libonnxruntime.so.1' "$df" || die "$df: MULTIAD_ORT_LIB is not /opt/multiad/lib/libonnxruntime.so.1"
  [[ "$dests" == *" /opt/multiad/lib/"* ]] || die "$df: ONNX Runtime is not copied to /opt/multiad/lib"
  # The worker's boot loader must come from the Beam version multiad is built with.
  local beam
  beam=$(awk '$1 == "github.com/apache/beam/sdks/v2" {print $2; exit}' go.mod)
  grep -q "apache/beam_go_sdk:${beam#v}" "$df" || die "$df: BEAM_IMAGE is not apache/beam_go_sdk:${beam#v} (go.mod has Beam $beam)"
  note "$df ok"
}

# check_entrypoint: the dispatcher sends boot-loader arguments to boot and
# everything else to the launcher; score.sh adds the subcommand.
check_entrypoint() {
  local fake=$tmp/fake
  mkdir -p "$fake"
  printf '#!/bin/sh\necho boot "$@"\n' >"$fake/boot"
  printf '#!/bin/sh\necho launcher "$@"\n' >"$fake/launcher"
  printf '#!/bin/sh\necho multiad "$@"\n' >"$fake/multiad"
  chmod +x "$fake"/*
  local ep=templates/entrypoint.sh got
  sh -n "$ep" && sh -n templates/score.sh || die "shell syntax"
  got=$(MULTIAD_BOOT=$fake/boot MULTIAD_LAUNCHER=$fake/launcher sh "$ep" --id=1 --logging_endpoint=l:1 --artifact_endpoint=a:1 --provision_endpoint=p:1 --control_endpoint=c:1 --semi_persist_dir=/tmp)
  [ "${got%% *}" = boot ] || die "entrypoint.sh: worker arguments went to: $got"
  got=$(MULTIAD_BOOT=$fake/boot MULTIAD_LAUNCHER=$fake/launcher sh "$ep" --worker_pool)
  [ "${got%% *}" = boot ] || die "entrypoint.sh: --worker_pool went to: $got"
  got=$(MULTIAD_BOOT=$fake/boot MULTIAD_LAUNCHER=$fake/launcher sh "$ep")
  [ "$got" = "launcher " ] || [ "$got" = launcher ] || die "entrypoint.sh: no arguments went to: $got"
  got=$(MULTIAD_BIN=$fake/multiad sh templates/score.sh --input=gs://b/x --runner=DataflowRunner)
  [ "$got" = "multiad score --input=gs://b/x --runner=DataflowRunner" ] || die "score.sh ran: $got"
  note "entrypoint.sh and score.sh ok"
}

# check_metadata BIN: metadata.json parses and every parameter is a flag of
# `multiad score` (the Go test TestScoreMetadata also checks the converse).
check_metadata() {
  local bin=$1 md=templates/score/metadata.json names flags
  command -v python3 >/dev/null || die "python3 is needed to read $md"
  names=$(python3 -c 'import json,sys
m = json.load(open(sys.argv[1]))
assert m["name"] and m["description"], "name and description are required"
for p in m["parameters"]:
    for k in ("name", "label", "helpText", "isOptional"):
        assert k in p, "%s: no %s" % (p.get("name"), k)
    print(p["name"])' "$md") || die "$md is not valid template metadata"
  flags=$("$bin" score -h 2>&1 | sed -n 's/^  -\([A-Za-z0-9_.-]*\).*/\1/p' | sort -u)
  [ -n "$flags" ] || die "$bin score -h printed no flags"
  local n missing=""
  for n in $names; do
    grep -qx -- "$n" <<<"$flags" || missing+=" $n"
  done
  [ -z "$missing" ] || die "$md parameters that multiad score does not accept:$missing"
  note "$md ok ($(wc -w <<<"$names") parameters, all accepted by multiad score)"
  if command -v gcloud >/dev/null; then
    # gcloud validates the metadata and prints the spec without any cloud access.
    gcloud dataflow flex-template build "gs://check-bucket/templates/multiad-score.json" \
      --image "example.com/multiad:check" --sdk-language GO --metadata-file "$md" --print-only \
      >"$tmp/spec.json" 2>"$tmp/gcloud.err" || { cat "$tmp/gcloud.err" >&2; die "gcloud rejected $md"; }
    grep -q '"sdkInfo"' "$tmp/spec.json" && grep -q '"GO"' "$tmp/spec.json" || die "gcloud printed an unexpected spec: $(cat "$tmp/spec.json")"
    note "gcloud dataflow flex-template build --print-only accepts $md"
  else
    note "no gcloud: spec not validated by gcloud"
  fi
}

if [ "$check" = 1 ]; then
  bash -n "$0"
  check_entrypoint
  build_binary "$tmp/multiad"
  check_binary "$tmp/multiad"
  check_metadata "$tmp/multiad"
  stage_context "$tmp/ctx" "$tmp/multiad"
  check_dockerfile templates/Dockerfile "$tmp/ctx"
  check_dockerfile templates/Dockerfile.gpu "$tmp/ctx"
  echo "template check: ok"
  exit 0
fi

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
check_binary "$bin"
stage_context "$tmp/ctx" "$bin"
check_dockerfile "$dockerfile" "$tmp/ctx"

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
