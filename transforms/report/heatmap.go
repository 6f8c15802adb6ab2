package report

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"math"

	"github.com/multiad/multiad/internal/pngenc"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/preprocess"
	"github.com/multiad/multiad/transforms/score"
)

// Overlay renders a result's anomaly map over its gray model input at the
// model size (the DICOM Secondary Captures of package dicomout; the
// heatmap files and the report use Heatmap, at the image's own size): gray image, jet colormap blended in proportion to the map
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

// HeatmapError says that a result cannot be drawn, and why.
type HeatmapError struct {
	URI    string
	Reason string
}

func (e *HeatmapError) Error() string { return fmt.Sprintf("report: %s: %s", e.URI, e.Reason) }

// size returns the original image size of r (the model size for results
// that do not know it).
func size(r score.Result) (rows, cols int) {
	if r.Rows > 0 && r.Cols > 0 {
		return r.Rows, r.Cols
	}
	return r.Size, r.Size
}

// background returns r's image at its original size as RGB: its View, or
// else its gray model input upsampled bilinearly.
func background(r score.Result) ([]uint8, error) {
	rows, cols := size(r)
	n := rows * cols
	out := make([]uint8, 3*n)
	switch r.ViewChannels() {
	case 3:
		copy(out, r.View)
		return out, nil
	case 1:
		for i, g := range r.View {
			out[3*i], out[3*i+1], out[3*i+2] = g, g, g
		}
		return out, nil
	}
	s := r.Size
	if s <= 0 || len(r.Gray) != s*s {
		return nil, &HeatmapError{r.Item.URI, "no image to draw the heatmap over"}
	}
	for i, g := range resample8(r.Gray, 1, s, s, rows, cols, preprocess.Resize) {
		out[3*i], out[3*i+1], out[3*i+2] = g, g, g
	}
	return out, nil
}

// resample8 resamples an h×w image of ch interleaved 8-bit channels to
// oh×ow with resize (preprocess.Resize or ResizeAntialiased), channel by
// channel, rounding to the nearest 8-bit value.
func resample8(src []uint8, ch, h, w, oh, ow int, resize func(src []float32, h, w int, dst []float32, oh, ow int)) []uint8 {
	plane, res := make([]float32, h*w), make([]float32, oh*ow)
	out := make([]uint8, ch*oh*ow)
	for c := range ch {
		for i := range plane {
			plane[i] = float32(src[ch*i+c])
		}
		resize(plane, h, w, res, oh, ow)
		for i, v := range res {
			out[ch*i+c] = uint8(math.Round(math.Min(255, math.Max(0, float64(v)))))
		}
	}
	return out
}

// fullMap returns r's anomaly map at the original size, or an error.
func fullMap(r score.Result) ([]float32, error) {
	m := r.FullMap()
	if m == nil {
		return nil, &HeatmapError{r.Item.URI, fmt.Sprintf("no %dx%d anomaly map", r.Size, r.Size)}
	}
	return m, nil
}

