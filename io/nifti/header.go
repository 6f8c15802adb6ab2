package nifti

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"

	gzip "github.com/klauspost/compress/gzip"
)

// Header sizes and magics of the two NIfTI versions.
const (
	SizeV1 = 348 // sizeof_hdr of NIfTI-1
	SizeV2 = 540 // sizeof_hdr of NIfTI-2
)

// NIfTI datatype codes (nifti1.h).
const (
	DTUint8   = 2
	DTInt16   = 4
	DTInt32   = 8
	DTFloat32 = 16
	DTFloat64 = 64
	DTRGB24   = 128
	DTInt8    = 256
	DTUint16  = 512
	DTUint32  = 768
	DTInt64   = 1024
	DTUint64  = 1280
	DTRGBA32  = 2304
)

// Header is the parsed NIfTI-1 or NIfTI-2 header. NIfTI-1 fields are widened
// to the NIfTI-2 types.
type Header struct {
	// Version is 1 or 2.
	Version int
	// ByteOrder is the byte order of the header and the data.
	ByteOrder binary.ByteOrder
	// Magic is "n+1"/"n+2" for a single .nii file or "ni1"/"ni2" for a
	// .hdr/.img pair.
	Magic string
	// Dim holds the number of dimensions in Dim[0] and the sizes in
	// Dim[1..Dim[0]]; sizes past Dim[0] are not meaningful.
	Dim [8]int64
	// Datatype is the NIfTI datatype code (DTInt16, ...) and Bitpix its size
	// in bits as the header states it.
	Datatype int16
	Bitpix   int16
	// Pixdim holds qfac in Pixdim[0] and the voxel sizes in Pixdim[1..].
	Pixdim [8]float64
	// VoxOffset is the byte offset of the data in the .nii (or .img) file.
	VoxOffset int64
	// SclSlope and SclInter map stored values to physical values. A zero or
	// non-finite slope means the data are not scaled.
	SclSlope, SclInter float64
	// QformCode and SformCode say whether the qform (Quatern, QOffset,
	// Pixdim[0]) and the sform (Srow) affines are set.
	QformCode, SformCode int32
	Quatern, QOffset     [3]float64
	Srow                 [3][4]float64
	// XYZTUnits and IntentCode are copied from the header.
	XYZTUnits  int32
	IntentCode int32
	// Descrip is the free-text description.
	Descrip string
}

// Single reports whether the header belongs to a single .nii file (data in
// the same file) rather than a .hdr/.img pair.
func (h *Header) Single() bool { return strings.HasPrefix(h.Magic, "n+") }

// Size returns the header size in bytes (348 or 540).
func (h *Header) Size() int {
	if h.Version == 2 {
		return SizeV2
	}
	return SizeV1
}

// Shape returns the sizes of the Dim[0] dimensions.
func (h *Header) Shape() []int64 { return append([]int64(nil), h.Dim[1:1+h.Dim[0]]...) }

// ReadHeader parses the header of a .nii, .nii.gz or .hdr stream. Gzip is
// detected by content; only the header bytes are inflated.
func ReadHeader(data []byte) (*Header, error) {
	h, _, err := readHeader(data)
	return h, err
}

// isGzip reports whether data starts with the gzip magic.
func isGzip(data []byte) bool { return len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b }

// maxRatio bounds how much a DEFLATE stream can inflate (the format's limit
// is about 1032:1). A header that needs more bytes than the compressed input
// could possibly hold is rejected before anything is allocated.
const maxRatio = 1040

