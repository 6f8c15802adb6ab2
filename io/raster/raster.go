// Package raster decodes plain pictures — PNG, JPEG, TIFF and BMP — into
// pixels.Image.
//
// Values are kept exactly as the file stores them: 8-bit images give Uint8,
// 16-bit PNG and TIFF give Uint16. Gray images (and paletted images whose
// palette is all gray) give 1 channel; everything else gives 3 channels RGB,
// with alpha dropped (the colour values are not multiplied by alpha). JPEG
// YCbCr and CMYK are converted to RGB as image/jpeg's colour models do. Only
// the first image of a multi-page TIFF is read.
package raster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/multiad/multiad/io/pixels"
)

// codec is one supported format.
type codec struct {
	name   string
	magic  []string
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
}

var codecs = []codec{
	{"png", []string{"\x89PNG\r\n\x1a\n"}, png.DecodeConfig, png.Decode},
	{"jpeg", []string{"\xff\xd8\xff"}, jpeg.DecodeConfig, jpeg.Decode},
	{"tiff", []string{"II*\x00", "MM\x00*"}, tiff.DecodeConfig, tiff.Decode},
	{"bmp", []string{"BM"}, bmp.DecodeConfig, bmp.Decode},
}

// Format returns "png", "jpeg", "tiff" or "bmp" when data starts with that
// format's magic bytes, or "".
func Format(data []byte) string {
	if c := find(data); c != nil {
		return c.name
	}
	return ""
}

func find(data []byte) *codec {
	for i := range codecs {
		for _, m := range codecs[i].magic {
			if bytes.HasPrefix(data, []byte(m)) {
				return &codecs[i]
			}
		}
	}
	return nil
}

// Decode decodes a PNG, JPEG, TIFF or BMP image (detected by content) into
// one pixels.Image. The header's size is checked against lim before the
// pixels are decoded.
func Decode(data []byte, lim pixels.Limits) (imgs []*pixels.Image, err error) {
	c := find(data)
	if c == nil {
		return nil, fmt.Errorf("raster: unknown format (first bytes % x)", head(data))
	}
	// The x/image decoders can panic on some malformed input; report it as
	// an error.
	defer func() {
		if r := recover(); r != nil {
			imgs, err = nil, fmt.Errorf("raster: %s: malformed image: %v", c.name, r)
		}
	}()
	cfg, err := c.config(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("raster: %s header: %w", c.name, err)
	}
	ch := 3
	if isGray(cfg.ColorModel) {
		ch = 1
	}
	if err := lim.Check(int64(cfg.Height), int64(cfg.Width), int64(ch), 1); err != nil {
		return nil, fmt.Errorf("raster: %s of %dx%d: %w", c.name, cfg.Width, cfg.Height, err)
	}
	src, err := c.decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("raster: %s: %w", c.name, err)
	}
	out := convert(src)
	out.Meta = pixels.Meta{Format: c.name, Frames: 1}
	if out.Channels == 3 {
		out.Meta.Photometric = "RGB"
	} else {
		out.Meta.Photometric = "MONOCHROME2"
	}
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("raster: %s: %w", c.name, err)
	}
	return []*pixels.Image{out}, nil
}

func head(b []byte) []byte {
	if len(b) > 8 {
		return b[:8]
	}
	return b
}

// isGray reports whether a colour model gives one channel.
func isGray(m color.Model) bool {
	switch m {
	case color.GrayModel, color.Gray16Model:
		return true
	}
	if p, ok := m.(color.Palette); ok {
		return grayPalette(p)
	}
	return false
}

func grayPalette(p color.Palette) bool {
	for _, c := range p {
		r, g, b, _ := c.RGBA()
		if r != g || g != b {
			return false
		}
	}
	return len(p) > 0
}

// convert copies src into a pixels.Image, keeping the stored values.
func convert(src image.Image) *pixels.Image {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	switch s := src.(type) {
	case *image.Gray:
		m := pixels.New(h, w, 1, pixels.Uint8)
		for y := 0; y < h; y++ {
			copy(m.Data[y*w:(y+1)*w], s.Pix[y*s.Stride:])
		}
		return m
	case *image.Gray16:
		m := pixels.New(h, w, 1, pixels.Uint16)
		for y := 0; y < h; y++ {
			row := s.Pix[y*s.Stride:]
			for x := 0; x < w; x++ {
				binary.LittleEndian.PutUint16(m.Data[2*(y*w+x):], binary.BigEndian.Uint16(row[2*x:]))
			}
		}
		return m
	case *image.Paletted:
		ch := 3
		if grayPalette(s.Palette) {
			ch = 1
		}
		lut := make([][3]byte, 256)
		for i, c := range s.Palette {
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			lut[i] = [3]byte{n.R, n.G, n.B}
		}
		m := pixels.New(h, w, ch, pixels.Uint8)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				copy(m.Data[(y*w+x)*ch:][:ch], lut[s.Pix[y*s.Stride+x]][:ch])
			}
		}
		return m
	case *image.RGBA: // stored values (premultiplied only if the file is)
		return rgb8(w, h, s.Pix, s.Stride)
	case *image.NRGBA:
		return rgb8(w, h, s.Pix, s.Stride)
	case *image.RGBA64:
		return rgb16(w, h, s.Pix, s.Stride)
	case *image.NRGBA64:
		return rgb16(w, h, s.Pix, s.Stride)
	}
	// YCbCr, CMYK and anything else: convert through the colour model.
	switch src.ColorModel() {
	case color.GrayModel:
		m := pixels.New(h, w, 1, pixels.Uint8)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				m.Data[y*w+x] = color.GrayModel.Convert(src.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y
			}
		}
		return m
	case color.Gray16Model:
		m := pixels.New(h, w, 1, pixels.Uint16)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				g := color.Gray16Model.Convert(src.At(b.Min.X+x, b.Min.Y+y)).(color.Gray16)
				binary.LittleEndian.PutUint16(m.Data[2*(y*w+x):], g.Y)
			}
		}
		return m
	}
	m := pixels.New(h, w, 3, pixels.Uint8)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			n := color.NRGBAModel.Convert(src.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			copy(m.Data[3*(y*w+x):], []byte{n.R, n.G, n.B})
		}
	}
	return m
}

// rgb8 copies the RGB of 4-byte RGBA pixels.
func rgb8(w, h int, pix []byte, stride int) *pixels.Image {
	m := pixels.New(h, w, 3, pixels.Uint8)
	for y := 0; y < h; y++ {
		row := pix[y*stride:]
		for x := 0; x < w; x++ {
			copy(m.Data[3*(y*w+x):][:3], row[4*x:4*x+3])
		}
	}
	return m
}

// rgb16 copies the RGB of 8-byte big-endian RGBA64 pixels to little-endian.
func rgb16(w, h int, pix []byte, stride int) *pixels.Image {
	m := pixels.New(h, w, 3, pixels.Uint16)
	for y := 0; y < h; y++ {
		row := pix[y*stride:]
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				v := binary.BigEndian.Uint16(row[8*x+2*c:])
				binary.LittleEndian.PutUint16(m.Data[2*(3*(y*w+x)+c):], v)
			}
		}
	}
	return m
}
