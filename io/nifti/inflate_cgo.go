//go:build cgo && !multiad_nocgo && !dicom_nocgo

// Whole-buffer gzip inflation with libdeflate (Debian's libdeflate-dev), about
// twice as fast as a streaming inflater. Build with the tag multiad_nocgo (or
// CGO_ENABLED=0) to leave it out: .nii.gz files then inflate with
// klauspost/compress, streaming, as before.

package nifti

/*
#cgo LDFLAGS: -ldeflate
#include <libdeflate.h>

// gunzip inflates one gzip member of src into dst, which must be exactly as
// long as the member's data; it checks the CRC-32 and the length.
static int gunzip(const void* src, size_t n, void* dst, size_t dstn, size_t* inUsed, size_t* outUsed) {
	struct libdeflate_decompressor* d = libdeflate_alloc_decompressor();
	if (!d) return -1;
	int r = libdeflate_gzip_decompress_ex(d, src, n, dst, dstn, inUsed, outUsed);
	libdeflate_free_decompressor(d);
	return r;
}
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// haveLibdeflate tells whether inflateAll is built in.
const haveLibdeflate = true

// inflateAll inflates the whole gzip stream src, whose data must be at least
// need bytes and at most maxTrailing more, into one buffer. It returns nil,
// with no error, when that cannot be done in one call (the trailer's length
// is out of that range, the file has several gzip members, or the trailer's
// length does not match the data): the caller then streams, which reports
// the exact error. A stream whose data or CRC-32 is wrong is an error.
func inflateAll(src []byte, need int64) ([]byte, error) {
	if len(src) < 18 || need <= 0 {
		return nil, nil
	}
	size := int64(binary.LittleEndian.Uint32(src[len(src)-4:])) // ISIZE: the data's length mod 2^32
	if size < need || size-need > maxTrailing {
		return nil, nil
	}
	out := make([]byte, size)
	var inUsed, outUsed C.size_t
	r := C.gunzip(unsafe.Pointer(&src[0]), C.size_t(len(src)), unsafe.Pointer(&out[0]), C.size_t(size), &inUsed, &outUsed)
	switch {
	case r == C.LIBDEFLATE_SUCCESS && int(inUsed) == len(src) && int64(outUsed) == size:
		return out, nil
	case r == C.LIBDEFLATE_BAD_DATA:
		return nil, fmt.Errorf("nifti: gzip: corrupt data or CRC-32 mismatch")
	case r < 0:
		return nil, fmt.Errorf("nifti: gzip: libdeflate could not allocate a decompressor")
	}
	return nil, nil
}
