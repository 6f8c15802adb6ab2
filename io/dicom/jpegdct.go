package dicom

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// errNotSequential reports a JPEG process decodeDCT does not implement.
var errNotSequential = errors.New("dicom: JPEG process not supported by the sequential DCT decoder")

// decodeDCT decodes a sequential-DCT Huffman JPEG (ITU-T T.81 processes 1,
// 2 and 4: SOF0/SOF1) of 8- or 12-bit precision into component planes, with
// the integer "islow" IDCT of IJG libjpeg, which the reference decoders
// (GDCM for 12-bit, Pillow's libjpeg for 8-bit) use; image/jpeg's IDCT
// differs by a level here and there, and it cannot decode 12-bit data.
func decodeDCT(b []byte, maxPixels int64) (*dctDecoder, error) {
	d := &dctDecoder{data: b}
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return nil, errors.New("dicom: JPEG frame does not start with SOI")
	}
	pos := 2
	for {
		m, seg, next, err := nextMarker(b, pos)
		if err != nil {
			return nil, err
		}
		switch {
		case m == 0xD9: // EOI
			if d.planes == nil {
				return nil, errors.New("dicom: JPEG frame has no image data")
			}
			return d, nil
		case m == 0xC0 || m == 0xC1:
			if err := d.sof(seg, maxPixels); err != nil {
				return nil, err
			}
		case m >= 0xC2 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC:
			return nil, fmt.Errorf("%w (SOF%d)", errNotSequential, m-0xC0)
		case m == 0xC4:
			if err := d.dht(seg); err != nil {
				return nil, err
			}
		case m == 0xDB:
			if err := d.dqt(seg); err != nil {
				return nil, err
			}
		case m == 0xDD:
			if len(seg) < 2 {
				return nil, errors.New("dicom: JPEG DRI segment too short")
			}
			d.restart = int(binary.BigEndian.Uint16(seg))
		case m == 0xDA:
			end, err := d.scan(seg, next)
			if err != nil {
				return nil, err
			}
			next = end
		}
		pos = next
	}
}

// nextMarker returns the marker at pos, its segment body and the offset
// after it.
func nextMarker(b []byte, pos int) (m byte, seg []byte, next int, err error) {
	for pos+1 < len(b) && !(b[pos] == 0xFF && b[pos+1] != 0xFF && b[pos+1] != 0) {
		pos++
	}
	if pos+1 >= len(b) {
		return 0, nil, 0, errors.New("dicom: JPEG frame ends without EOI")
	}
	m = b[pos+1]
	if m == 0xD9 || m == 0x01 || (m >= 0xD0 && m <= 0xD8) {
		return m, nil, pos + 2, nil
	}
	if pos+4 > len(b) {
		return 0, nil, 0, errors.New("dicom: truncated JPEG marker")
	}
	n := int(binary.BigEndian.Uint16(b[pos+2:]))
	if n < 2 || pos+2+n > len(b) {
		return 0, nil, 0, fmt.Errorf("dicom: JPEG marker %02X segment of %d bytes overruns the frame", m, n)
	}
	return m, b[pos+4 : pos+2+n], pos + 2 + n, nil
}

type huffTable struct {
	maxcode [18]int32
	valptr  [17]int32
	mincode [17]int32
	vals    []byte
	ok      bool
}

type jpegComp struct {
	id, h, v, tq int
	bw, bh       int // blocks per line and per column in the plane
	pred         int
	td, ta       int
}

type dctDecoder struct {
	data    []byte
	prec    int
	w, h    int
	comps   []jpegComp
	qt      [4][64]int32
	dc, ac  [4]huffTable
	restart int
	planes  [][]int32 // per component, bw*8 x bh*8
	mcuX    int
	mcuY    int
	hmax    int
	vmax    int
}

