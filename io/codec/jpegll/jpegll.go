// Package jpegll decodes lossless JPEG (ITU-T T.81 process 14, SOF3 with
// Huffman coding), the codec of DICOM transfer syntaxes 1.2.840.10008.1.2.4.57
// (any predictor) and 1.2.840.10008.1.2.4.70 (predictor 1, "SV1").
//
// It supports predictors 1–7, point transforms, precisions of 2 to 16 bits,
// 1 to 4 components in interleaved and non-interleaved scans, and restart
// intervals. Malformed or truncated streams return errors that name the byte
// offset; sizes are checked against a caller-given limit before allocation.
package jpegll

import (
	"encoding/binary"
	"fmt"
)

// Frame is a decoded lossless JPEG image.
type Frame struct {
	Width, Height, Components, Precision int
	// Samples holds the samples row-major with the components of a pixel
	// interleaved: sample c of pixel (x, y) is Samples[(y*Width+x)*Components+c].
	Samples []uint16
}

// Marker codes (the byte after 0xFF).
const (
	mSOF0  = 0xC0
	mSOF3  = 0xC3
	mDHT   = 0xC4
	mSOF15 = 0xCF
	mDAC   = 0xCC
	mRST0  = 0xD0
	mRST7  = 0xD7
	mSOI   = 0xD8
	mEOI   = 0xD9
	mSOS   = 0xDA
	mDNL   = 0xDC
	mDRI   = 0xDD
)

// component is one frame component.
type component struct {
	id   byte
	pt   int  // point transform of the scan that coded it
	done bool // coded by a scan
}

// decoder holds the state of one Decode call.
type decoder struct {
	data      []byte
	maxPixels int64
	frame     *Frame
	comps     []component
	huff      [4]*huffTable
	restart   int // restart interval in MCUs, 0 = none
	sawFrame  bool
}

// Decode decodes a lossless JPEG stream (SOI through EOI; bytes after EOI
// are ignored). maxPixels bounds Width*Height*Components: larger images are
// rejected before any allocation. Malformed or truncated streams return an
// error naming the byte offset where decoding stopped.
func Decode(data []byte, maxPixels int64) (*Frame, error) {
	d := &decoder{data: data, maxPixels: maxPixels}
	return d.decode()
}

func (d *decoder) errorf(pos int, format string, args ...any) error {
	return fmt.Errorf("jpegll: "+format+" at byte %d", append(args, pos)...)
}

// nextMarker finds the next marker at or after pos, skipping fill bytes
// (0xFF 0xFF...) and, outside entropy-coded data, any stray bytes. It returns
// the marker code and the position after it.
func (d *decoder) nextMarker(pos int) (byte, int, error) {
	for {
		if pos >= len(d.data) {
			return 0, pos, d.errorf(pos, "truncated stream, expected a marker")
		}
		if d.data[pos] != 0xFF {
			pos++
			continue
		}
		for pos+1 < len(d.data) && d.data[pos+1] == 0xFF {
			pos++
		}
		if pos+1 >= len(d.data) {
			return 0, pos, d.errorf(pos, "truncated stream, expected a marker")
		}
		m := d.data[pos+1]
		if m == 0 {
			pos += 2 // stuffed byte in stray entropy data
			continue
		}
		return m, pos + 2, nil
	}
}

// segment returns the payload of the marker segment whose length field is at
// pos, and the position after the segment.
func (d *decoder) segment(pos int, marker byte) ([]byte, int, error) {
	if pos+2 > len(d.data) {
		return nil, pos, d.errorf(pos, "truncated length of marker 0x%02X", marker)
	}
	n := int(binary.BigEndian.Uint16(d.data[pos:]))
	if n < 2 {
		return nil, pos, d.errorf(pos, "marker 0x%02X has invalid length %d", marker, n)
	}
	if pos+n > len(d.data) {
		return nil, pos, d.errorf(pos, "truncated marker 0x%02X segment (%d bytes, %d left)", marker, n, len(d.data)-pos)
	}
	return d.data[pos+2 : pos+n], pos + n, nil
}

