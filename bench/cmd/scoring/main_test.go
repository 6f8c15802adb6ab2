package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multiad/multiad/bench/internal/benchutil"
	"github.com/multiad/multiad/bench/internal/workload"
	"github.com/multiad/multiad/model/runtime"
)

// multiadBin returns $MULTIAD_BIN, else bin/multiad when `make build` has
// made it, else "".
func multiadBin() string {
	p := os.Getenv("MULTIAD_BIN")
	if p == "" {
		p, _ = filepath.Abs("../../../bin/multiad")
	}
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// TestSmoke scores 4 tile images with a tiny test bundle: the raw loop,
// the FLOP floor, and the pipeline when bin/multiad exists.
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
	bin := multiadBin()
	if bin == "" {
		t.Log("bin/multiad not built: pipeline runs skipped")
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-model", model, "-input", input, "-bin", bin, "-runs", "1", "-peak-n", "64", "-threads", "1"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bench.scoring.tiles.raw_images_per_s=", "bench.scoring.tiles.peak_gflops="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if bin != "" && !strings.Contains(out.String(), "bench.scoring.tiles.efficiency=") {
		t.Errorf("output lacks the efficiency:\n%s", out.String())
	}
}
