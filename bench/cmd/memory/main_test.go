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

// TestSmoke scores 3 and 6 repeated images with $MULTIAD_BIN, else
// bin/multiad (skipped when `make build` has not made it).
func TestSmoke(t *testing.T) {
	bin := os.Getenv("MULTIAD_BIN")
	if bin == "" {
		bin, _ = filepath.Abs("../../../bin/multiad")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skip("bin/multiad not built")
	}
	shared, err := benchutil.Shared()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "bundle")
	if err := runtime.WriteTestBundle(model, 32); err != nil {
		t.Fatal(err)
	}
	input, err := workload.SmallInput(shared, dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-bin", bin, "-model", model, "-input", input, "-sizes", "3,6", "-threads", "1"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "bench.memory.n6.peak_rss_mib=") {
		t.Errorf("output lacks the bench lines:\n%s", out.String())
	}
}
