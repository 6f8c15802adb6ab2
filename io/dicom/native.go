package dicom

import (
	"encoding/binary"
	"fmt"
)

// nativeFrames splits uncompressed pixel data into frames of little-endian
// stored values, channels interleaved.
func nativeFrames(in *info, ds *dataset, px *element) ([][]byte, error) {
	data := px.value
	n := in.frameLen()
	if ds.order == binary.BigEndian && px.vr == "OW" && in.bitsAlloc <= 8 {
		// OW is a stream of 16-bit words: big-endian encoding swaps each
		// pair of 8-bit (or bit-packed) samples. pydicom 2.3.1, which
		// wrote the reference, does not swap them back (see the tests).
		swapped := make([]byte, len(data)&^1)
		swapWords(swapped, data, 2)
		data = swapped
	}
	if in.bitsAlloc == 1 {
		return unpackBits(data, n, in.frames)
	}
	bpe := in.bitsAlloc / 8
	ybr422 := in.photometric == "YBR_FULL_422" && in.spp == 3
	frameBytes := n * bpe
	if ybr422 {
		if in.cols%2 != 0 {
			return nil, fmt.Errorf("dicom: YBR_FULL_422 with odd width %d", in.cols)
		}
		frameBytes = in.rows * in.cols * 2 * bpe
	}
	if need := int64(frameBytes) * int64(in.frames); int64(len(data)) < need {
		return nil, fmt.Errorf("dicom: pixel data has %d bytes, %d frame(s) of %dx%dx%d at %d bits need %d (truncated file?)",
			len(data), in.frames, in.rows, in.cols, in.spp, in.bitsAlloc, need)
	}
	frames := make([][]byte, in.frames)
	for f := range frames {
		src := data[f*frameBytes : (f+1)*frameBytes]
		buf := make([]byte, frameBytes)
		if ds.order == binary.BigEndian {
			swapWords(buf, src, bpe)
		} else {
			copy(buf, src)
		}
		switch {
		case ybr422:
			buf = expandYBR422(buf, bpe)
		case in.spp > 1 && in.planar == 1:
			buf = interleave(buf, in.rows*in.cols, in.spp, bpe)
		}
		frames[f] = buf
	}
	return frames, nil
}

// unpackBits unpacks bit-packed data (BitsAllocated 1, least significant
// bit first, frames not byte-aligned) to one byte per pixel.
func unpackBits(data []byte, n, frames int) ([][]byte, error) {
	bits := int64(n) * int64(frames)
	if need := (bits + 7) / 8; int64(len(data)) < need {
		return nil, fmt.Errorf("dicom: pixel data has %d bytes, %d frame(s) of %d one-bit pixels need %d (truncated file?)",
			len(data), frames, n, need)
	}
	out := make([][]byte, frames)
	for f := range out {
		buf := make([]byte, n)
		for i := range buf {
			k := f*n + i
			buf[i] = data[k>>3] >> (k & 7) & 1
		}
		out[f] = buf
	}
	return out, nil
}

// swapWords copies src into dst reversing the byte order of each size-byte
// word.
func swapWords(dst, src []byte, size int) {
	if size == 1 {
		copy(dst, src)
		return
	}
	for i := 0; i+size <= len(src); i += size {
		for j := 0; j < size; j++ {
			dst[i+j] = src[i+size-1-j]
		}
	}
}

// interleave turns planar data (all of channel 0, then channel 1, ...) into
// interleaved samples.
func interleave(src []byte, pixels, channels, bpe int) []byte {
	dst := make([]byte, len(src))
	for c := 0; c < channels; c++ {
		plane := src[c*pixels*bpe:]
		for p := 0; p < pixels; p++ {
			copy(dst[(p*channels+c)*bpe:(p*channels+c+1)*bpe], plane[p*bpe:(p+1)*bpe])
		}
	}
	return dst
}

// expandYBR422 expands horizontally subsampled Y1 Y2 Cb Cr groups to
// Y1 Cb Cr Y2 Cb Cr, as pydicom does for native YBR_FULL_422.
func expandYBR422(src []byte, bpe int) []byte {
	dst := make([]byte, len(src)/2*3)
	for g := 0; g+4*bpe <= len(src); g += 4 * bpe {
		y1, y2, cb, cr := src[g:g+bpe], src[g+bpe:g+2*bpe], src[g+2*bpe:g+3*bpe], src[g+3*bpe:g+4*bpe]
		o := dst[g/4*6:]
		for i, s := range [][]byte{y1, cb, cr, y2, cb, cr} {
			copy(o[i*bpe:], s)
		}
	}
	return dst
}