// readHeader parses the header and returns a reader positioned just after
// it: over the inflated stream for gzip input, over data otherwise.
func readHeader(data []byte) (*Header, io.Reader, error) {
	var r io.Reader = bytes.NewReader(data)
	if isGzip(data) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, nil, fmt.Errorf("nifti: gzip: %w", err)
		}
		r = zr
	}
	var buf [SizeV2]byte
	if _, err := io.ReadFull(r, buf[:4]); err != nil {
		return nil, nil, fmt.Errorf("nifti: reading header: %w", noEOF(err))
	}
	var order binary.ByteOrder
	size := 0
	for _, o := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		if n := int32(o.Uint32(buf[:4])); n == SizeV1 || n == SizeV2 {
			order, size = o, int(n)
			break
		}
	}
	if order == nil {
		return nil, nil, fmt.Errorf("nifti: not a NIfTI header: sizeof_hdr is % x, want 348 or 540", buf[:4])
	}
	if _, err := io.ReadFull(r, buf[4:size]); err != nil {
		return nil, nil, fmt.Errorf("nifti: reading %d-byte header: %w", size, noEOF(err))
	}
	var h *Header
	var err error
	if size == SizeV1 {
		h, err = parseV1(buf[:size], order)
	} else {
		h, err = parseV2(buf[:size], order)
	}
	if err != nil {
		return nil, nil, err
	}
	return h, r, nil
}

// noEOF turns a premature end of input into a "truncated" error.
func noEOF(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("truncated input")
	}
	return err
}

func parseV1(b []byte, o binary.ByteOrder) (*Header, error) {
	h := &Header{Version: 1, ByteOrder: o, Magic: cstring(b[344:348])}
	if h.Magic != "n+1" && h.Magic != "ni1" {
		return nil, fmt.Errorf("nifti: bad NIfTI-1 magic %q (ANALYZE 7.5 is not supported)", b[344:348])
	}
	i16 := func(off int) int16 { return int16(o.Uint16(b[off:])) }
	f32 := func(off int) float64 { return float64(math.Float32frombits(o.Uint32(b[off:]))) }
	for i := range h.Dim {
		h.Dim[i] = int64(i16(40 + 2*i))
		h.Pixdim[i] = f32(76 + 4*i)
	}
	h.IntentCode = int32(i16(68))
	h.Datatype, h.Bitpix = i16(70), i16(72)
	vo := f32(108)
	if math.IsNaN(vo) || vo < 0 || vo > 1<<31 {
		return nil, fmt.Errorf("nifti: bad vox_offset %v", vo)
	}
	h.VoxOffset = int64(vo)
	h.SclSlope, h.SclInter = f32(112), f32(116)
	h.XYZTUnits = int32(b[123])
	h.Descrip = cstring(b[148:228])
	h.QformCode, h.SformCode = int32(i16(252)), int32(i16(254))
	for i := 0; i < 3; i++ {
		h.Quatern[i] = f32(256 + 4*i)
		h.QOffset[i] = f32(268 + 4*i)
		for j := 0; j < 4; j++ {
			h.Srow[i][j] = f32(280 + 16*i + 4*j)
		}
	}
	return h, h.check()
}

func parseV2(b []byte, o binary.ByteOrder) (*Header, error) {
	h := &Header{Version: 2, ByteOrder: o, Magic: cstring(b[4:8])}
	if (h.Magic != "n+2" && h.Magic != "ni2") || string(b[8:12]) != "\r\n\x1a\n" {
		return nil, fmt.Errorf("nifti: bad NIfTI-2 magic %q", b[4:12])
	}
	i64 := func(off int) int64 { return int64(o.Uint64(b[off:])) }
	f64 := func(off int) float64 { return math.Float64frombits(o.Uint64(b[off:])) }
	i32 := func(off int) int32 { return int32(o.Uint32(b[off:])) }
	h.Datatype, h.Bitpix = int16(o.Uint16(b[12:])), int16(o.Uint16(b[14:]))
	for i := range h.Dim {
		h.Dim[i] = i64(16 + 8*i)
		h.Pixdim[i] = f64(104 + 8*i)
	}
	h.VoxOffset = i64(168)
	if h.VoxOffset < 0 {
		return nil, fmt.Errorf("nifti: bad vox_offset %d", h.VoxOffset)
	}
	h.SclSlope, h.SclInter = f64(176), f64(184)
	h.Descrip = cstring(b[240:320])
	h.QformCode, h.SformCode = i32(344), i32(348)
	for i := 0; i < 3; i++ {
		h.Quatern[i] = f64(352 + 8*i)
		h.QOffset[i] = f64(376 + 8*i)
		for j := 0; j < 4; j++ {
			h.Srow[i][j] = f64(400 + 32*i + 8*j)
		}
	}
	h.XYZTUnits, h.IntentCode = i32(500), i32(504)
	return h, h.check()
}

