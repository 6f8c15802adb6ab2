// Package inference scores images with a model bundle in ONNX Runtime. One
// Model holds one session; it is safe for concurrent use, and needs no
// GoMLX at run time.
package inference

import (
	"context"
	"fmt"

	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/preprocess"
)

// Model is a loaded bundle with its ONNX Runtime session.
type Model struct {
	// Bundle is the loaded bundle (manifest and graph bytes).
	Bundle *bundle.Bundle
	// URI is where the bundle was loaded from.
	URI  string
	sess *ort.Session
}

// Load reads the bundle at uri (directory, .tar, local or gs://) and builds
// its session.
func Load(ctx context.Context, uri string, opt ort.Options) (*Model, error) {
	b, err := bundle.Load(ctx, uri)
	if err != nil {
		return nil, err
	}
	return New(b, uri, opt)
}

// New builds a Model from an already loaded bundle.
func New(b *bundle.Bundle, uri string, opt ort.Options) (*Model, error) {
	m := b.Manifest
	s, err := ort.NewSession(b.Model, []string{m.Input}, m.Outputs, opt)
	if err != nil {
		return nil, fmt.Errorf("inference: bundle %s: %w", uri, err)
	}
	return &Model{Bundle: b, URI: uri, sess: s}, nil
}

// Size returns the model's square input size.
func (m *Model) Size() int { return m.Bundle.Manifest.Preprocess.Size }

// Threshold returns the calibrated image-score threshold.
func (m *Model) Threshold() float64 { return m.Bundle.Manifest.Scores.Threshold }

// Calibration returns the bundle's calibration statistics (thresholds and
// validation ranges, for normalised scores).
func (m *Model) Calibration() bundle.Scores { return m.Bundle.Manifest.Scores }

// View returns img at its own size as 8-bit gray or RGB, normalised as
// Preprocess normalises it (preprocess.View), for overlays.
func (m *Model) View(img *pixels.Image) ([]uint8, int, error) {
	return preprocess.View(img, m.Bundle.Manifest.Preprocess)
}

// PreprocessView returns Preprocess(img) and View(img)'s pixels, normalising
// img once (preprocess.TensorView).
func (m *Model) PreprocessView(img *pixels.Image) ([]float32, []uint8, error) {
	t, v, _, err := preprocess.TensorView(img, m.Bundle.Manifest.Preprocess)
	return t, v, err
}

// Device reports where the session runs.
func (m *Model) Device() ort.Device { return m.sess.Device() }

// Preprocess returns the [3,S,S] input tensor for img, exactly as training
// computed it.
func (m *Model) Preprocess(img *pixels.Image) ([]float32, error) {
	return preprocess.Tensor(img, m.Bundle.Manifest.Preprocess)
}

// Score runs a batch of preprocessed [3,S,S] tensors and returns one S×S
// anomaly map and one score per input.
func (m *Model) Score(batch [][]float32) (maps [][]float32, scores []float32, err error) {
	if len(batch) == 0 {
		return nil, nil, nil
	}
	s := m.Size()
	per := 3 * s * s
	in := make([]float32, 0, per*len(batch))
	for i, t := range batch {
		if len(t) != per {
			return nil, nil, fmt.Errorf("inference: input %d has %d values, the model takes 3x%dx%d = %d", i, len(t), s, s, per)
		}
		in = append(in, t...)
	}
	out, err := m.sess.Run(ort.Tensor{Shape: []int64{int64(len(batch)), 3, int64(s), int64(s)}, Data: in})
	if err != nil {
		return nil, nil, fmt.Errorf("inference: %w", err)
	}
	amap, sc := out[0], out[1]
	if len(amap.Data) != len(batch)*s*s || len(sc.Data) != len(batch) {
		return nil, nil, fmt.Errorf("inference: graph returned shapes %v and %v for a batch of %d at %d", amap.Shape, sc.Shape, len(batch), s)
	}
	maps = make([][]float32, len(batch))
	for i := range maps {
		maps[i] = amap.Data[i*s*s : (i+1)*s*s]
	}
	return maps, sc.Data, nil
}

// Close releases the session.
func (m *Model) Close() error { return m.sess.Close() }
