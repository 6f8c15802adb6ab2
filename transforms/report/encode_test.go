package report

import (
	"bytes"
	"image"
	"image/draw"
	"image/png"
	"testing"
)

// testRGBA is a w×h opaque image with a pattern that depends on seed.
func testRGBA(w, h, seed int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8((i*7 + i/(4*w)*3 + seed) % 251)
		if i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	return img
}

// TestEncodePNGPooled checks that EncodePNG, whose encoder reuses its
// buffers between images, writes each image's own pixels, image after
// image of different sizes (package pngenc tests the encoder itself).
func TestEncodePNGPooled(t *testing.T) {
	for i, img := range []*image.RGBA{testRGBA(600, 400, 1), testRGBA(37, 91, 2), testRGBA(600, 400, 3), testRGBA(256, 256, 4)} {
		b, err := EncodePNG(img)
		if err != nil {
			t.Fatal(err)
		}
		got, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		want := image.NewNRGBA(img.Bounds())
		draw.Draw(want, want.Bounds(), img, image.Point{}, draw.Src)
		have := image.NewNRGBA(got.Bounds())
		draw.Draw(have, have.Bounds(), got, got.Bounds().Min, draw.Src)
		if have.Bounds() != want.Bounds() || !bytes.Equal(have.Pix, want.Pix) {
			t.Errorf("image %d: decoded pixels differ from the image's", i)
		}
	}
}

// BenchmarkEncodePNG encodes a 600×400 heatmap-like RGBA image, about the
// size of a magnetic tile's overlay.
func BenchmarkEncodePNG(b *testing.B) {
	img := testRGBA(600, 400, 0)
	for b.Loop() {
		if _, err := EncodePNG(img); err != nil {
			b.Fatal(err)
		}
	}
}
