package report

import (
	"bytes"
	"image"
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
// buffers between images, writes the bytes a fresh encoder writes, image
// after image of different sizes.
func TestEncodePNGPooled(t *testing.T) {
	for i, img := range []*image.RGBA{testRGBA(600, 400, 1), testRGBA(37, 91, 2), testRGBA(600, 400, 3), testRGBA(256, 256, 4)} {
		got, err := EncodePNG(img)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&want, img); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("image %d: pooled encoder wrote %d bytes, a fresh one %d (or different bytes)", i, len(got), want.Len())
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
