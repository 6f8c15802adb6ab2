package report

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"

	"github.com/multiad/multiad/transforms/score"
)

// Overlay renders a result's anomaly map over its gray model input at the
// model size: gray image, jet colormap blended in proportion to the map
// value normalised to [lo, hi] (the bundle's validation pixel range). When
// hi <= lo the map's own range is used.
func Overlay(r score.Result, lo, hi float64) (*image.RGBA, error) {
	s := r.Size
	if s <= 0 || len(r.Map) != s*s || len(r.Gray) != s*s {
		return nil, fmt.Errorf("report: %s: no %dx%d map and image to draw", r.Item.URI, s, s)
	}
	if !(hi > lo) {
		lo, hi = math.Inf(1), math.Inf(-1)
		for _, v := range r.Map {
			lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
		}
		if !(hi > lo) {
			hi = lo + 1
		}
	}
	img := image.NewRGBA(image.Rect(0, 0, s, s))
	for i, v := range r.Map {
		t := (float64(v) - lo) / (hi - lo)
		if !(t > 0) {
			t = 0
		} else if t > 1 {
			t = 1
		}
		c := Jet(t)
		g := float64(r.Gray[i])
		a := 0.15 + 0.6*t
		img.Pix[4*i+0] = uint8(g*(1-a) + float64(c.R)*a + 0.5)
		img.Pix[4*i+1] = uint8(g*(1-a) + float64(c.G)*a + 0.5)
		img.Pix[4*i+2] = uint8(g*(1-a) + float64(c.B)*a + 0.5)
		img.Pix[4*i+3] = 255
	}
	return img, nil
}

// heatmapEncoder favours speed: heatmaps are written for every flagged
// image on the scoring path, where default compression cost as much CPU as
// preprocessing (bench/BENCHMARKS.md); the files are somewhat larger.
var heatmapEncoder = png.Encoder{CompressionLevel: png.BestSpeed}

// OverlayPNG is Overlay encoded as PNG.
func OverlayPNG(r score.Result, lo, hi float64) ([]byte, error) {
	img, err := Overlay(r, lo, hi)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := heatmapEncoder.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("report: encoding heatmap: %w", err)
	}
	return buf.Bytes(), nil
}

// Jet maps t in [0, 1] to the jet colormap (blue, cyan, yellow, red).
func Jet(t float64) color.RGBA {
	ch := func(x float64) uint8 {
		v := 1.5 - math.Abs(x)
		if v < 0 {
			v = 0
		} else if v > 1 {
			v = 1
		}
		return uint8(v*255 + 0.5)
	}
	return color.RGBA{R: ch(4*t - 3), G: ch(4*t - 2), B: ch(4*t - 1), A: 255}
}
