package raster_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/internal/testenv"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/io/raster"
)

const w, h = 7, 5

// Known pixel patterns.
func gray8() *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for i := range m.Pix {
		m.Pix[i] = uint8(i*37 + 3)
	}
	return m
}

func gray16() *image.Gray16 {
	m := image.NewGray16(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetGray16(x, y, color.Gray16{Y: uint16((y*w+x)*1999 + 257)})
		}
	}
	return m
}

func rgb(alpha bool) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			a := uint8(255)
			if alpha {
				a = uint8(40 + 10*x)
			}
			m.SetNRGBA(x, y, color.NRGBA{R: uint8(30 * x), G: uint8(50 * y), B: uint8(x*y + 7), A: a})
		}
	}
	return m
}

func flat() *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(m.Pix); i += 4 {
		copy(m.Pix[i:], []byte{200, 100, 50, 255})
	}
	return m
}

func rgb16() *image.NRGBA64 {
	m := image.NewNRGBA64(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetNRGBA64(x, y, color.NRGBA64{R: uint16(3000 * x), G: uint16(9000*y + 1), B: uint16(x*y + 60000), A: 0xffff})
		}
	}
	return m
}

func paletted(pal color.Palette) *image.Paletted {
	m := image.NewPaletted(image.Rect(0, 0, w, h), pal)
	for i := range m.Pix {
		m.Pix[i] = uint8(i % len(pal))
	}
	return m
}

var grayPal = color.Palette{color.Gray{0}, color.Gray{90}, color.Gray{200}, color.Gray{255}}
var colorPal = color.Palette{color.RGBA{255, 0, 0, 255}, color.RGBA{0, 128, 0, 255}, color.RGBA{1, 2, 3, 255}}

// want returns the expected channels and values of src in our layout,
// computed from the source image's own colour accessors.
func want(src image.Image, ch int, bits16 bool) []float64 {
	var out []float64
	b := src.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBA64Model.Convert(src.At(x, y)).(color.NRGBA64)
			vs := []uint16{c.R, c.G, c.B}[:ch]
			for _, v := range vs {
				if bits16 {
					out = append(out, float64(v))
				} else {
					out = append(out, float64(v>>8))
				}
			}
		}
	}
	return out
}

func encode(t *testing.T, enc func(*bytes.Buffer, image.Image) error, m image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := enc(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var (
	encPNG  = func(b *bytes.Buffer, m image.Image) error { return png.Encode(b, m) }
	encTIFF = func(b *bytes.Buffer, m image.Image) error { return tiff.Encode(b, m, nil) }
	encLZW  = func(b *bytes.Buffer, m image.Image) error {
		return tiff.Encode(b, m, &tiff.Options{Compression: tiff.Deflate, Predictor: true})
	}
	encBMP = func(b *bytes.Buffer, m image.Image) error { return bmp.Encode(b, m) }
)

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name   string
		enc    func(*bytes.Buffer, image.Image) error
		src    image.Image
		format string
		ch     int
		dtype  pixels.DType
	}{
		{"png gray8", encPNG, gray8(), "png", 1, pixels.Uint8},
		{"png gray16", encPNG, gray16(), "png", 1, pixels.Uint16},
		{"png rgb", encPNG, rgb(false), "png", 3, pixels.Uint8},
		{"png rgba", encPNG, rgb(true), "png", 3, pixels.Uint8},
		{"png rgb16", encPNG, rgb16(), "png", 3, pixels.Uint16},
		{"png gray palette", encPNG, paletted(grayPal), "png", 1, pixels.Uint8},
		{"png colour palette", encPNG, paletted(colorPal), "png", 3, pixels.Uint8},
		{"tiff gray8", encTIFF, gray8(), "tiff", 1, pixels.Uint8},
		{"tiff gray16", encTIFF, gray16(), "tiff", 1, pixels.Uint16},
		{"tiff gray16 deflate", encLZW, gray16(), "tiff", 1, pixels.Uint16},
		{"tiff rgb", encTIFF, rgb(false), "tiff", 3, pixels.Uint8},
		{"tiff rgba", encTIFF, rgb(true), "tiff", 3, pixels.Uint8},
		{"tiff rgb16", encTIFF, rgb16(), "tiff", 3, pixels.Uint16},
		{"tiff colour palette", encTIFF, paletted(colorPal), "tiff", 3, pixels.Uint8},
		{"bmp gray", encBMP, gray8(), "bmp", 1, pixels.Uint8},
		{"bmp rgb", encBMP, rgb(false), "bmp", 3, pixels.Uint8},
		{"bmp colour palette", encBMP, paletted(colorPal), "bmp", 3, pixels.Uint8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := encode(t, c.enc, c.src)
			if got := raster.Format(data); got != c.format {
				t.Errorf("Format = %q, want %q", got, c.format)
			}
			imgs, err := raster.Decode(data, pixels.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			m := imgs[0]
			if len(imgs) != 1 || m.Rows != h || m.Cols != w || m.Channels != c.ch || m.DType != c.dtype || m.Meta.Format != c.format {
				t.Fatalf("got %d images, %dx%dx%d %v %q", len(imgs), m.Rows, m.Cols, m.Channels, m.DType, m.Meta.Format)
			}
			exp := want(c.src, c.ch, c.dtype == pixels.Uint16)
			got := m.Stored()
			for i := range exp {
				if got[i] != exp[i] {
					t.Fatalf("value %d = %v, want %v", i, got[i], exp[i])
				}
			}
		})
	}
}