func (d *dctDecoder) sof(s []byte, maxPixels int64) error {
	if d.planes != nil {
		return errors.New("dicom: JPEG frame has two SOF markers")
	}
	if len(s) < 6 {
		return errors.New("dicom: JPEG SOF segment too short")
	}
	d.prec = int(s[0])
	d.h, d.w = int(binary.BigEndian.Uint16(s[1:])), int(binary.BigEndian.Uint16(s[3:]))
	nc := int(s[5])
	if d.prec != 8 && d.prec != 12 {
		return fmt.Errorf("dicom: JPEG precision %d (8 or 12)", d.prec)
	}
	if d.w == 0 || d.h == 0 || nc < 1 || nc > 4 || len(s) < 6+3*nc {
		return fmt.Errorf("dicom: JPEG frame %dx%d with %d components", d.w, d.h, nc)
	}
	if int64(d.w)*int64(d.h)*int64(nc) > maxPixels {
		return fmt.Errorf("dicom: JPEG frame %dx%dx%d exceeds the limit of %d pixels", d.w, d.h, nc, maxPixels)
	}
	d.hmax, d.vmax = 1, 1
	for i := 0; i < nc; i++ {
		c := jpegComp{id: int(s[6+3*i]), h: int(s[7+3*i] >> 4), v: int(s[7+3*i] & 15), tq: int(s[8+3*i])}
		if c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4 || c.tq > 3 {
			return errors.New("dicom: bad JPEG component parameters")
		}
		d.hmax, d.vmax = max(d.hmax, c.h), max(d.vmax, c.v)
		d.comps = append(d.comps, c)
	}
	d.mcuX = (d.w + 8*d.hmax - 1) / (8 * d.hmax)
	d.mcuY = (d.h + 8*d.vmax - 1) / (8 * d.vmax)
	d.planes = make([][]int32, nc)
	for i := range d.comps {
		c := &d.comps[i]
		c.bw, c.bh = d.mcuX*c.h, d.mcuY*c.v
		d.planes[i] = make([]int32, c.bw*8*c.bh*8)
	}
	return nil
}

func (d *dctDecoder) dqt(s []byte) error {
	for len(s) > 0 {
		pq, tq := int(s[0]>>4), int(s[0]&15)
		if tq > 3 || pq > 1 {
			return errors.New("dicom: bad JPEG quantisation table")
		}
		n := 64 * (1 + pq)
		if len(s) < 1+n {
			return errors.New("dicom: JPEG quantisation table truncated")
		}
		for k := 0; k < 64; k++ {
			if pq == 0 {
				d.qt[tq][k] = int32(s[1+k])
			} else {
				d.qt[tq][k] = int32(binary.BigEndian.Uint16(s[1+2*k:]))
			}
		}
		s = s[1+n:]
	}
	return nil
}

func (d *dctDecoder) dht(s []byte) error {
	for len(s) > 0 {
		if len(s) < 17 {
			return errors.New("dicom: JPEG Huffman table truncated")
		}
		tc, th := int(s[0]>>4), int(s[0]&15)
		if tc > 1 || th > 3 {
			return errors.New("dicom: bad JPEG Huffman table")
		}
		total := 0
		for i := 1; i <= 16; i++ {
			total += int(s[i])
		}
		if total > 256 || len(s) < 17+total {
			return errors.New("dicom: JPEG Huffman table truncated")
		}
		t := &d.dc[th]
		if tc == 1 {
			t = &d.ac[th]
		}
		*t = huffTable{vals: append([]byte(nil), s[17:17+total]...), ok: true}
		code, k := int32(0), int32(0)
		for l := 1; l <= 16; l++ {
			n := int32(s[l])
			t.valptr[l] = k
			t.mincode[l] = code
			code += n
			k += n
			if n > 0 {
				t.maxcode[l] = code - 1
			} else {
				t.maxcode[l] = -1
			}
			code <<= 1
		}
		t.maxcode[17] = math.MaxInt32
		s = s[17+total:]
	}
	return nil
}

// bitReader reads entropy-coded bits, removing stuffed zero bytes; at a
// marker it supplies zeros.
type bitReader struct {
	b     []byte
	pos   int
	acc   uint32
	nbits int
	err   error
}

func (r *bitReader) bit() int32 {
	if r.nbits == 0 {
		var c byte
		if r.pos < len(r.b) {
			c = r.b[r.pos]
			if c == 0xFF {
				if r.pos+1 < len(r.b) && r.b[r.pos+1] == 0 {
					r.pos += 2
				} else {
					c = 0 // a marker: pad with zeros
				}
			} else {
				r.pos++
			}
		} else {
			r.err = errors.New("dicom: JPEG entropy-coded data truncated")
		}
		r.acc, r.nbits = uint32(c), 8
	}
	r.nbits--
	return int32(r.acc>>r.nbits) & 1
}

func (r *bitReader) bits(n int) int32 {
	v := int32(0)
	for i := 0; i < n; i++ {
		v = v<<1 | r.bit()
	}
	return v
}

