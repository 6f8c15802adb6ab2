package scoring

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
)

// constScorer scores every image loaderScore, with a constant map.
type constScorer struct{}

const loaderScore = 0.375

func (constScorer) Size() int                  { return 8 }
func (constScorer) Threshold() float64         { return 0.5 }
func (constScorer) Calibration() bundle.Scores { return bundle.Scores{Threshold: 0.5} }
func (constScorer) Close() error               { return nil }
func (c constScorer) Preprocess(*pixels.Image) ([]float32, error) {
	return make([]float32, 3*c.Size()*c.Size()), nil
}

func (c constScorer) Score(batch [][]float32) ([][]float32, []float32, error) {
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
