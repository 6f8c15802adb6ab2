package train

import (
	"bytes"
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
	// Not a terminal: the first step, then only the last (the interval is
	// not reached); no calibration line, no carriage returns.
	want := "train: [========                ]  33% epoch 1/1 step 1/3 kd 1.5000 adv 0.000 disc 0.000 10.0 img/s ETA 1m0s\n" +
		"train: [========================] 100% epoch 1/1 step 3/3 kd 1.5000 adv 0.000 disc 0.000 10.0 img/s ETA 1m0s\n"
	if buf.String() != want {
		t.Fatalf("output\n%q\nwant\n%q", buf.String(), want)
	}
	if got := Line(Progress{Step: 5, Steps: 10, Epoch: 2, Epochs: 3, AdvLoss: 0.25, DiscLoss: 0.5}); got != "[============            ]  50% epoch 2/3 step 5/10 kd 0.0000 adv 0.250 disc 0.500 0.0 img/s ETA 0s" {
		t.Errorf("line %q", got)
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
