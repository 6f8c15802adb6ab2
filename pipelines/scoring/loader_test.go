package scoring

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
)

// constScorer scores every image loaderScore, with a constant map, and
// records GOMAXPROCS while it scores (scoredProcs).
type constScorer struct{}

var scoredProcs atomic.Int64

const loaderScore = 0.375

func (constScorer) Size() int                  { return 8 }
func (constScorer) Threshold() float64         { return 0.5 }
func (constScorer) Calibration() bundle.Scores { return bundle.Scores{Threshold: 0.5} }
func (constScorer) Close() error               { return nil }
func (c constScorer) Preprocess(*pixels.Image) ([]float32, error) {
	return make([]float32, 3*c.Size()*c.Size()), nil
}

func (c constScorer) Score(batch [][]float32) ([][]float32, []float32, error) {
	scoredProcs.Store(int64(runtime.GOMAXPROCS(0)))
	maps := make([][]float32, len(batch))
	scores := make([]float32, len(batch))
	for i := range batch {
		maps[i] = make([]float32, c.Size()*c.Size())
		scores[i] = loaderScore
	}
	return maps, scores, nil
}

func init() {
	score.RegisterLoader("scoring-test-const", func(context.Context, string, ort.Options) (score.Scorer, error) {
		return constScorer{}, nil
	})
}

// TestLoader checks that Options.Loader replaces the bundle's model: every
// image gets the stand-in's score, which the test bundle's model never gives.
func TestLoader(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "in")
	mvtecSubset(t, data, 2, 2)
	out := filepath.Join(root, "out")
	sum, err := Run(context.Background(), Options{Model: testBundle(t), Input: data, Output: out, Loader: "scoring-test-const"})
	if err != nil {
		t.Fatal(err)
	}
	lines := readJSONL[scoreLine](t, filepath.Join(out, report.ScoresFile))
	if sum.Scored != 4 || len(lines) != 4 {
		t.Fatalf("scored %d, %d scores.jsonl lines; want 4", sum.Scored, len(lines))
	}
	for _, l := range lines {
		if l.Score != loaderScore {
			t.Errorf("%s: score %v, want the stand-in's %v", l.URI, l.Score, loaderScore)
		}
	}
	if _, err := Run(context.Background(), Options{Model: testBundle(t), Input: data, Output: filepath.Join(root, "out2"), Loader: "unregistered"}); err == nil {
		t.Error("Run with an unregistered loader succeeded")
	}
}

// TestPrismProcs: on Prism, Run scores with PrismProcs more Ps than the
// process had and sets GOMAXPROCS back afterwards; a GOMAXPROCS set in the
// environment is left alone.
func TestPrismProcs(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "in")
	mvtecSubset(t, data, 1, 1)
	before := runtime.GOMAXPROCS(0)
	for i, c := range []struct {
		env  string
		want int
	}{{"", before + PrismProcs}, {"3", before}} {
		t.Setenv("GOMAXPROCS", c.env)
		scoredProcs.Store(0)
		if _, err := Run(context.Background(), Options{Model: testBundle(t), Input: data, Output: filepath.Join(root, fmt.Sprint("out", i)), Loader: "scoring-test-const"}); err != nil {
			t.Fatal(err)
		}
		if got := int(scoredProcs.Load()); got != c.want {
			t.Errorf("GOMAXPROCS=%q: scored with GOMAXPROCS %d, want %d", c.env, got, c.want)
		}
		if got := runtime.GOMAXPROCS(0); got != before {
			t.Errorf("GOMAXPROCS=%q: %d after Run, want %d as before", c.env, got, before)
		}
	}
}

// TestRaiseProcsOverlap: pipelines that overlap in one process raise
// GOMAXPROCS once, and the last to end sets it back.
func TestRaiseProcsOverlap(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	end1 := raiseProcs()
	end2 := raiseProcs()
	if got := runtime.GOMAXPROCS(0); got != before+PrismProcs {
		t.Errorf("two runs: GOMAXPROCS %d, want %d", got, before+PrismProcs)
	}
	end1()
	if got := runtime.GOMAXPROCS(0); got != before+PrismProcs {
		t.Errorf("one run left: GOMAXPROCS %d, want %d", got, before+PrismProcs)
	}
	end2()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("none left: GOMAXPROCS %d, want %d as before", got, before)
	}
}
