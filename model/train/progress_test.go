package train

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPrinter(t *testing.T) {
	var buf bytes.Buffer
	p := Printer(&buf, time.Hour)
	for step := 1; step <= 3; step++ {
		p(Progress{Phase: "train", Epoch: 1, Epochs: 1, Step: step, Steps: 3, KDLoss: 1.5, ImagesPerSec: 10, ETA: time.Minute})
	}
	p(Progress{Phase: "validate", Step: 3, Steps: 3})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	// Not a terminal: the first line, then only the last step (interval
	// not reached), then the calibration line; no carriage returns.
	if len(lines) != 3 || strings.Contains(buf.String(), "\r") {
		t.Fatalf("output %q", buf.String())
	}
	if !strings.Contains(lines[1], "step 3/3 kd 1.5000") || !strings.Contains(lines[2], "calibrating") {
		t.Errorf("lines %q", lines)
	}
	if got := Line(Progress{Step: 5, Steps: 10}, 10); !strings.HasPrefix(got, "[=====     ] ") {
		t.Errorf("bar %q", got)
	}
}

func TestNewBackend(t *testing.T) {
	t.Setenv("GOMLX_BACKEND", "")
	for _, cfg := range []string{"", "go", "go:parallelism=1", "go:ops_parallel"} {
		b, err := NewBackend(cfg)
		if err != nil {
			t.Errorf("%q: %v", cfg, err)
			continue
		}
		b.Finalize()
	}
	if _, err := NewBackend("nosuchbackend"); err == nil {
		t.Error("unknown backend accepted")
	}
}