func (r *bitReader) decode(t *huffTable) (byte, error) {
	code := r.bit()
	for l := 1; l <= 16; l++ {
		if code <= t.maxcode[l] {
			i := t.valptr[l] + code - t.mincode[l]
			if i < 0 || int(i) >= len(t.vals) {
				break
			}
			return t.vals[i], nil
		}
		code = code<<1 | r.bit()
	}
	return 0, errors.New("dicom: bad JPEG Huffman code")
}

func extend(v int32, s int) int32 {
	if s == 0 {
		return 0
	}
	if v < 1<<(s-1) {
		return v - (1 << s) + 1
	}
	return v
}

var zigzag = [64]int{
	0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
	12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
	35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
	58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
}

// scan decodes one scan whose header is s and whose entropy-coded data
// start at pos; it returns the offset of the marker that ends the scan.
func (d *dctDecoder) scan(s []byte, pos int) (int, error) {
	if d.planes == nil {
		return 0, errors.New("dicom: JPEG scan before SOF")
	}
	if len(s) < 1 || len(s) < 1+2*int(s[0])+3 {
		return 0, errors.New("dicom: JPEG SOS segment too short")
	}
	ns := int(s[0])
	var comps []int
	for i := 0; i < ns; i++ {
		id, tab := int(s[1+2*i]), s[2+2*i]
		k := -1
		for j, c := range d.comps {
			if c.id == id {
				k = j
			}
		}
		if k < 0 {
			return 0, fmt.Errorf("dicom: JPEG scan names unknown component %d", id)
		}
		c := &d.comps[k]
		c.td, c.ta = int(tab>>4), int(tab&15)
		if c.td > 3 || c.ta > 3 || !d.dc[c.td].ok || !d.ac[c.ta].ok {
			return 0, errors.New("dicom: JPEG scan uses a missing Huffman table")
		}
		c.pred = 0
		comps = append(comps, k)
	}
	r := &bitReader{b: d.data, pos: pos}
	var blk [64]int32
	mcusX, mcusY := d.mcuX, d.mcuY
	if ns == 1 { // non-interleaved: one block per MCU over the component
		c := d.comps[comps[0]]
		mcusX = (d.w*c.h/d.hmax + 7) / 8
		mcusY = (d.h*c.v/d.vmax + 7) / 8
	}
	count := 0
	for my := 0; my < mcusY; my++ {
		for mx := 0; mx < mcusX; mx++ {
			if d.restart > 0 && count > 0 && count%d.restart == 0 {
				// Skip to the RSTn marker and reset the decoder.
				p := r.pos
				for p+1 < len(d.data) && !(d.data[p] == 0xFF && d.data[p+1] >= 0xD0 && d.data[p+1] <= 0xD7) {
					p++
				}
				if p+1 >= len(d.data) {
					return 0, errors.New("dicom: JPEG restart marker missing")
				}
				r = &bitReader{b: d.data, pos: p + 2}
				for _, k := range comps {
					d.comps[k].pred = 0
				}
			}
			count++
			for _, k := range comps {
				c := &d.comps[k]
				hs, vs := c.h, c.v
				if ns == 1 {
					hs, vs = 1, 1
				}
				for v := 0; v < vs; v++ {
					for u := 0; u < hs; u++ {
						if err := d.block(r, c, &blk); err != nil {
							return 0, err
						}
						bx, by := mx*hs+u, my*vs+v
						d.idct(&blk, d.planes[k], c.bw*8, bx, by)
					}
				}
			}
			if r.err != nil {
				return 0, r.err
			}
		}
	}
	p := r.pos
	for p+1 < len(d.data) && !(d.data[p] == 0xFF && d.data[p+1] != 0 && d.data[p+1] != 0xFF && !(d.data[p+1] >= 0xD0 && d.data[p+1] <= 0xD7)) {
		p++
	}
	return p, nil
}

