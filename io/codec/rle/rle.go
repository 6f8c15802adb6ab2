// Package rle implements the DICOM RLE Lossless codec (transfer syntax
// 1.2.840.10008.1.2.5, DICOM PS3.5 Annex G).
//
// An RLE frame starts with a 64-byte header: the number of segments (uint32
// little endian) followed by 15 segment offsets. Each segment holds one byte
// plane (most significant byte first within a sample, sample planes in order)
// compressed with a PackBits-style run-length scheme. Decode returns native
// little-endian samples with the samples of a pixel interleaved (planar
// configuration 0), which is what an uncompressed DICOM frame holds.
package rle

import (
	"encoding/binary"
	"fmt"
	"math"
)

const (
	headerSize  = 64
	maxSegments = 15
	// maxExpansion is the largest number of output bytes one input byte
	// of a segment can produce: a two-byte replicate run yields 128 bytes.
	maxExpansion = 64
)

// frameGeometry validates the frame parameters and returns the number of
// bytes per sample and the number of pixels.
func frameGeometry(rows, cols, samplesPerPixel, bitsAllocated int) (bytesPerSample, pixels int, err error) {
	if rows <= 0 || cols <= 0 {
		return 0, 0, fmt.Errorf("rle: invalid frame size %dx%d", rows, cols)
	}
	if samplesPerPixel <= 0 {
		return 0, 0, fmt.Errorf("rle: invalid samples per pixel %d", samplesPerPixel)
	}
	if bitsAllocated <= 0 || bitsAllocated%8 != 0 {
		return 0, 0, fmt.Errorf("rle: unsupported bits allocated %d (need a multiple of 8)", bitsAllocated)
	}
	bytesPerSample = bitsAllocated / 8
	if samplesPerPixel*bytesPerSample > maxSegments {
		return 0, 0, fmt.Errorf("rle: %d samples of %d bits need %d segments, at most %d allowed",
			samplesPerPixel, bitsAllocated, samplesPerPixel*bytesPerSample, maxSegments)
	}
	if int64(rows)*int64(cols) > math.MaxInt32 {
		return 0, 0, fmt.Errorf("rle: frame size %dx%d too large", rows, cols)
	}
	return bytesPerSample, rows * cols, nil
}

// Decode decodes one DICOM RLE Lossless frame (the 64-byte header and its
// segments) into native little-endian samples, pixels in row-major order and
// the samples of each pixel interleaved, bitsAllocated/8 bytes per sample.
// The result has exactly rows*cols*samplesPerPixel*bitsAllocated/8 bytes.
func Decode(frame []byte, rows, cols, samplesPerPixel, bitsAllocated int) ([]byte, error) {
	bps, pixels, err := frameGeometry(rows, cols, samplesPerPixel, bitsAllocated)
	if err != nil {
		return nil, err
	}
	if len(frame) < headerSize {
		return nil, fmt.Errorf("rle: frame of %d bytes is shorter than the %d-byte header", len(frame), headerSize)
	}
	nseg := int(binary.LittleEndian.Uint32(frame))
	want := samplesPerPixel * bps
	if nseg != want {
		return nil, fmt.Errorf("rle: header has %d segments, %d samples of %d bits need %d", nseg, samplesPerPixel, bitsAllocated, want)
	}
	// Segment boundaries: segment i spans offsets[i]..offsets[i+1] (the last
	// one runs to the end of the frame).
	var bounds [maxSegments + 1]int
	for i := 0; i < nseg; i++ {
		off := int64(binary.LittleEndian.Uint32(frame[4+4*i:]))
		if off < headerSize || off > int64(len(frame)) {
			return nil, fmt.Errorf("rle: segment %d offset %d outside the frame (header 64 bytes, frame %d bytes)", i, off, len(frame))
		}
		if i > 0 && int(off) < bounds[i-1] {
			return nil, fmt.Errorf("rle: segment %d offset %d precedes segment %d offset %d", i, off, i-1, bounds[i-1])
		}
		bounds[i] = int(off)
	}
	bounds[nseg] = len(frame)
	// A segment of n bytes expands to at most 64n bytes: reject frames that
	// cannot hold the claimed size before allocating the output.
	for i := 0; i < nseg; i++ {
		if n := bounds[i+1] - bounds[i]; int64(n)*maxExpansion < int64(pixels) {
			return nil, fmt.Errorf("rle: segment %d at byte %d has %d bytes, too few for %d pixels", i, bounds[i], n, pixels)
		}
	}
	out := make([]byte, pixels*want)
	stride := want
	for s := 0; s < samplesPerPixel; s++ {
		for k := 0; k < bps; k++ {
			seg := s*bps + k
			// Segments are most significant byte first; output is little endian.
			start := s*bps + (bps - 1 - k)
			if err := decodeSegment(out[start:], stride, pixels, frame[bounds[seg]:bounds[seg+1]]); err != nil {
				return nil, fmt.Errorf("rle: segment %d at byte %d: %w", seg, bounds[seg], err)
			}
		}
	}
	return out, nil
}