// check validates the dimensions and the data type.
func (h *Header) check() error {
	n := h.Dim[0]
	if n < 1 || n > 7 {
		return fmt.Errorf("nifti: dim[0] is %d, want 1..7", n)
	}
	for i := 1; i <= int(n); i++ {
		if h.Dim[i] <= 0 {
			return fmt.Errorf("nifti: dim[%d] is %d, want > 0", i, h.Dim[i])
		}
	}
	if _, err := h.elem(); err != nil {
		return err
	}
	return nil
}

// cstring returns b up to its first NUL.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// Affine returns the voxel-to-world (RAS+ mm) affine as nibabel's
// get_best_affine does: the sform when sform_code > 0, else the qform when
// qform_code > 0, else a diagonal affine from pixdim centred on the volume
// with the x axis flipped.
func (h *Header) Affine() [4][4]float64 {
	var a [4][4]float64
	a[3][3] = 1
	switch {
	case h.SformCode > 0:
		for i := 0; i < 3; i++ {
			a[i] = h.Srow[i]
		}
	case h.QformCode > 0:
		b, c, d := h.Quatern[0], h.Quatern[1], h.Quatern[2]
		w := 0.0
		if w2 := 1 - (b*b + c*c + d*d); w2 > 0 {
			w = math.Sqrt(w2)
		}
		rot := quatToMat(w, b, c, d)
		vox := [3]float64{h.Pixdim[1], h.Pixdim[2], h.Pixdim[3]}
		if h.Pixdim[0] == -1 {
			vox[2] = -vox[2]
		}
		for i := 0; i < 3; i++ {
			for j := 0; j < 3; j++ {
				a[i][j] = rot[i][j] * vox[j]
			}
			a[i][3] = h.QOffset[i]
		}
	default:
		for i := 0; i < 3; i++ {
			n, z := 1.0, 1.0
			if int64(i) < h.Dim[0] {
				n, z = float64(h.Dim[i+1]), h.Pixdim[i+1]
			}
			if i == 0 {
				z = -z
			}
			a[i][i] = z
			a[i][3] = -(n - 1) / 2 * z
		}
	}
	return a
}

// quatToMat is the rotation matrix of the quaternion (w, x, y, z).
func quatToMat(w, x, y, z float64) [3][3]float64 {
	nq := w*w + x*x + y*y + z*z
	if nq < 1e-15 {
		return [3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}
	}
	s := 2 / nq
	X, Y, Z := x*s, y*s, z*s
	wX, wY, wZ := w*X, w*Y, w*Z
	xX, xY, xZ := x*X, x*Y, x*Z
	yY, yZ, zZ := y*Y, y*Z, z*Z
	return [3][3]float64{
		{1 - (yY + zZ), xY - wZ, xZ + wY},
		{xY + wZ, 1 - (xX + zZ), yZ - wX},
		{xZ - wY, yZ + wX, 1 - (xX + yY)},
	}
}

// Scaling returns the slope and intercept to apply, following nibabel: a zero
// or non-finite slope means no scaling (1, 0); a non-finite intercept is 0.
func (h *Header) Scaling() (slope, inter float64) {
	s, i := h.SclSlope, h.SclInter
	if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return 1, 0
	}
	if math.IsNaN(i) || math.IsInf(i, 0) {
		i = 0
	}
	return s, i
}