// block decodes and dequantises one 8x8 block into natural order.
func (d *dctDecoder) block(r *bitReader, c *jpegComp, blk *[64]int32) error {
	*blk = [64]int32{}
	q := &d.qt[c.tq]
	t, err := r.decode(&d.dc[c.td])
	if err != nil {
		return err
	}
	if t > 16 {
		return errors.New("dicom: bad JPEG DC category")
	}
	c.pred += int(extend(r.bits(int(t)), int(t)))
	blk[0] = int32(c.pred) * q[0]
	for k := 1; k < 64; {
		rs, err := r.decode(&d.ac[c.ta])
		if err != nil {
			return err
		}
		run, size := int(rs>>4), int(rs&15)
		if size == 0 {
			if run != 15 {
				break
			}
			k += 16
			continue
		}
		k += run
		if k > 63 {
			return errors.New("dicom: JPEG AC coefficients overrun the block")
		}
		blk[zigzag[k]] = extend(r.bits(size), size) * q[k]
		k++
	}
	return nil
}

// idct writes the level-shifted, clamped inverse DCT of blk at block
// (bx, by) of a plane with the given stride, with the integer arithmetic of
// IJG libjpeg's jidctint.c (the "islow" method GDCM uses).
func (d *dctDecoder) idct(blk *[64]int32, plane []int32, stride, bx, by int) {
	const (
		constBits = 13
		f0298     = 2446
		f0390     = 3196
		f0541     = 4433
		f0765     = 6270
		f0899     = 7373
		f1175     = 9633
		f1501     = 12299
		f1847     = 15137
		f1961     = 16069
		f2053     = 16819
		f2562     = 20995
		f3072     = 25172
	)
	pass1 := 2
	if d.prec > 8 {
		pass1 = 1
	}
	descale := func(x int64, n int) int64 { return (x + 1<<(n-1)) >> n }
	// butterfly computes one 1-D inverse DCT of in[0..7] (stride st),
	// descaled by n bits.
	butterfly := func(in func(i int) int64, n int) (out [8]int64) {
		z2, z3 := in(2), in(6)
		z1 := (z2 + z3) * f0541
		tmp2 := z1 - z3*f1847
		tmp3 := z1 + z2*f0765
		tmp0 := (in(0) + in(4)) << constBits
		tmp1 := (in(0) - in(4)) << constBits
		tmp10, tmp13 := tmp0+tmp3, tmp0-tmp3
		tmp11, tmp12 := tmp1+tmp2, tmp1-tmp2
		tmp0, tmp1, tmp2, tmp3 = in(7), in(5), in(3), in(1)
		z1, z2, z3 = tmp0+tmp3, tmp1+tmp2, tmp0+tmp2
		z4 := tmp1 + tmp3
		z5 := (z3 + z4) * f1175
		tmp0 *= f0298
		tmp1 *= f2053
		tmp2 *= f3072
		tmp3 *= f1501
		z1 *= -f0899
		z2 *= -f2562
		z3 = z3*-f1961 + z5
		z4 = z4*-f0390 + z5
		tmp0 += z1 + z3
		tmp1 += z2 + z4
		tmp2 += z2 + z3
		tmp3 += z1 + z4
		out[0], out[7] = descale(tmp10+tmp3, n), descale(tmp10-tmp3, n)
		out[1], out[6] = descale(tmp11+tmp2, n), descale(tmp11-tmp2, n)
		out[2], out[5] = descale(tmp12+tmp1, n), descale(tmp12-tmp1, n)
		out[3], out[4] = descale(tmp13+tmp0, n), descale(tmp13-tmp0, n)
		return out
	}
	var ws [64]int64
	for x := 0; x < 8; x++ { // columns
		col := butterfly(func(i int) int64 { return int64(blk[i*8+x]) }, constBits-pass1)
		for y := 0; y < 8; y++ {
			ws[y*8+x] = col[y]
		}
	}
	center := int64(1) << (d.prec - 1)
	maxv := int64(1)<<d.prec - 1
	for y := 0; y < 8; y++ { // rows
		row := butterfly(func(i int) int64 { return ws[y*8+i] }, constBits+pass1+3)
		for x := 0; x < 8; x++ {
			plane[(by*8+y)*stride+bx*8+x] = int32(max(0, min(maxv, row[x]+center)))
		}
	}
}

// sample returns component k at (x, y) of its own (possibly subsampled)
// plane.
func (d *dctDecoder) sample(k, x, y int) int {
	return int(d.planes[k][y*d.comps[k].bw*8+x])
}

// compSize returns the size of component k's plane within the image, as
// libjpeg computes it (downsampled_width and downsampled_height).
func (d *dctDecoder) compSize(k int) (int, int) {
	c := d.comps[k]
	return (d.w*c.h + d.hmax - 1) / d.hmax, (d.h*c.v + d.vmax - 1) / d.vmax
}