// decodeSegment expands one PackBits segment into n bytes written to
// dst[0], dst[stride], ..., dst[(n-1)*stride]. Bytes left over in the
// segment after n bytes (padding) are ignored.
func decodeSegment(dst []byte, stride, n int, src []byte) error {
	if stride == 1 {
		return decodeSegmentContiguous(dst[:n], src)
	}
	o, i := 0, 0 // o: output byte count, i: input position
	for o < n {
		if i >= len(src) {
			return fmt.Errorf("truncated after %d of %d bytes", o, n)
		}
		c := int(int8(src[i]))
		i++
		switch {
		case c >= 0: // literal run of c+1 bytes
			cnt := c + 1
			if i+cnt > len(src) {
				return fmt.Errorf("literal run of %d bytes at segment byte %d overruns the segment (%d bytes)", cnt, i-1, len(src))
			}
			cnt = min(cnt, n-o)
			p := o * stride
			for _, b := range src[i : i+cnt] {
				dst[p] = b
				p += stride
			}
			i += c + 1
			o += cnt
		case c != -128: // replicate next byte 1-c times
			if i >= len(src) {
				return fmt.Errorf("replicate run at segment byte %d lacks its value", i-1)
			}
			b := src[i]
			i++
			cnt := min(1-c, n-o)
			p := o * stride
			for range cnt {
				dst[p] = b
				p += stride
			}
			o += cnt
		}
	}
	return nil
}

// decodeSegmentContiguous is decodeSegment for stride 1.
func decodeSegmentContiguous(dst, src []byte) error {
	n := len(dst)
	o, i := 0, 0
	for o < n {
		if i >= len(src) {
			return fmt.Errorf("truncated after %d of %d bytes", o, n)
		}
		c := int(int8(src[i]))
		i++
		switch {
		case c >= 0:
			cnt := c + 1
			if i+cnt > len(src) {
				return fmt.Errorf("literal run of %d bytes at segment byte %d overruns the segment (%d bytes)", cnt, i-1, len(src))
			}
			o += copy(dst[o:], src[i:i+cnt])
			i += cnt
		case c != -128:
			if i >= len(src) {
				return fmt.Errorf("replicate run at segment byte %d lacks its value", i-1)
			}
			b := src[i]
			i++
			end := min(o+1-c, n)
			fill := dst[o:end]
			for j := range fill {
				fill[j] = b
			}
			o = end
		}
	}
	return nil
}

// Encode encodes native little-endian samples (pixels in row-major order, the
// samples of each pixel interleaved, bitsAllocated/8 bytes per sample) into
// one DICOM RLE Lossless frame. Each row of each byte plane is run-length
// coded separately and every segment is padded to an even length, as PS3.5
// Annex G requires.
func Encode(native []byte, rows, cols, samplesPerPixel, bitsAllocated int) ([]byte, error) {
	bps, pixels, err := frameGeometry(rows, cols, samplesPerPixel, bitsAllocated)
	if err != nil {
		return nil, err
	}
	nseg := samplesPerPixel * bps
	if len(native) != pixels*nseg {
		return nil, fmt.Errorf("rle: native frame has %d bytes, %dx%d pixels of %d samples of %d bits need %d",
			len(native), rows, cols, samplesPerPixel, bitsAllocated, pixels*nseg)
	}
	out := make([]byte, headerSize, headerSize+len(native)+len(native)/64+16)
	binary.LittleEndian.PutUint32(out, uint32(nseg))
	plane := make([]byte, cols)
	for s := 0; s < samplesPerPixel; s++ {
		for k := 0; k < bps; k++ {
			seg := s*bps + k
			if int64(len(out)) > math.MaxUint32 {
				return nil, fmt.Errorf("rle: encoded frame exceeds 4 GiB")
			}
			binary.LittleEndian.PutUint32(out[4+4*seg:], uint32(len(out)))
			src := s*bps + (bps - 1 - k)
			for r := 0; r < rows; r++ {
				base := r * cols * nseg
				for x := range plane {
					plane[x] = native[base+x*nseg+src]
				}
				out = packBits(out, plane)
			}
			if len(out)%2 == 1 {
				out = append(out, 0x80) // no-op byte pads the segment
			}
		}
	}
	return out, nil
}

// packBits appends the PackBits coding of src to dst.
func packBits(dst, src []byte) []byte {
	i := 0
	for i < len(src) {
		// Length of the run of equal bytes starting at i (at most 128).
		run := 1
		for i+run < len(src) && run < 128 && src[i+run] == src[i] {
			run++
		}
		if run >= 2 {
			dst = append(dst, byte(1-run), src[i])
			i += run
			continue
		}
		// Literal: extend until a run of 2+ equal bytes starts, or 128 bytes.
		j := i + 1
		for j < len(src) && j-i < 128 && (j+1 >= len(src) || src[j] != src[j+1]) {
			j++
		}
		dst = append(dst, byte(j-i-1))
		dst = append(dst, src[i:j]...)
		i = j
	}
	return dst
}