func TestJPEG(t *testing.T) {
	for _, c := range []struct {
		name string
		src  image.Image
		ch   int
		tol  float64
	}{{"gray", gray8(), 1, 24}, {"colour", flat(), 3, 3}} {
		data := encode(t, func(b *bytes.Buffer, m image.Image) error { return jpeg.Encode(b, m, &jpeg.Options{Quality: 100}) }, c.src)
		imgs, err := raster.Decode(data, pixels.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		m := imgs[0]
		if m.Channels != c.ch || m.DType != pixels.Uint8 || m.Meta.Format != "jpeg" {
			t.Fatalf("%s: %dx%dx%d %v", c.name, m.Rows, m.Cols, m.Channels, m.DType)
		}
		// Lossy, even at quality 100: the gray pattern changes every pixel,
		// the colour image is flat so chroma subsampling costs nothing.
		exp, got := want(c.src, c.ch, false), m.Stored()
		for i := range exp {
			if math.Abs(got[i]-exp[i]) > c.tol {
				t.Fatalf("%s: value %d = %v, want about %v", c.name, i, got[i], exp[i])
			}
		}
	}
}

func magneticTile(t *testing.T) string {
	dir := shared.MustPath(t, "data", "industrial", "magnetic_tile", "test", "crack")
	names, _ := filepath.Glob(filepath.Join(dir, "*.jpg"))
	if len(names) == 0 {
		t.Fatal("no magnetic tile JPEGs")
	}
	return names[0]
}

func TestMagneticTile(t *testing.T) {
	path := magneticTile(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := raster.Decode(data, pixels.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	m := imgs[0]
	if m.Channels != 1 || m.DType != pixels.Uint8 {
		t.Fatalf("%s: %dx%dx%d %v, want 1 uint8 channel", path, m.Rows, m.Cols, m.Channels, m.DType)
	}
	// Cross-check against PIL (libjpeg), when installed. Different IDCTs can
	// differ by one level on a few pixels: compare the shape exactly and the
	// mean closely.
	py := testenv.Python(t, "PIL")
	script := `import sys; from PIL import Image
im = Image.open(sys.argv[1]); px = list(im.getdata())
print(im.mode, im.size[1], im.size[0], sum(px) / len(px))`
	out, err := exec.Command(py, "-c", script, path).CombinedOutput()
	if err != nil {
		t.Fatalf("PIL: %v: %s", err, out)
	}
	f := strings.Fields(string(out))
	mean, _ := strconv.ParseFloat(f[3], 64)
	st := pixels.StatsOf(m.Stored())
	if f[0] != "L" || f[1] != strconv.Itoa(m.Rows) || f[2] != strconv.Itoa(m.Cols) || math.Abs(st.Mean-mean) > 0.05 {
		t.Errorf("PIL says %s; we have %dx%d mean %.4f", out, m.Rows, m.Cols, st.Mean)
	}
}

func TestLimitsBeforeDecode(t *testing.T) {
	// A PNG header claiming 100000x100000 pixels and no data.
	var buf bytes.Buffer
	buf.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], 100000)
	binary.BigEndian.PutUint32(ihdr[4:], 100000)
	ihdr[8], ihdr[9] = 8, 0
	writeChunk(&buf, "IHDR", ihdr)
	if _, err := raster.Decode(buf.Bytes(), pixels.DefaultLimits); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("huge PNG header: %v", err)
	}
	small := encode(t, encPNG, gray8())
	if _, err := raster.Decode(small, pixels.Limits{MaxPixels: 10}); err == nil {
		t.Error("MaxPixels 10 accepted 35 pixels")
	}
}

// writeChunk writes a PNG chunk with its CRC.
func writeChunk(b *bytes.Buffer, typ string, data []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(data)))
	b.Write(n[:])
	b.WriteString(typ)
	b.Write(data)
	binary.BigEndian.PutUint32(n[:], crc32png(append([]byte(typ), data...)))
	b.Write(n[:])
}

func TestBadInput(t *testing.T) {
	good := encode(t, encPNG, rgb(false))
	for name, data := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("hello world"),
		"truncated": good[:len(good)/2],
		"bmp magic": []byte("BM\x00\x00"),
		"tiff hdr":  []byte("II*\x00\x08\x00\x00\x00"),
	} {
		if _, err := raster.Decode(data, pixels.DefaultLimits); err == nil || !strings.HasPrefix(err.Error(), "raster: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range []image.Image{gray8(), paletted(colorPal)} {
		var b bytes.Buffer
		_ = png.Encode(&b, m)
		f.Add(b.Bytes())
		b.Reset()
		_ = tiff.Encode(&b, m, nil)
		f.Add(b.Bytes())
		b.Reset()
		_ = bmp.Encode(&b, m)
		f.Add(b.Bytes())
	}
	lim := pixels.Limits{MaxPixels: 1 << 20, MaxVoxels: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		imgs, err := raster.Decode(data, lim)
		if err == nil {
			if err := imgs[0].Validate(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func crc32png(b []byte) uint32 { return crc32.ChecksumIEEE(b) }
