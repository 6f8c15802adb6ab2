package main

import (
	"context"
	"fmt"
	"math"

	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/preprocess"
	"github.com/multiad/multiad/transforms/score"
)

// standInLoader is the score.Loader name of the stand-in scorer.
const standInLoader = "bench-memory-stand-in"

// standInFlagged is the share of distinct images the stand-in flags
// anomalous (their heatmaps and masks are drawn).
const standInFlagged = 0.10

func init() {
	score.RegisterLoader(standInLoader, func(ctx context.Context, uri string, _ ort.Options) (score.Scorer, error) {
		b, err := bundle.Load(ctx, uri)
		if err != nil {
			return nil, err
		}
		return &standIn{m: b.Manifest}, nil
	})
}

// standIn replaces the bundle's ONNX model with arithmetic: what the
// memory benchmark measures is what the pipeline keeps, not what the model
// costs. Its input tensor is the image's first channel sampled (nearest
// pixel) at the bundle's size, cheaper than the bundle's preprocessing;
// it renders views as the bundle does (for the heatmap overlays), and
// returns maps at the bundle's size whose values follow the input (each
// pixel's intensity, mapped onto the bundle's pixel range) and a score
// from a hash of the input, so that about standInFlagged of distinct
// images pass the bundle's threshold.
type standIn struct{ m bundle.Manifest }

func (s *standIn) Size() int                  { return s.m.Preprocess.Size }
func (s *standIn) Threshold() float64         { return s.m.Scores.Threshold }
func (s *standIn) Calibration() bundle.Scores { return s.m.Scores }
func (s *standIn) Close() error               { return nil }

func (s *standIn) Preprocess(img *pixels.Image) ([]float32, error) {
	n := s.Size()
	if img.Rows < 1 || img.Cols < 1 || img.Channels < 1 {
		return nil, fmt.Errorf("stand-in: empty image")
	}
	t := make([]float32, 3*n*n) // channels 1 and 2 stay zero
	for r := 0; r < n; r++ {
		sr := r * img.Rows / n
		for c := 0; c < n; c++ {
			t[r*n+c] = float32(img.At((sr*img.Cols + c*img.Cols/n) * img.Channels))
		}
	}
	return t, nil
}

func (s *standIn) PreprocessView(img *pixels.Image) ([]float32, []uint8, error) {
	t, err := s.Preprocess(img)
	if err != nil {
		return nil, nil, err
	}
	v, _, err := preprocess.View(img, s.m.Preprocess)
	return t, v, err
}

func (s *standIn) Score(batch [][]float32) (maps [][]float32, scores []float32, err error) {
	n := s.Size() * s.Size()
	lo, hi := s.m.Scores.PixelMin, s.m.Scores.PixelMax
	if hi <= lo {
		lo, hi = 0, 1
	}
	for i, t := range batch {
		if len(t) < n {
			return nil, nil, fmt.Errorf("stand-in: input %d has %d values, want at least %d", i, len(t), n)
		}
		maps = append(maps, standInMap(t[:n], lo, hi))
		scores = append(scores, float32(standInScore(t, s.Threshold())))
	}
	return maps, scores, nil
}

// standInMap maps the first channel's values linearly onto [lo, hi].
func standInMap(ch []float32, lo, hi float64) []float32 {
	mn, mx := ch[0], ch[0]
	for _, v := range ch {
		mn, mx = min(mn, v), max(mx, v)
	}
	out := make([]float32, len(ch))
	scale := float32(0)
	if mx > mn {
		scale = float32(hi-lo) / (mx - mn)
	}
	for i, v := range ch {
		out[i] = float32(lo) + (v-mn)*scale
	}
	return out
}

// standInScore is thr × (0.5 + u/(2(1−standInFlagged))) for u in [0, 1)
// from an FNV-1a hash of the input: above thr exactly when u >
// 1 − standInFlagged.
func standInScore(t []float32, thr float64) float64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(t); i += 61 {
		h ^= uint64(math.Float32bits(t[i]))
		h *= 1099511628211
	}
	u := float64(h>>11) / (1 << 53)
	if thr <= 0 {
		thr = 1
	}
	return thr * (0.5 + u/(2*(1-standInFlagged)))
}
