package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multiad/multiad/bench/internal/benchutil"
	"github.com/multiad/multiad/bench/internal/workload"
	"github.com/multiad/multiad/model/runtime"
)

// TestSmoke times the stages on 4 tile images with a tiny test bundle.
func TestSmoke(t *testing.T) {
	shared, err := benchutil.Shared()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "bundle")
	if err := runtime.WriteTestBundle(model, 32); err != nil {
		t.Fatal(err)
	}
	input, err := workload.SmallInput(shared, dir, 4)
	if err != nil {
		t.Fatal(err)
	}
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