// pixelScale returns cal, or when it has no pixel range (hand-made
// bundles), a scale over the map's own range with its middle as threshold.
func pixelScale(cal bundle.Scores, m []float32) bundle.Scores {
	if cal.PixelMax > cal.PixelMin {
		return cal
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range m {
		lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
	}
	if !(hi > lo) {
		hi = lo + 1
	}
	cal.PixelMin, cal.PixelMax, cal.PixelThreshold = lo, hi, (lo+hi)/2
	return cal
}

// Heatmap renders r's anomaly map at the original image's size, as an
// overlay on the image: each pixel's normalised score
// (cal.NormalizePixel, 0.5 at the pixel threshold) coloured with Viridis
// and blended over the image with an opacity that grows with the score,
// so the colours mean the same in every image of a bundle.
func Heatmap(r score.Result, cal bundle.Scores) (*image.RGBA, error) {
	m, err := fullMap(r)
	if err != nil {
		return nil, err
	}
	bg, err := background(r)
	if err != nil {
		return nil, err
	}
	cal = pixelScale(cal, m)
	rows, cols := size(r)
	img := image.NewRGBA(image.Rect(0, 0, cols, rows))
	for i, v := range m {
		t := cal.NormalizePixel(float64(v))
		c := Viridis(t)
		a := 0.25 + 0.6*t
		img.Pix[4*i+0] = uint8(float64(bg[3*i])*(1-a) + float64(c.R)*a + 0.5)
		img.Pix[4*i+1] = uint8(float64(bg[3*i+1])*(1-a) + float64(c.G)*a + 0.5)
		img.Pix[4*i+2] = uint8(float64(bg[3*i+2])*(1-a) + float64(c.B)*a + 0.5)
		img.Pix[4*i+3] = 255
	}
	return img, nil
}

// Picture returns r's image at its original size (the gallery's first
// picture).
func Picture(r score.Result) (*image.RGBA, error) {
	bg, err := background(r)
	if err != nil {
		return nil, err
	}
	rows, cols := size(r)
	img := image.NewRGBA(image.Rect(0, 0, cols, rows))
	for i := 0; i < rows*cols; i++ {
		copy(img.Pix[4*i:4*i+3], bg[3*i:3*i+3])
		img.Pix[4*i+3] = 255
	}
	return img, nil
}

// PredictedMask returns r's predicted defect mask at the original image
// size: 255 where the upsampled map exceeds the bundle's pixel threshold,
// 0 elsewhere.
func PredictedMask(r score.Result, cal bundle.Scores) (*image.Gray, error) {
	m, err := fullMap(r)
	if err != nil {
		return nil, err
	}
	rows, cols := size(r)
	img := image.NewGray(image.Rect(0, 0, cols, rows))
	for i, v := range m {
		if float64(v) > cal.PixelThreshold {
			img.Pix[i] = 255
		}
	}
	return img, nil
}

// RawMap returns r's anomaly map at the original image size as 16-bit
// gray: the normalised pixel score × 65535 (the pixel threshold is
// 32768; 0 and 65535 hold everything below and above the range).
func RawMap(r score.Result, cal bundle.Scores) (*image.Gray16, error) {
	m, err := fullMap(r)
	if err != nil {
		return nil, err
	}
	cal = pixelScale(cal, m)
	rows, cols := size(r)
	img := image.NewGray16(image.Rect(0, 0, cols, rows))
	for i, v := range m {
		u := uint16(math.Round(cal.NormalizePixel(float64(v)) * 65535))
		img.Pix[2*i], img.Pix[2*i+1] = uint8(u>>8), uint8(u)
	}
	return img, nil
}

// outlineColor is the ground-truth outline: red, which viridis never shows.
var outlineColor = color.RGBA{R: 255, G: 40, B: 40, A: 255}

// DrawOutline draws the outline of a Rows×Cols mask (nonzero: inside) on
// img, which has the mask's size: every inside pixel with an outside
// 4-neighbour (or on the border), thickened for large images.
func DrawOutline(img *image.RGBA, mask []uint8) {
	b := img.Bounds()
	rows, cols := b.Dy(), b.Dx()
	if len(mask) != rows*cols {
		return
	}
	in := func(y, x int) bool { return y >= 0 && x >= 0 && y < rows && x < cols && mask[y*cols+x] != 0 }
	w := max(1, max(rows, cols)/256)
	for y := 0; y < rows; y++ {
		for x := 0; x < cols; x++ {
			if !in(y, x) || in(y-1, x) && in(y+1, x) && in(y, x-1) && in(y, x+1) {
				continue
			}
			for dy := 0; dy < w; dy++ {
				for dx := 0; dx < w; dx++ {
					if yy, xx := y+dy-w/2, x+dx-w/2; yy >= 0 && xx >= 0 && yy < rows && xx < cols {
						img.SetRGBA(b.Min.X+xx, b.Min.Y+yy, outlineColor)
					}
				}
			}
		}
	}
}

// EncodePNG encodes an image as PNG, favouring speed: heatmaps are
// written for every flagged image on the scoring path, where image/png's
// default compression cost as much CPU as preprocessing and its row-filter
// search, at BestSpeed, half its time (package pngenc; bench/BENCHMARKS.md).
func EncodePNG(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := pngenc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("report: encoding PNG: %w", err)
	}
	return buf.Bytes(), nil
}

// HeatmapPNG is Heatmap encoded as PNG.
func HeatmapPNG(r score.Result, cal bundle.Scores) ([]byte, error) {
	img, err := Heatmap(r, cal)
	if err != nil {
		return nil, err
	}
	return EncodePNG(img)
}

// shrink returns r scaled down to fit within side×side (never up), for
// the gallery: its View resampled to the smaller size
// (preprocess.ResizeAntialiased, PIL's bilinear) and its Truth mapped onto
// it, the model-size map and input kept. Heatmap and Picture of the result then draw the thumbnails
// directly, so a gallery entry costs the same memory and time for a
// 4000-pixel image as for a 400-pixel one. A thumbnail pixel is in the
// truth mask when the centre of any defect pixel falls in it, so thin
// defects keep their outline. A result that fits is returned as it is.
func shrink(r score.Result, side int) score.Result {
	rows, cols := size(r)
	if rows <= side && cols <= side {
		return r
	}
	f := float64(side) / float64(max(rows, cols))
	h, w := max(1, int(math.Round(float64(rows)*f))), max(1, int(math.Round(float64(cols)*f)))
	out := r
	out.Rows, out.Cols = h, w
	out.View, out.Truth = nil, nil
	if ch := r.ViewChannels(); ch > 0 {
		out.View = resample8(r.View, ch, rows, cols, h, w, preprocess.ResizeAntialiased)
	}
	if len(r.Truth) == rows*cols {
		out.Truth = make([]uint8, h*w)
		for y := range rows {
			row, oy := r.Truth[y*cols:(y+1)*cols], (2*y+1)*h/(2*rows)
			for x, v := range row {
				if v != 0 {
					out.Truth[oy*w+(2*x+1)*w/(2*cols)] = 1
				}
			}
		}
	}
	return out
}
