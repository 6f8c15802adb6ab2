package main

import (
	"bytes"
	"context"
	"math"
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

// TestLossesMatchRecorded trains the default student at 64 px for 10 steps
// (the harness's random images and teacher features, its fixed seeds) and
// compares every step's losses with testdata/losses64.tsv, recorded by the
// same command built with GoMLX v0.28.2 on compute v0.1.2 and nn.Conv2D's
// earlier layout, before issue 20 item 6 changed both for speed. A change
// to the training arithmetic beyond float32 rounding fails it; a deliberate
// change to the default configuration or the harness needs a new recording:
//
//	go run ./bench/cmd/train -size 64 -warmup 2 -runs 8 -peak-n 64 -losses bench/cmd/train/testdata/losses64.tsv
//
// Ten steps, not more: this training amplifies rounding about twofold a
// step (the adversarial game, Adam, hard mining's threshold), so after
// about 12 steps even GoMLX v0.28.2 against itself, with one input pixel
// moved by one float32 ULP (-nudge), differs by more than 1e-4
// (bench/readings/train.md). Up to step 10 both that and the upgrade stay
// below 3e-5.
func TestLossesMatchRecorded(t *testing.T) {
	if testing.Short() {
		t.Skip("trains 10 steps")
	}
	var out bytes.Buffer
	args := []string{"-size", "64", "-warmup", "2", "-runs", "8", "-peak-n", "64", "-want-losses", "testdata/losses64.tsv", "-loss-tol", "1e-4"}
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "bench.train.max_loss_difference=") {
		t.Errorf("output lacks the loss comparison:\n%s", out.String())
	}
}

// TestCompareLosses checks that compareLosses fails on a difference beyond
// the tolerance, on a missing step and on NaN, and passes within it.
func TestCompareLosses(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/want.tsv"
	want := []stepLosses{{1, 4.25, 0.61, 0.69}, {2, 4.2, 0.6, 0.7}}
	if err := writeLosses(path, want); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		got  []stepLosses
		ok   bool
	}{
		{"same", want, true},
		{"within tolerance", []stepLosses{{1, 4.25005, 0.61, 0.69}, {2, 4.2, 0.6, 0.70009}}, true},
		{"KD beyond", []stepLosses{{1, 4.2502, 0.61, 0.69}, want[1]}, false},
		{"discriminator beyond", []stepLosses{want[0], {2, 4.2, 0.6, 0.7002}}, false},
		{"NaN", []stepLosses{want[0], {2, 4.2, math.NaN(), 0.7}}, false},
		{"missing step", want[:1], false},
		{"other step", []stepLosses{want[0], {3, 4.2, 0.6, 0.7}}, false},
	} {
		_, err := compareLosses(path, c.got, 1e-4)
		if (err == nil) != c.ok {
			t.Errorf("%s: error %v, want ok=%v", c.name, err, c.ok)
		}
	}
}
