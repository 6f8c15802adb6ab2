package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestSmoke trains a tiny student for two steps.
func TestSmoke(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-size", "32", "-width", "4", "-runs", "1", "-warmup", "1", "-peak-n", "64"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "bench.train.image_steps_per_s=") {
		t.Errorf("output lacks the bench lines:\n%s", out.String())
	}
}
