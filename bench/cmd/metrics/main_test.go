package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/multiad/multiad/metrics"
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

// benchMaps are 10 million pixels of the harness's synthetic maps, for
// -cpuprofile runs of the exact and streaming metrics.
func benchMaps(b *testing.B) []metrics.Map {
	b.Helper()
	return synth(153, 256)
}

func BenchmarkPixelAUROC(b *testing.B) {
	maps := benchMaps(b)
	for b.Loop() {
		if _, err := metrics.PixelAUROC(maps); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAUPRO(b *testing.B) {
	maps := benchMaps(b)
	for b.Loop() {
		if _, err := metrics.AUPRO(maps, metrics.PROLimit); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHistogramAdd(b *testing.B) {
	maps := benchMaps(b)
	for b.Loop() {
		h, _ := metrics.NewHistogram(metrics.DefaultHistogramBits)
		for _, m := range maps {
			if err := h.Add(m); err != nil {
				b.Fatal(err)
			}
		}
	}
}
