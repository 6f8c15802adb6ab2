package jpegll

import "encoding/binary"

// This file holds a small lossless JPEG encoder used only by the tests, to
// produce streams dcmtk cannot write: restart intervals, non-interleaved
// scans, 2-bit precision. Its output is checked against dcmtk's decoder in
// TestTestEncoderAgainstDcmtk, so it is not trusted blindly.

// testHuffCounts/testHuffVals define one Huffman table for categories 0..16
// with codes of 2 to 16 bits, so decoding uses both the lookup table and the
// slow path.
var (
	testHuffCounts = [16]byte{0, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0, 1}
	testHuffVals   = []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
)

type encParams struct {
	w, h, nc, precision, sv, pt, restart int
	interleaved                          bool
}

type bitWriter struct {
	out  []byte
	acc  uint32
	nacc uint
}

func (b *bitWriter) write(v uint32, n uint) {
	for i := int(n) - 1; i >= 0; i-- {
		b.acc = b.acc<<1 | (v>>uint(i))&1
		b.nacc++
		if b.nacc == 8 {
			b.out = append(b.out, byte(b.acc))
			if byte(b.acc) == 0xFF {
				b.out = append(b.out, 0)
			}
			b.acc, b.nacc = 0, 0
		}
	}
}

// flush pads the last byte with 1 bits.
func (b *bitWriter) flush() {
	for b.nacc != 0 {
		b.write(1, 1)
	}
}

// encodeTest encodes samples (interleaved, values below 2^precision).
func encodeTest(samples []uint16, p encParams) []byte {
	// Canonical codes.
	var codes [17]uint32
	var lens [17]uint
	code, k := uint32(0), 0
	for l := 1; l <= 16; l++ {
		for i := 0; i < int(testHuffCounts[l-1]); i++ {
			codes[testHuffVals[k]] = code
			lens[testHuffVals[k]] = uint(l)
			code++
			k++
		}
		code <<= 1
	}
	out := []byte{0xFF, 0xD8}
	seg := func(m byte, payload []byte) {
		out = append(out, 0xFF, m, 0, 0)
		binary.BigEndian.PutUint16(out[len(out)-2:], uint16(len(payload)+2))
		out = append(out, payload...)
	}
	sof := []byte{byte(p.precision), byte(p.h >> 8), byte(p.h), byte(p.w >> 8), byte(p.w), byte(p.nc)}
	for c := 0; c < p.nc; c++ {
		sof = append(sof, byte(c+1), 0x11, 0)
	}
	seg(0xC3, sof)
	seg(0xC4, append(append([]byte{0x00}, testHuffCounts[:]...), testHuffVals...))
	if p.restart > 0 {
		seg(0xDD, []byte{byte(p.restart >> 8), byte(p.restart)})
	}
	// Input to the predictor: samples shifted right by pt.
	src := make([]int32, len(samples))
	for i, s := range samples {
		src[i] = int32(s >> p.pt)
	}
	var scans [][]int
	if p.interleaved {
		all := make([]int, p.nc)
		for c := range all {
			all[c] = c
		}
		scans = [][]int{all}
	} else {
		for c := 0; c < p.nc; c++ {
			scans = append(scans, []int{c})
		}
	}
	for _, sc := range scans {
		sos := []byte{byte(len(sc))}
		for _, c := range sc {
			sos = append(sos, byte(c+1), 0x00)
		}
		sos = append(sos, byte(p.sv), 0, byte(p.pt))
		seg(0xDA, sos)
		bw := &bitWriter{}
		mcus, rst := 0, 0
		firstRow := 0
		for y := 0; y < p.h; y++ {
			for x := 0; x < p.w; x++ {
				if p.restart > 0 && mcus == p.restart {
					bw.flush()
					bw.out = append(bw.out, 0xFF, byte(0xD0+rst))
					rst = (rst + 1) & 7
					mcus = 0
					firstRow = y
				}
				for _, c := range sc {
					at := func(xx, yy int) int32 { return src[(yy*p.w+xx)*p.nc+c] }
					var pred int32
					switch {
					case y == firstRow && x == 0:
						pred = 1 << (p.precision - p.pt - 1)
					case y == firstRow:
						pred = at(x-1, y)
					case x == 0:
						pred = at(x, y-1)
					default:
						ra, rb, rc := at(x-1, y), at(x, y-1), at(x-1, y-1)
						switch p.sv {
						case 1:
							pred = ra
						case 2:
							pred = rb
						case 3:
							pred = rc
						case 4:
							pred = ra + rb - rc
						case 5:
							pred = ra + floorHalf(rb-rc)
						case 6:
							pred = rb + floorHalf(ra-rc)
						case 7:
							pred = (ra + rb) / 2
						}
					}
					d := (at(x, y) - pred) & 0xFFFF
					if d >= 32768 {
						d -= 65536 // -32768..32767; 32768 is coded as category 16
					}
					var s uint
					if d == -32768 {
						bw.write(codes[16], lens[16])
						continue
					}
					a := d
					if a < 0 {
						a = -a
					}
					for a>>s != 0 {
						s++
					}
					bw.write(codes[s], lens[s])
					if s > 0 {
						v := d
						if d < 0 {
							v = d + 1<<s - 1
						}
						bw.write(uint32(v), s)
					}
				}
				mcus++
			}
		}
		bw.flush()
		out = append(out, bw.out...)
	}
	return append(out, 0xFF, 0xD9)
}

// floorHalf is v/2 rounded towards minus infinity (an arithmetic shift).
func floorHalf(v int32) int32 {
	if v >= 0 {
		return v / 2
	}
	return -((-v + 1) / 2)
}
