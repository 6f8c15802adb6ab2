package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/multiad/multiad/pipelines/scoring"
	"github.com/multiad/multiad/transforms/score"
)

func TestMain(m *testing.M) { ptest.Main(m) }

// TestProfilePipeline runs the scoring pipeline in this process, so that
// `go test -cpuprofile` profiles it. It runs only when BENCH_PROFILE_MODEL
// and BENCH_PROFILE_INPUT name a bundle and an input:
//
//	BENCH_PROFILE_MODEL=/tmp/multiad-bench/bundle BENCH_PROFILE_INPUT=../shared/data/industrial/magnetic_tile \
//	  go test -run TestProfilePipeline -cpuprofile /tmp/score.prof ./bench/cmd/scoring
func TestProfilePipeline(t *testing.T) {
	model, input := os.Getenv("BENCH_PROFILE_MODEL"), os.Getenv("BENCH_PROFILE_INPUT")
	if model == "" || input == "" {
		t.Skip("set BENCH_PROFILE_MODEL and BENCH_PROFILE_INPUT to profile the pipeline")
	}
	// The shipped defaults unless set (BENCH_PROFILE_THREADS=-1 is auto).
	threads, inFlight := envInt(t, "BENCH_PROFILE_THREADS", score.ThreadsAuto), envInt(t, "BENCH_PROFILE_IN_FLIGHT", scoring.DefaultInFlight)
	sum, err := scoring.Run(context.Background(), scoring.Options{
		Model: model, Input: input, Output: filepath.Join(t.TempDir(), "out"),
		BatchSize: envInt(t, "BENCH_PROFILE_BATCH", 8), Threads: threads, InFlight: inFlight, Device: "cpu",
		Heatmaps: "anomalous", Masks: true, Gallery: 12,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("threads %d, in flight %d: %d scored in %.1f s (%.1f images/s)", threads, inFlight, sum.Scored, sum.Throughput.Seconds, sum.Throughput.ImagesPerSecond)
}

// envInt reads an integer setting of TestProfilePipeline, def when unset.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}
