// Package pngenc encodes the PNG files multiad writes on its scoring path
// (heatmaps, predicted masks, raw maps, gallery pictures) at about twice
// the speed of image/png.
//
// image/png, at every compression level but none, tries all five PNG row
// filters on every row and keeps the one whose bytes sum smallest: about
// half of its time at BestSpeed on multiad's heatmaps, and it offers no
// setting to turn the search off (golang/go#62009). Encode filters every
// row with Up (each byte minus the byte above it), which needs no search
// and no knowledge of the pixel layout, and deflates with compress/zlib at
// BestSpeed. On the heatmaps of the shared test sets that halves the time
// per image, and the files come out within 2% of image/png's size
// (bench/readings/scoring.md).
//
// The pixels are exactly those of the image: package tests decode every
// file with image/png and with Pillow.
package pngenc

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"sync"
)

// fallback encodes what Encode does not: image/png at BestSpeed.
var fallback = png.Encoder{CompressionLevel: png.BestSpeed}

// PNG colour types (PNG specification, 11.2.2 IHDR).
const (
	colorGray = 0
	colorRGB  = 2
)

// maxIDAT bounds the data of one IDAT chunk (a chunk holds at most 2³¹−1
// bytes; decoders read the chunks as one stream).
const maxIDAT = 1 << 20

// ftUp is the Up filter type byte that starts each filtered row.
const ftUp = 2

// state is what one encoding reuses from the last: the deflater, the
// compressed stream, the two rows and the filtered row.
type state struct {
	zw             *zlib.Writer
	idat           bytes.Buffer
	prev, cur, out []byte
}

var states = sync.Pool{New: func() any { return new(state) }}

// Encode writes img to w as PNG. An *image.RGBA whose pixels are all
// opaque is written as 8-bit RGB, an *image.Gray as 8-bit gray and an
// *image.Gray16 as 16-bit gray, every row with the Up filter; any other
// image, or an RGBA with a pixel that is not opaque, is written by
// image/png at BestSpeed.
func Encode(w io.Writer, img image.Image) error {
	var (
		color, depth, rowBytes int
		row                    func(y int, dst []byte)
	)
	b := img.Bounds()
	width, height := b.Dx(), b.Dy()
	switch m := img.(type) {
	case *image.RGBA:
		if !m.Opaque() {
			return fallback.Encode(w, img)
		}
		color, depth, rowBytes = colorRGB, 8, 3*width
		row = func(y int, dst []byte) {
			src := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range width {
				dst[3*x], dst[3*x+1], dst[3*x+2] = src[4*x], src[4*x+1], src[4*x+2]
			}
		}
	case *image.Gray:
		color, depth, rowBytes = colorGray, 8, width
		row = func(y int, dst []byte) { copy(dst, m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]) }
	case *image.Gray16:
		color, depth, rowBytes = colorGray, 16, 2*width
		row = func(y int, dst []byte) { copy(dst, m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]) } // big-endian, as PNG
	default:
		return fallback.Encode(w, img)
	}
	if width <= 0 || height <= 0 || int64(width) >= 1<<31 || int64(height) >= 1<<31 {
		// image/png reports the error it reports for such images.
		return fallback.Encode(w, img)
	}

	s := states.Get().(*state)
	defer states.Put(s)
	s.idat.Reset()
	if s.zw == nil {
		zw, err := zlib.NewWriterLevel(&s.idat, zlib.BestSpeed)
		if err != nil {
			return err
		}
		s.zw = zw
	} else {
		s.zw.Reset(&s.idat)
	}
	// Each filtered row is its filter byte and rowBytes bytes; prev
	// starts as the zero row above the image.
	s.prev = grow(s.prev, 1+rowBytes)
	s.cur = grow(s.cur, 1+rowBytes)
	s.out = grow(s.out, 1+rowBytes)
	clear(s.prev)
	out := s.out
	out[0] = ftUp
	for y := range height {
		row(y, s.cur[1:])
		cur, prev := s.cur[1:], s.prev[1:]
		for i := range cur {
			out[1+i] = cur[i] - prev[i]
		}
		if _, err := s.zw.Write(out); err != nil {
			return err
		}
		s.prev, s.cur = s.cur, s.prev
	}
	if err := s.zw.Close(); err != nil {
		return err
	}

	var ihdr [13]byte
	binary.BigEndian.PutUint32(ihdr[0:], uint32(width))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(height))
	ihdr[8], ihdr[9] = byte(depth), byte(color) // compression, filter and interlace methods 0
	cw := chunkWriter{w: w}
	cw.write([]byte("\x89PNG\r\n\x1a\n"))
	cw.chunk("IHDR", ihdr[:])
	for z := s.idat.Bytes(); len(z) > 0; {
		n := min(len(z), maxIDAT)
		cw.chunk("IDAT", z[:n])
		z = z[n:]
	}
	cw.chunk("IEND", nil)
	return cw.err
}

// grow returns b with length n, reusing its storage when it can.
func grow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]byte, n)
}

// chunkWriter writes PNG chunks to w and keeps the first error.
type chunkWriter struct {
	w   io.Writer
	err error
}

func (c *chunkWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

// chunk writes one chunk: length, type, data and the CRC of type and data
// (PNG specification, 5.3).
func (c *chunkWriter) chunk(typ string, data []byte) {
	var head, tail [4]byte
	binary.BigEndian.PutUint32(head[:], uint32(len(data)))
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	binary.BigEndian.PutUint32(tail[:], crc.Sum32())
	c.write(head[:])
	c.write([]byte(typ))
	c.write(data)
	c.write(tail[:])
}
