package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/multiad/multiad/bench/internal/workload"
)

// TestMain lets the test binary be the stand-in rows' child, as the
// command is.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		if err := runChild(context.Background(), os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "memory child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSmoke scores 3 repeated images with $MULTIAD_BIN, else bin/multiad
// (skipped when `make build` has not made it), and 3 and 6 with the
// stand-in scorer.
func TestSmoke(t *testing.T) {
	bin := workload.Binary()
	if bin == "" {
		t.Skip("bin/multiad not built")
	}
	model, input := workload.Smoke(t, 2)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-bin", bin, "-model", model, "-input", input, "-model-sizes", "3", "-sizes", "3,6", "-threads", "1"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bench.memory.model_n3.peak_rss_mib=", "bench.memory.n6.peak_rss_mib=", "bench.memory.max_over_min=",
		"bench.memory.anon_max_over_min=", "| stand-in "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// The sampled anonymous peak is part of the peak RSS.
	figure := func(name string) float64 {
		_, v, _ := strings.Cut(out.String(), "bench.memory."+name+"=")
		f, err := strconv.ParseFloat(strings.Fields(v + " ")[0], 64)
		if err != nil {
			t.Fatalf("figure %s: %v", name, err)
		}
		return f
	}
	if anon, rss := figure("n6.peak_anon_mib"), figure("n6.peak_rss_mib"); !(anon > 1 && anon < rss) {
		t.Errorf("6 images: peak anonymous %.1f MiB, peak RSS %.1f MiB; want 1 < anonymous < RSS", anon, rss)
	}
}

// TestStandInScore checks the stand-in's flagged share over many inputs
// and that its scores follow the input.
func TestStandInScore(t *testing.T) {
	const n = 4000
	flagged := 0
	for i := 0; i < n; i++ {
		in := make([]float32, 3*8*8)
		in[0], in[61] = float32(i), float32(i%7)
		if standInScore(in, 2) > 2 {
			flagged++
		}
	}
	if got := float64(flagged) / n; got < standInFlagged-0.03 || got > standInFlagged+0.03 {
		t.Errorf("flagged %.3f of inputs, want about %.2f", got, standInFlagged)
	}
	a, b := make([]float32, 64), make([]float32, 64)
	b[0] = 1
	if standInScore(a, 1) == standInScore(b, 1) {
		t.Error("the score does not depend on the input")
	}
	m := standInMap([]float32{0, 1, 2, 4}, 10, 20)
	if want := []float32{10, 12.5, 15, 20}; fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("standInMap = %v, want %v", m, want)
	}
}
