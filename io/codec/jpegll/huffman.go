package jpegll

import (
	"encoding/binary"
	"fmt"
)

// fastBits is the code length resolved by one table lookup.
const fastBits = 9

// huffTable is a Huffman table of difference categories (SSSS).
type huffTable struct {
	// fast[peek] = length<<8 | value for codes of at most fastBits bits,
	// indexed by the next fastBits bits; 0 means "longer code or invalid".
	fast [1 << fastBits]uint16
	// For code length l: codes mincode[l]..maxcode[l] map to
	// vals[valptr[l]+code-mincode[l]]; maxcode[l] = -1 when there are none.
	maxcode [17]int32
	mincode [17]int32
	valptr  [17]int32
	vals    [256]byte
}

// newHuffTable builds the canonical code of T.81 Annex C from the number of
// codes of each length (1..16) and the values in code order.
func newHuffTable(counts [16]int, vals []byte) (*huffTable, error) {
	t := &huffTable{}
	copy(t.vals[:], vals)
	code, k := int32(0), int32(0)
	for l := 1; l <= 16; l++ {
		n := int32(counts[l-1])
		t.valptr[l] = k
		t.mincode[l] = code
		if n == 0 {
			t.maxcode[l] = -1
		} else {
			t.maxcode[l] = code + n - 1
		}
		// A length l has 2^l codes; the all-ones code is reserved.
		if code+n > 1<<l || (code+n == 1<<l && n > 0) {
			return nil, fmt.Errorf("DHT code lengths overflow at length %d", l)
		}
		if l <= fastBits {
			for c := code; c < code+n; c++ {
				e := uint16(l)<<8 | uint16(vals[k+c-code])
				shift := fastBits - l
				for j := int32(0); j < 1<<shift; j++ {
					t.fast[c<<shift|j] = e
				}
			}
		}
		k += n
		code = (code + n) << 1
	}
	return t, nil
}

// bitReader reads the entropy-coded data of a scan. It holds up to 64 bits,
// most significant first. At a marker or at the end of the data it feeds
// zero bits and counts them in pad; consuming any of those means the data
// was truncated.
type bitReader struct {
	data []byte
	pos  int    // next byte of data to read
	acc  uint64 // bits, left aligned
	n    uint   // valid bits in acc
	pad  uint   // trailing zero bits in acc that are not data
}

// fill tops up acc to more than 56 bits.
func (r *bitReader) fill() {
	// Fast path: when the next 8 bytes hold no 0xFF, load as many whole
	// bytes as fit at once.
	if r.n <= 56 && r.pos+8 <= len(r.data) {
		word := binary.BigEndian.Uint64(r.data[r.pos:])
		if x := ^word; (x-0x0101010101010101)&^x&0x8080808080808080 == 0 {
			k := (64 - r.n) >> 3 // bytes that fit
			r.acc |= word >> (64 - 8*k) << (64 - 8*k - r.n)
			r.n += 8 * k
			r.pos += int(k)
		}
	}
	for r.n <= 56 {
		if r.pos < len(r.data) {
			b := r.data[r.pos]
			if b != 0xFF {
				r.acc |= uint64(b) << (56 - r.n)
				r.n += 8
				r.pos++
				continue
			}
			if r.pos+1 < len(r.data) && r.data[r.pos+1] == 0 {
				r.acc |= 0xFF << (56 - r.n)
				r.n += 8
				r.pos += 2
				continue
			}
		}
		// A marker or the end of the data: feed zeros.
		r.n += 8
		r.pad += 8
	}
}

// truncated reports whether bits past the end of the data were consumed.
func (r *bitReader) truncated() bool { return r.pad > r.n }

// reset discards the buffered bits (at a restart marker).
func (r *bitReader) reset() { r.acc, r.n, r.pad = 0, 0, 0 }

// diffs decodes len(out) difference values, the i-th with table
// tables[i%len(tables)]. On an invalid code or category it returns the index
// of the value and ok = false.
func (r *bitReader) diffs(tables []*huffTable, out []int32) (i int, ok bool) {
	// The bit buffer lives in locals in this loop; it is written back to r
	// around the calls that need it.
	acc, n := r.acc, r.n
	k := 0
	for i = range out {
		t := tables[k]
		if k++; k == len(tables) {
			k = 0
		}
		if n < 32 { // enough for a 16-bit code and 15 extra bits
			r.acc, r.n = acc, n
			r.fill()
			acc, n = r.acc, r.n
		}
		// The difference category SSSS.
		var s uint
		if e := t.fast[acc>>(64-fastBits)]; e != 0 {
			l := uint(e >> 8)
			acc <<= l
			n -= l
			s = uint(e & 0xFF)
		} else {
			r.acc, r.n = acc, n
			s, ok = r.slowCode(t)
			acc, n = r.acc, r.n
			if !ok {
				return i, false
			}
		}
		// The difference: SSSS extra bits, sign-extended (T.81 F.2.2.1).
		var v int32
		switch {
		case s == 0:
		case s < 16:
			v = int32(acc >> (64 - s))
			acc <<= s
			n -= s
			if v < 1<<(s-1) {
				v += 1 - 1<<s
			}
		case s == 16:
			// T.81 H.1.2.2: category 16 is the difference 32768, with no
			// extra bits.
			v = 32768
		default:
			r.acc, r.n = acc, n
			return i, false
		}
		out[i] = v
	}
	r.acc, r.n = acc, n
	return 0, true
}

// slowCode decodes a Huffman code longer than fastBits bits (or an
// invalid one: ok is false). The caller has filled the buffer.
func (r *bitReader) slowCode(t *huffTable) (s uint, ok bool) {
	for l := uint(fastBits + 1); l <= 16; l++ {
		code := int32(r.acc >> (64 - l))
		if code <= t.maxcode[l] {
			r.acc <<= l
			r.n -= l
			return uint(t.vals[t.valptr[l]+code-t.mincode[l]]), true
		}
	}
	return 0, false
}
