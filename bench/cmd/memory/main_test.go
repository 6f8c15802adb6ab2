package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/multiad/multiad/bench/internal/workload"
)

// TestSmoke scores 3 and 6 repeated images with $MULTIAD_BIN, else
// bin/multiad (skipped when `make build` has not made it).
func TestSmoke(t *testing.T) {
	bin := workload.Binary()
	if bin == "" {
		t.Skip("bin/multiad not built")
	}
	model, input := workload.Smoke(t, 2)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-bin", bin, "-model", model, "-input", input, "-sizes", "3,6", "-threads", "1"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "bench.memory.n6.peak_rss_mib=") {
		t.Errorf("output lacks the bench lines:\n%s", out.String())
	}
}
