package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/multiad/multiad/pipelines/scoring"
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
	sum, err := scoring.Run(context.Background(), scoring.Options{
		Model: model, Input: input, Output: filepath.Join(t.TempDir(), "out"),
		BatchSize: 1, Threads: 2, Device: "cpu", Heatmaps: "anomalous", Gallery: 12,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d scored in %.1f s (%.1f images/s)", sum.Scored, sum.Throughput.Seconds, sum.Throughput.ImagesPerSecond)
}
