//go:build experiment

package experiments

import (
	"image"
	_ "image/jpeg"
	"os"
	"testing"

	"github.com/multiad/multiad/io/pixels"
)

// padExperiment reports whether experiments letterbox images (EXP_FIT=pad):
// pad to a square by edge replication, keeping the aspect ratio, instead of
// stretching to S×S.
func padExperiment() bool { return os.Getenv("EXP_FIT") == "pad" }

// padSquare pads img to a square of side max(Rows, Cols), centred, by
// replicating its edges; r0 and c0 are where the image starts.
func padSquare(img *pixels.Image) (out *pixels.Image, r0, c0 int) {
	n := max(img.Rows, img.Cols)
	r0, c0 = (n-img.Rows)/2, (n-img.Cols)/2
	out = pixels.New(n, n, img.Channels, img.DType)
	out.Slope, out.Intercept, out.Meta = img.Slope, img.Intercept, img.Meta
	for y := 0; y < n; y++ {
		sy := min(max(y-r0, 0), img.Rows-1)
		for x := 0; x < n; x++ {
			sx := min(max(x-c0, 0), img.Cols-1)
			for ch := 0; ch < img.Channels; ch++ {
				out.Set((y*n+x)*img.Channels+ch, img.At((sy*img.Cols+sx)*img.Channels+ch))
			}
		}
	}
	return out, r0, c0
}

// pixValid, in pad experiments, marks the test pixels (in tilesTestSet's
// order) that fall inside the image rather than its padding; nil otherwise.
var pixValid []bool

// validOnly keeps the labels and values of valid pixels (all without padding).
func validOnly(labels []bool, vals []float64) ([]bool, []float64) {
	if pixValid == nil {
		return labels, vals
	}
	var l []bool
	var v []float64
	for i, ok := range pixValid {
		if ok {
			l = append(l, labels[i])
			v = append(v, vals[i])
		}
	}
	return l, v
}

// goodValid appends the validity of a good image's S×S pixels to pixValid.
func goodValid(t testing.TB, path string, S int) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, _, err := image.DecodeConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	for y := 0; y < S; y++ {
		for x := 0; x < S; x++ {
			_, _, ok := padSource(c.Width, c.Height, S, x, y)
			pixValid = append(pixValid, ok)
		}
	}
}

// padSource maps pixel (x, y) of the S×S letterboxed map back to the w×h
// image it came from (nearest, half-pixel centres); ok is false in the
// padding.
func padSource(w, h, S, x, y int) (px, py int, ok bool) {
	n := max(w, h)
	px, py = (2*x+1)*n/(2*S)-(n-w)/2, (2*y+1)*n/(2*S)-(n-h)/2
	return px, py, px >= 0 && py >= 0 && px < w && py < h
}
