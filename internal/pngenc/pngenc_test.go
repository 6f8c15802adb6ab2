package pngenc

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/testenv"
)

// testImages are the kinds Encode writes itself, at sizes from one pixel
// to a heatmap's, with smooth and noisy content, and sub-images (whose
// rows start inside a larger buffer).
func testImages() map[string]image.Image {
	r := rand.New(rand.NewPCG(1, 2))
	out := map[string]image.Image{}
	for _, sz := range [][2]int{{1, 1}, {3, 7}, {64, 1}, {1, 64}, {257, 130}, {600, 400}} {
		w, h := sz[0], sz[1]
		rgba := image.NewRGBA(image.Rect(0, 0, w, h))
		gray := image.NewGray(image.Rect(0, 0, w, h))
		g16 := image.NewGray16(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				smooth := uint8((x*3 + y*5) / 4)
				rgba.SetRGBA(x, y, color.RGBA{smooth, uint8(r.IntN(256)), uint8(x ^ y), 255})
				if (x/7+y/5)%2 == 0 {
					gray.SetGray(x, y, color.Gray{255})
				}
				g16.SetGray16(x, y, color.Gray16{uint16(r.IntN(65536))})
			}
		}
		out[fmt.Sprintf("rgba %dx%d", w, h)] = rgba
		out[fmt.Sprintf("gray %dx%d", w, h)] = gray
		out[fmt.Sprintf("gray16 %dx%d", w, h)] = g16
		if w > 2 && h > 2 {
			out[fmt.Sprintf("rgba %dx%d sub-image", w, h)] = rgba.SubImage(image.Rect(1, 1, w-1, h-1))
			out[fmt.Sprintf("gray16 %dx%d sub-image", w, h)] = g16.SubImage(image.Rect(2, 1, w, h-1))
		}
	}
	return out
}

// pixels returns img's pixels as 16-bit RGBA, the form in which images of
// any type compare.
func pixels(img image.Image) []uint16 {
	b := img.Bounds()
	var out []uint16
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			out = append(out, uint16(r), uint16(g), uint16(bl), uint16(a))
		}
	}
	return out
}

// TestEncodeDecodes checks with image/png's decoder that every file holds
// the image's pixels exactly, at its size and in the colour model
// expected of it, and that images Encode does not write itself (not
// opaque, other types) come out as image/png writes them.
func TestEncodeDecodes(t *testing.T) {
	for name, img := range testImages() {
		var buf bytes.Buffer
		if err := Encode(&buf, img); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := png.Decode(&buf)
		if err != nil {
			t.Fatalf("%s: image/png cannot decode it: %v", name, err)
		}
		if got.Bounds().Size() != img.Bounds().Size() {
			t.Errorf("%s: decoded %v, want %v", name, got.Bounds().Size(), img.Bounds().Size())
			continue
		}
		want := map[string]color.Model{"rgba": color.RGBAModel, "gray": color.GrayModel, "gray16": color.Gray16Model}[strings.Fields(name)[0]]
		if got.ColorModel() != want {
			t.Errorf("%s: decoded as %T pixels", name, got.ColorModel().Convert(color.Black))
		}
		if !slices.Equal(pixels(got), pixels(img)) {
			t.Errorf("%s: decoded pixels differ from the image's", name)
		}
	}
	translucent := image.NewRGBA(image.Rect(0, 0, 5, 4))
	translucent.Pix[7] = 128
	for name, img := range map[string]image.Image{"translucent rgba": translucent, "nrgba": image.NewNRGBA(image.Rect(0, 0, 4, 3)),
		"paletted": image.NewPaletted(image.Rect(0, 0, 3, 3), color.Palette{color.Black, color.White})} {
		var got, want bytes.Buffer
		if err := Encode(&got, img); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&want, img); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("%s: not written as image/png writes it", name)
		}
	}
	if err := Encode(&bytes.Buffer{}, image.NewRGBA(image.Rect(0, 0, 0, 5))); err == nil {
		t.Error("empty image: no error")
	}
}

