package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/multiad/multiad/bench/internal/workload"
)

// TestSmoke times the stages on 4 tile images with a tiny test bundle.
func TestSmoke(t *testing.T) {
	model, input := workload.Smoke(t, 4)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-model", model, "-input", input, "-runs", "1", "-threads", "1,2", "-batch", "1,2"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bench.scaling.t1_b1.images_per_s=", "bench.scaling.t2_b2.inference_ms=", "bench.scaling.threads_2_vs_1="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
