package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/multiad/multiad/bench/internal/workload"
)

// TestSmoke scores 4 tile images twice with a tiny test bundle under two
// names (needs bin/multiad): both rows, their figures, and a ratio of the
// baseline to itself of exactly 1.
func TestSmoke(t *testing.T) {
	model, input := workload.Smoke(t, 4)
	bin := workload.Binary()
	if bin == "" {
		t.Skip("bin/multiad not built (make build)")
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-models", "a=" + model + ",b=" + model, "-input", input, "-bin", bin, "-runs", "1", "-threads", "1"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bench.heads.a.images_per_s=", "bench.heads.b.images_per_s=", "bench.heads.a.ratio_vs_a=1\n", "bench.heads.b.bundle_bytes=", "bench.heads.a.bank_vectors=0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBadModels(t *testing.T) {
	for _, arg := range []string{"student", "=x", "a="} {
		if err := run(context.Background(), []string{"-models", arg, "-input", "x"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "name=bundle") {
			t.Errorf("-models %q: err %v, want a name=bundle error", arg, err)
		}
	}
}
