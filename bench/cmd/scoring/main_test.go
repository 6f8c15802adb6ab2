package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/multiad/multiad/bench/internal/workload"
)

// TestSmoke scores 4 tile images with a tiny test bundle: the raw loop,
// the sgemm peak, the bound, and the pipeline when bin/multiad exists. The
// test bundle's teacher is not a built-in one, so it has no FLOP floor
// (workload.TestFLOPsPerHead checks the FLOP count).
func TestSmoke(t *testing.T) {
	model, input := workload.Smoke(t, 4)
	bin := workload.Binary()
	if bin == "" {
		t.Log("bin/multiad not built: pipeline runs skipped")
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-model", model, "-input", input, "-bin", bin, "-runs", "1", "-peak-n", "64", "-threads", "1"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bench.scoring.tiles.raw_images_per_s=", "bench.scoring.tiles.peak_gflops=", "bench.scoring.tiles.bound_images_per_s=",
		"bench.scoring.tiles.loaded_bound_images_per_s=", "bench.scoring.tiles.contention="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if bin != "" && (!strings.Contains(out.String(), "bench.scoring.tiles.efficiency=") || !strings.Contains(out.String(), "bench.scoring.tiles.efficiency_vs_bound=")) {
		t.Errorf("output lacks the efficiency:\n%s", out.String())
	}
}
