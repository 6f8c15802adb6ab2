# multiad — see README.md. Two commands do everything on a fresh machine:
#   make demo   train a small model on ../shared magnetic tiles, score the test set on Prism, write reports
#   make test   run the test suite (make test-short: unit tests only, without ../shared or Python)
SHELL := /bin/bash
# The Go toolchain: the one go.mod's toolchain line names (GoMLX's fast kernels
# need Go 1.27), fetched from the module proxy by the go command the first time,
# whatever Go is installed, then copied into .cache/toolchain/ with the patches
# in scripts/toolchain/ applied (a fix for Go 1.27.3's SIMD tail loads, which
# crashed GoMLX training: see scripts/toolchain.sh). Its bin/ goes first on
# PATH, and GOTOOLCHAIN=local keeps the go command from switching away from it.
GOROOT_PATCHED := $(shell ./scripts/toolchain.sh)
ifeq ($(GOROOT_PATCHED),)
$(error scripts/toolchain.sh could not make the project's Go toolchain (its message is above))
endif
export PATH := $(GOROOT_PATCHED)/bin:$(PATH)
# GOROOT too: one set in the environment would otherwise win over the copy.
export GOROOT := $(GOROOT_PATCHED)
export GOTOOLCHAIN := local
export GOEXPERIMENT := simd
export GOMLX_NO_AUTO_INSTALL := 1
export GOFLAGS := -buildvcs=false
# Where the shared data lives (real datasets, reference decodes, teacher weights).
export MULTIAD_SHARED ?= $(abspath ../shared)
export MULTIAD_ORT_LIB := $(CURDIR)/.cache/onnxruntime/libonnxruntime.so.1

BIN := bin/multiad
GO_TEST_FLAGS ?= -timeout 45m

.PHONY: setup build lint test test-short demo eval ablation bench fuzz template clean

# The linter, pinned; installed from the Go module proxy into .cache/ the first
# time and built by the project's toolchain (the path names both, so a new pin,
# toolchain or patch installs again). Config: .golangci.yml.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(CURDIR)/.cache/golangci-lint/$(GOLANGCI_LINT_VERSION)-$(notdir $(GOROOT_PATCHED))/golangci-lint

## setup: install the C codec libraries (Debian) and fetch + verify the ONNX Runtime 1.24.1 library into .cache/ (idempotent)
setup: $(MULTIAD_ORT_LIB)
	@./scripts/setup-deps.sh
$(MULTIAD_ORT_LIB):
	./scripts/setup-ort.sh

## build: build the multiad binary into bin/
# The binary and the library are replaced by rename, never rewritten in place: a
# `cp -f` over bin/libonnxruntime.so.1 while a multiad process has it mapped
# (a long `make eval` training, say) reverts the library's relocated data in
# that process, which then dies with SIGSEGV (SEGV_ACCERR) in its next
# CreateSession: the "crash after long trainings" of issue 20, reproduced by
# doing just that during a bank training.
build: setup
	go build -ldflags "-X main.build=$$(git describe --always --dirty 2>/dev/null || echo unknown)" -o $(BIN).tmp ./cmd/multiad
	mv -f $(BIN).tmp $(BIN)
	cmp -s $(MULTIAD_ORT_LIB) bin/libonnxruntime.so.1 || { cp -f $(MULTIAD_ORT_LIB) bin/.libonnxruntime.so.1.tmp && mv -f bin/.libonnxruntime.so.1.tmp bin/libonnxruntime.so.1; }

## lint: golangci-lint (.golangci.yml) on the default build, then on the experiment-tagged tests
lint: setup $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...
	$(GOLANGCI_LINT) run --build-tags experiment ./model/train/experiments/...
$(GOLANGCI_LINT):
	GOBIN=$(@D) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

## test: the linter, then the whole test suite (what CI runs)
test: setup lint
	go vet ./...
	go test $(GO_TEST_FLAGS) ./...

## test-short: unit tests only (-short: no ../shared, no Python, no external tools), a few minutes
test-short: setup
	go test -short ./...

## demo: train a small model on the magnetic tiles and score their test set on Prism
demo: build
	./scripts/demo.sh

## eval: train and evaluate on magnetic_tile and lgg_flair, print the accuracy table
eval: build
	./scripts/eval.sh

## ablation: the eval table without SE, without the discriminator, with hard mining and fusion switched, with shifts
ablation: build
	./scripts/eval.sh --ablation

## bench: benchmarks, printing tables and bench.* lines
bench: build
	./scripts/bench.sh

## fuzz: run each decoder fuzz target for FUZZTIME (default 60s)
FUZZTIME ?= 60s
fuzz: setup
	./scripts/fuzz.sh $(FUZZTIME)

## template: build and push the Dataflow Flex Template image and spec (templates/README.md; GPU=1 for CUDA workers)
template:
	./scripts/template.sh

clean:
	rm -rf bin out demo-out

## bench-<name>: one benchmark (scoring, scaling, decode, metrics, train, memory)
.PHONY: bench-scoring bench-scaling bench-decode bench-metrics bench-train bench-memory
bench-scoring bench-scaling bench-decode bench-metrics bench-train bench-memory: build
	./scripts/bench.sh $(@:bench-%=%)
