package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestSmoke runs the harness on 8 small maps, one run.
func TestSmoke(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-maps", "8", "-side", "32", "-runs", "1"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bench.metrics.auroc_exact_s=", "bench.metrics.aupro_histogram_abs_error="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