// TestEncodePillow decodes the files with Pillow, a PNG reader
// independent of Go's (its own chunk parser and unfiltering, over zlib),
// and compares each pixel value with the image's.
func TestEncodePillow(t *testing.T) {
	py := testenv.Python(t, "PIL", "numpy")
	dir := t.TempDir()
	want := map[string]string{}
	for name, img := range testImages() {
		file := strings.NewReplacer(" ", "_").Replace(name) + ".png"
		var buf bytes.Buffer
		if err := Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		// The values as Pillow's array holds them: RGB or gray bytes,
		// 16-bit gray as native uint16, row by row.
		var raw []byte
		b := img.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				switch m := img.(type) {
				case *image.RGBA:
					c := m.RGBAAt(x, y)
					raw = append(raw, c.R, c.G, c.B)
				case *image.Gray:
					raw = append(raw, m.GrayAt(x, y).Y)
				case *image.Gray16:
					v := m.Gray16At(x, y).Y
					raw = append(raw, byte(v), byte(v>>8)) // little-endian, as numpy on amd64
				}
			}
		}
		want[file] = hex.EncodeToString(raw)
	}
	out, err := exec.Command(py, "-c", `import sys, os, numpy as np
from PIL import Image
d = sys.argv[1]
for f in sorted(os.listdir(d)):
    a = np.asarray(Image.open(os.path.join(d, f)))
    if a.dtype != np.uint8:
        a = a.astype('<u2')
    print(f, a.tobytes().hex())
`, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("pillow: %v\n%s", err, out)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		file, hexPix, _ := strings.Cut(line, " ")
		seen++
		if w, ok := want[file]; !ok {
			t.Errorf("pillow read an unknown file %q", file)
		} else if hexPix != w {
			t.Errorf("%s: Pillow reads other pixel values", file)
		}
	}
	if seen != len(want) {
		t.Errorf("pillow read %d files, want %d", seen, len(want))
	}
}

// BenchmarkEncode compares Encode with image/png at BestSpeed on a
// 600×400 heatmap-like image.
func BenchmarkEncode(b *testing.B) {
	img := testImages()["rgba 600x400"]
	b.Run("pngenc", func(b *testing.B) {
		for b.Loop() {
			if err := Encode(discard{}, img); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("image-png", func(b *testing.B) {
		for b.Loop() {
			if err := fallback.Encode(discard{}, img); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// FuzzEncode encodes images of any size and content the fuzzer makes, of
// each kind Encode writes itself, and checks that image/png decodes each
// to the same pixels.
func FuzzEncode(f *testing.F) {
	f.Add(uint8(0), uint8(1), uint8(1), []byte{7})
	f.Add(uint8(1), uint8(5), uint8(3), []byte("a heatmap row, then another"))
	f.Add(uint8(2), uint8(2), uint8(9), []byte{0, 255, 1, 254, 2, 253})
	f.Fuzz(func(t *testing.T, kind, w, h uint8, data []byte) {
		width, height := int(w)%64+1, int(h)%64+1
		var img image.Image
		at := func(i int) byte {
			if len(data) == 0 {
				return 0
			}
			return data[i%len(data)]
		}
		r := image.Rect(0, 0, width, height)
		switch kind % 3 {
		case 0:
			m := image.NewRGBA(r)
			for i := range m.Pix {
				m.Pix[i] = at(i)
				if i%4 == 3 {
					m.Pix[i] = 255
				}
			}
			img = m
		case 1:
			m := image.NewGray(r)
			for i := range m.Pix {
				m.Pix[i] = at(i)
			}
			img = m
		default:
			m := image.NewGray16(r)
			for i := range m.Pix {
				m.Pix[i] = at(i)
			}
			img = m
		}
		var buf bytes.Buffer
		if err := Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		got, err := png.Decode(&buf)
		if err != nil {
			t.Fatalf("image/png cannot decode it: %v", err)
		}
		if !slices.Equal(pixels(got), pixels(img)) {
			t.Fatalf("%T %dx%d: decoded pixels differ", img, width, height)
		}
	})
}