func (d *decoder) decode() (*Frame, error) {
	if len(d.data) < 2 || d.data[0] != 0xFF || d.data[1] != mSOI {
		return nil, d.errorf(0, "missing SOI marker")
	}
	pos := 2
	for {
		m, next, err := d.nextMarker(pos)
		if err != nil {
			return nil, err
		}
		pos = next
		switch {
		case m == mEOI:
			if !d.sawFrame {
				return nil, d.errorf(pos-2, "EOI before any frame header")
			}
			for i, c := range d.comps {
				if !c.done {
					return nil, d.errorf(pos-2, "EOI before component %d (id %d) was coded", i, c.id)
				}
			}
			d.applyPointTransform()
			return d.frame, nil
		case m == mSOI:
			return nil, d.errorf(pos-2, "unexpected SOI marker")
		case m >= mRST0 && m <= mRST7:
			return nil, d.errorf(pos-2, "unexpected RST%d marker outside a scan", m-mRST0)
		case m == mSOF3:
			seg, n, err := d.segment(pos, m)
			if err != nil {
				return nil, err
			}
			if err := d.parseSOF(seg, pos); err != nil {
				return nil, err
			}
			pos = n
		case m >= mSOF0 && m <= mSOF15 && m != mDHT && m != mDAC && m != 0xC8:
			return nil, d.errorf(pos-2, "unsupported frame type SOF%d (only lossless Huffman SOF3 is supported)", m-mSOF0)
		case m == mDHT:
			seg, n, err := d.segment(pos, m)
			if err != nil {
				return nil, err
			}
			if err := d.parseDHT(seg, pos); err != nil {
				return nil, err
			}
			pos = n
		case m == mDAC:
			return nil, d.errorf(pos-2, "arithmetic coding (DAC) is not supported")
		case m == mDRI:
			seg, n, err := d.segment(pos, m)
			if err != nil {
				return nil, err
			}
			if len(seg) != 2 {
				return nil, d.errorf(pos, "DRI segment of %d bytes, want 2", len(seg))
			}
			d.restart = int(binary.BigEndian.Uint16(seg))
			pos = n
		case m == mDNL:
			return nil, d.errorf(pos-2, "DNL marker is not supported")
		case m == mSOS:
			seg, n, err := d.segment(pos, m)
			if err != nil {
				return nil, err
			}
			end, err := d.scan(seg, pos, n)
			if err != nil {
				return nil, err
			}
			pos = end
		default:
			// APPn, COM, DQT, DHP, EXP and other segments are skipped.
			_, n, err := d.segment(pos, m)
			if err != nil {
				return nil, err
			}
			pos = n
		}
	}
}

func (d *decoder) parseSOF(seg []byte, pos int) error {
	if d.sawFrame {
		return d.errorf(pos-2, "second frame header")
	}
	if len(seg) < 6 {
		return d.errorf(pos, "SOF3 segment of %d bytes is too short", len(seg))
	}
	p := int(seg[0])
	h := int(binary.BigEndian.Uint16(seg[1:]))
	w := int(binary.BigEndian.Uint16(seg[3:]))
	nc := int(seg[5])
	if p < 2 || p > 16 {
		return d.errorf(pos, "invalid precision %d (lossless JPEG allows 2 to 16)", p)
	}
	if h == 0 {
		return d.errorf(pos, "frame height 0 (DNL-defined height is not supported)")
	}
	if w == 0 {
		return d.errorf(pos, "frame width 0")
	}
	if nc < 1 || nc > 4 {
		return d.errorf(pos, "unsupported component count %d (1 to 4)", nc)
	}
	if len(seg) != 6+3*nc {
		return d.errorf(pos, "SOF3 segment of %d bytes for %d components, want %d", len(seg), nc, 6+3*nc)
	}
	if n := int64(w) * int64(h) * int64(nc); n > d.maxPixels {
		return d.errorf(pos, "image of %dx%d with %d components (%d samples) exceeds the limit of %d", w, h, nc, n, d.maxPixels)
	}
	d.comps = make([]component, nc)
	for i := range d.comps {
		c := seg[6+3*i:]
		if c[1] != 0x11 {
			return d.errorf(pos+8+3*i, "component %d has sampling factors %dx%d (only 1x1 is supported)", i, c[1]>>4, c[1]&15)
		}
		for j := 0; j < i; j++ {
			if d.comps[j].id == c[0] {
				return d.errorf(pos+8+3*i, "duplicate component id %d", c[0])
			}
		}
		d.comps[i].id = c[0]
	}
	d.frame = &Frame{Width: w, Height: h, Components: nc, Precision: p, Samples: make([]uint16, w*h*nc)}
	d.sawFrame = true
	return nil
}

func (d *decoder) parseDHT(seg []byte, pos int) error {
	for len(seg) > 0 {
		if len(seg) < 17 {
			return d.errorf(pos, "truncated DHT table")
		}
		class, id := seg[0]>>4, seg[0]&15
		if class > 1 || id > 3 {
			return d.errorf(pos, "invalid DHT class %d id %d", class, id)
		}
		var counts [16]int
		total := 0
		for i := range counts {
			counts[i] = int(seg[1+i])
			total += counts[i]
		}
		if total > 256 || len(seg) < 17+total {
			return d.errorf(pos, "DHT table with %d codes overruns the segment", total)
		}
		t, err := newHuffTable(counts, seg[17:17+total])
		if err != nil {
			return d.errorf(pos, "%v", err)
		}
		if class == 0 { // lossless uses the DC tables
			d.huff[id] = t
		}
		seg = seg[17+total:]
	}
	return nil
}

// applyPointTransform shifts each component's samples left by its point
// transform.
func (d *decoder) applyPointTransform() {
	f := d.frame
	for c, comp := range d.comps {
		if comp.pt == 0 {
			continue
		}
		for i := c; i < len(f.Samples); i += f.Components {
			f.Samples[i] <<= comp.pt
		}
	}
}
