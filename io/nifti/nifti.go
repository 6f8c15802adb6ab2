// Package nifti decodes NIfTI-1 and NIfTI-2 volumes (.nii, .nii.gz and
// .hdr/.img pairs) into 2-D slices.
//
// # Slices and orientation
//
// A volume of shape (nx, ny, nz, nt, ...) = (dim[1], dim[2], dim[3], ...)
// becomes one pixels.Image per 2-D slice taken along the third axis; the
// axes after the second are flattened in file (Fortran) order, so a 4-D
// volume gives nz*nt slices and slice index = t*nz + z.
//
// Slice k has Rows = nx (dim[1]) and Cols = ny (dim[2]), and pixel (r, c) is
// voxel (i, j, k) = (r, c, k). This is what nibabel's array gives for
// img.dataobj[:, :, k] in NumPy (row index = first axis), so slice k of our
// decode equals that NumPy slice element for element. No reorientation by
// the affine is applied. Meta.Spacing is (pixdim[1], pixdim[2]) (row, column
// spacing, as DICOM's PixelSpacing), Meta.SliceSpacing pixdim[3], and
// Meta.Orientation the in-plane direction cosines from the affine in DICOM's
// ImageOrientationPatient convention: LPS+ coordinates, first the direction
// of increasing column index (j), then of increasing row index (i).
//
// Evidence that this lines DICOM and NIfTI up: for the lgg data in shared/
// (data/medical/lgg_dicom vs data/medical/lgg_flair, same patients), pydicom's
// pixel_array of every DICOM slice with mask_slice k equals 16 *
// nibabel_array[:, :, k] exactly (80 of 80 decodable slices: all 48 explicit
// VR slices of TCGA_FG_6691_20020405 and all 32 RLE slices of
// TCGA_HT_7473_19970826), while the transposed slice matches none. So pixel
// (r, c) of our NIfTI slice k equals pixel (r, c) of the DICOM slice / 16.
//
// # Values
//
// Stored values are kept as they are in the file (converted to little-endian):
// uint8, int8, int16, uint16, int32, uint32, float32 and float64 map to the
// pixels type of the same name; RGB24 gives 3 uint8 channels and RGBA32 3
// channels with alpha dropped; int64 and uint64 become float64 (exact up to
// 2^53). NaNs are preserved. scl_slope/scl_inter go to Slope/Intercept, with
// nibabel's rule that a zero or non-finite slope means no scaling; RGB data
// are never scaled. bitpix is not trusted: the datatype decides.
//
// # Limits
//
// Dimensions are checked against pixels.Limits before anything is allocated
// or inflated; a file gives at most MaxSlices slices, and each slice counts
// as at least 256 values against Limits.MaxVoxels. For .nii.gz only the
// header is inflated first; a header asking for more than the compressed
// input could possibly hold is rejected at once, so gzip bombs fail fast.
// Then, when the gzip trailer's length is at most 1 MiB more than the header
// needs and the voxels take at most 256 MiB, the whole stream inflates into
// one buffer with libdeflate (cgo builds), held until the slices are copied
// out; otherwise exactly the bytes the header asks for stream through
// klauspost/compress, one slice at a time, plus at most 1 MiB to reach the
// trailer. Either way the CRC-32 and length are checked.
package nifti

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"

	"github.com/multiad/multiad/io/pixels"

	gzip "github.com/klauspost/compress/gzip"
)

// elemInfo describes how one voxel is stored in the file and decoded.
type elemInfo struct {
	size     int          // bytes per voxel in the file
	swap     int          // size of the units to byte-swap (0: none)
	channels int          // channels kept
	dtype    pixels.DType // output type
	toFloat  int          // 1: int64, 2: uint64 converted to float64
}

// elem returns how the header's datatype is stored and decoded.
func (h *Header) elem() (elemInfo, error) {
	switch h.Datatype {
	case DTUint8:
		return elemInfo{size: 1, channels: 1, dtype: pixels.Uint8}, nil
	case DTInt8:
		return elemInfo{size: 1, channels: 1, dtype: pixels.Int8}, nil
	case DTInt16:
		return elemInfo{size: 2, swap: 2, channels: 1, dtype: pixels.Int16}, nil
	case DTUint16:
		return elemInfo{size: 2, swap: 2, channels: 1, dtype: pixels.Uint16}, nil
	case DTInt32:
		return elemInfo{size: 4, swap: 4, channels: 1, dtype: pixels.Int32}, nil
	case DTUint32:
		return elemInfo{size: 4, swap: 4, channels: 1, dtype: pixels.Uint32}, nil
	case DTFloat32:
		return elemInfo{size: 4, swap: 4, channels: 1, dtype: pixels.Float32}, nil
	case DTFloat64:
		return elemInfo{size: 8, swap: 8, channels: 1, dtype: pixels.Float64}, nil
	case DTInt64:
		return elemInfo{size: 8, swap: 8, channels: 1, dtype: pixels.Float64, toFloat: 1}, nil
	case DTUint64:
		return elemInfo{size: 8, swap: 8, channels: 1, dtype: pixels.Float64, toFloat: 2}, nil
	case DTRGB24:
		return elemInfo{size: 3, channels: 3, dtype: pixels.Uint8}, nil
	case DTRGBA32:
		return elemInfo{size: 4, channels: 3, dtype: pixels.Uint8}, nil
	}
	return elemInfo{}, fmt.Errorf("nifti: unsupported datatype %d", h.Datatype)
}

// MaxSlices caps the number of slices (images) one file may give.
const MaxSlices = 1 << 17

// minSliceCost is what one slice counts against pixels.Limits.MaxVoxels at
// least, for its bookkeeping.
const minSliceCost = 256

// layout is the slice geometry of a volume: rows x cols per slice, slices in
// all, and the bytes of voxel data.
type layout struct {
	rows, cols, slices int64
	nbytes             int64
	elem               elemInfo
}

// plan checks the header's dimensions against lim and computes the layout,
// without allocating.
func (h *Header) plan(lim pixels.Limits) (layout, error) {
	e, err := h.elem()
	if err != nil {
		return layout{}, err
	}
	dim := func(i int) int64 {
		if int64(i) <= h.Dim[0] {
			return h.Dim[i]
		}
		return 1
	}
	rows, cols := dim(1), dim(2)
	slices := int64(1)
	for i := 3; i <= 7; i++ {
		d := dim(i)
		if slices > math.MaxInt32/d {
			return layout{}, fmt.Errorf("nifti: header claims %v voxels, too many slices", h.Shape())
		}
		slices *= d
	}
	if err := lim.Check(rows, cols, int64(e.channels), slices); err != nil {
		return layout{}, fmt.Errorf("nifti: header claims shape %v: %w", h.Shape(), err)
	}
	// Each slice is an Image with its own bookkeeping: tiny slices must not
	// multiply it (a header of 1x1xN slices).
	if slices > MaxSlices {
		return layout{}, fmt.Errorf("nifti: header claims shape %v: %d slices, limit %d", h.Shape(), slices, MaxSlices)
	}
	if per := rows * cols * int64(e.channels); per < minSliceCost {
		if err := lim.Check(minSliceCost, 1, 1, slices); err != nil {
			return layout{}, fmt.Errorf("nifti: header claims shape %v: %d slices of %d values count as %d each: %w",
				h.Shape(), slices, per, minSliceCost, err)
		}
	}
	// Check bounds rows*cols*channels*slices, so only the bytes per voxel
	// can overflow, with limits near 2^63.
	n := rows * cols * slices
	if n > math.MaxInt64/int64(e.size) {
		return layout{}, fmt.Errorf("nifti: header claims shape %v: too many bytes", h.Shape())
	}
	nbytes := n * int64(e.size)
	return layout{rows: rows, cols: cols, slices: slices, nbytes: nbytes, elem: e}, nil
}

// Decode decodes a .nii or .nii.gz file (gzip detected by content) into one
// pixels.Image per 2-D slice, as described in the package documentation.
func Decode(data []byte, lim pixels.Limits) ([]*pixels.Image, error) {
	h, r, err := readHeader(data)
	if err != nil {
		return nil, err
	}
	if !h.Single() {
		return nil, fmt.Errorf("nifti: magic %q: the data are in a separate .img file (use DecodePair)", h.Magic)
	}
	off := h.VoxOffset
	if off == 0 { // some writers leave it unset; the data follow the header and the extension flag
		off = int64(h.Size()) + 4
	}
	if off < int64(h.Size()) {
		return nil, fmt.Errorf("nifti: vox_offset %d lies inside the %d-byte header", off, h.Size())
	}
	return decodeData(h, r, int64(h.Size()), off-int64(h.Size()), data, lim)
}

// DecodePair decodes a .hdr/.img pair (either may be gzip-compressed).
func DecodePair(hdr, img []byte, lim pixels.Limits) ([]*pixels.Image, error) {
	h, _, err := readHeader(hdr)
	if err != nil {
		return nil, err
	}
	var r io.Reader = bytes.NewReader(img)
	if isGzip(img) {
		zr, err := gzip.NewReader(bytes.NewReader(img))
		if err != nil {
			return nil, fmt.Errorf("nifti: .img gzip: %w", err)
		}
		r = zr
	}
	return decodeData(h, r, 0, h.VoxOffset, img, lim)
}

// decodeData skips skip bytes of r and decodes the voxel data that follow.
// src is the (possibly compressed) input r reads from, used to reject
// impossible sizes before allocating; r has read base bytes of src's data.
func decodeData(h *Header, r io.Reader, base, skip int64, src []byte, lim pixels.Limits) ([]*pixels.Image, error) {
	l, err := h.plan(lim)
	if err != nil {
		return nil, err
	}
	avail := int64(len(src))
	if isGzip(src) {
		avail = avail*maxRatio + 1<<16
	}
	if skip > avail || l.nbytes > avail-skip {
		return nil, fmt.Errorf("nifti: truncated: header needs %d data bytes at offset %d, input can hold at most %d", l.nbytes, skip, avail)
	}
	// A .nii.gz inflates in one call (libdeflate, where built in) when its
	// voxels take at most maxWhole and its trailer gives the data's length
	// within maxTrailing of what the header needs; otherwise it streams.
	var plain []byte
	if isGzip(src) && skip <= maxTrailing && l.nbytes <= maxWhole {
		if plain, err = inflateAll(src, base+skip+l.nbytes); err != nil {
			return nil, err
		}
	}
	if plain != nil {
		plain = plain[base+skip:]
	} else if _, err := io.CopyN(io.Discard, r, skip); err != nil {
		return nil, fmt.Errorf("nifti: skipping to vox_offset: %w", noEOF(err))
	}
	slope, inter := h.Scaling()
	if l.elem.channels == 3 {
		slope, inter = 1, 0
	}
	meta := pixels.Meta{
		Format:       "nifti",
		Spacing:      [2]float64{spacing(h.Pixdim[1]), spacing(h.Pixdim[2])},
		SliceSpacing: spacing(h.Pixdim[3]),
		Orientation:  h.orientation(),
		Frames:       int(l.slices),
	}
	if h.Dim[0] < 2 {
		meta.Spacing[1] = 0
	}
	if h.Dim[0] < 3 {
		meta.SliceSpacing = 0
	}
	n := l.rows * l.cols * int64(l.elem.size)
	var raw []byte
	if plain == nil {
		raw = make([]byte, n)
	}
	out := make([]*pixels.Image, 0, l.slices)
	for k := int64(0); k < l.slices; k++ {
		if plain != nil {
			raw = plain[k*n : (k+1)*n]
		} else if _, err := io.ReadFull(r, raw); err != nil {
			return nil, fmt.Errorf("nifti: reading slice %d of %d: %w", k, l.slices, noEOF(err))
		}
		img := pixels.New(int(l.rows), int(l.cols), l.elem.channels, l.elem.dtype)
		img.Slope, img.Intercept = slope, inter
		img.Index, img.IndexKind, img.Meta = int(k), "slice", meta
		transpose(img.Data, raw, int(l.rows), int(l.cols), l.elem, h.ByteOrder == binary.BigEndian)
		out = append(out, img)
	}
	if isGzip(src) && plain == nil {
		if err := checkTrailer(r, min(avail-skip-l.nbytes, maxTrailing)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// maxWhole bounds the voxel bytes of a .nii.gz inflated in one call: the
// whole inflated stream is held while its slices are copied out, so a larger
// volume streams instead, holding one slice at a time.
var maxWhole int64 = 256 << 20

// maxTrailing bounds how much of a gzip stream checkTrailer inflates after
// the voxel data to reach the trailer: a stream with more (padding, or a
// bomb of zeros) is not read further, and its CRC is not checked.
const maxTrailing = 1 << 20

// checkTrailer reads what follows the voxel data in a gzip stream, at most
// limit bytes, so that the reader reaches the gzip trailer and checks the
// data's CRC-32 and length: a stream corrupted in a way that still
// inflates is an error, not silently wrong voxels.
func checkTrailer(r io.Reader, limit int64) error {
	if _, err := io.Copy(io.Discard, io.LimitReader(r, max(limit, 0))); err != nil {
		return fmt.Errorf("nifti: gzip stream after the voxel data: %w", err)
	}
	return nil
}

// transpose copies one slice from file order (i fastest) to row-major order
// with row = i, converting each voxel to its little-endian output form.
func transpose(dst, src []byte, rows, cols int, e elemInfo, bigEndian bool) {
	outSize := e.channels * e.dtype.Size()
	if e.channels == 1 && e.toFloat == 0 && e.size == outSize && (e.swap == 0 || e.swap == e.size) && transposeScalar(dst, src, rows, cols, e.size, bigEndian && e.swap > 1) {
		return
	}
	transposeGeneric(dst, src, rows, cols, e, bigEndian)
}

// transposeGeneric is transpose voxel by voxel, for every element type.
func transposeGeneric(dst, src []byte, rows, cols int, e elemInfo, bigEndian bool) {
	outSize := e.channels * e.dtype.Size()
	var v [8]byte
	for j := 0; j < cols; j++ {
		for i := 0; i < rows; i++ {
			s := src[(j*rows+i)*e.size:][:e.size]
			d := dst[(i*cols+j)*outSize:][:outSize]
			switch {
			case e.channels == 3:
				copy(d, s[:3])
			case bigEndian && e.swap > 1:
				for b := 0; b < e.swap; b++ {
					v[b] = s[e.swap-1-b]
				}
				copy(d, v[:e.swap])
			default:
				copy(d, s)
			}
			if e.toFloat != 0 {
				u := uint64(d[0]) | uint64(d[1])<<8 | uint64(d[2])<<16 | uint64(d[3])<<24 |
					uint64(d[4])<<32 | uint64(d[5])<<40 | uint64(d[6])<<48 | uint64(d[7])<<56
				f := float64(u)
				if e.toFloat == 1 {
					f = float64(int64(u))
				}
				u = math.Float64bits(f)
				for b := 0; b < 8; b++ {
					d[b] = byte(u >> (8 * b))
				}
			}
		}
	}
}

// transposeScalar is transpose for one-channel voxels of 1, 2, 4 or 8 bytes
// kept at their size (byte-swapped when swap): one typed load and store per
// voxel instead of a copy call, in tiles of tile×tile voxels so that the
// strided side of the transpose stays in cache. It reports false for other
// sizes.
func transposeScalar(dst, src []byte, rows, cols, size int, swap bool) bool {
	if size != 1 && size != 2 && size != 4 && size != 8 {
		return false
	}
	le := binary.LittleEndian
	for j0 := 0; j0 < cols; j0 += tile {
		j1 := min(j0+tile, cols)
		for i0 := 0; i0 < rows; i0 += tile {
			i1 := min(i0+tile, rows)
			for i := i0; i < i1; i++ {
				// Row i of dst, columns j0..j1, from column j's voxel i of src.
				switch size {
				case 1:
					d := dst[i*cols+j0 : i*cols+j1]
					for k := range d {
						d[k] = src[(j0+k)*rows+i]
					}
				case 2:
					d := dst[2*(i*cols+j0) : 2*(i*cols+j1)]
					for k := 0; k < len(d); k += 2 {
						v := le.Uint16(src[2*((j0+k/2)*rows+i):])
						if swap {
							v = bits.ReverseBytes16(v)
						}
						le.PutUint16(d[k:], v)
					}
				case 4:
					d := dst[4*(i*cols+j0) : 4*(i*cols+j1)]
					for k := 0; k < len(d); k += 4 {
						v := le.Uint32(src[4*((j0+k/4)*rows+i):])
						if swap {
							v = bits.ReverseBytes32(v)
						}
						le.PutUint32(d[k:], v)
					}
				case 8:
					d := dst[8*(i*cols+j0) : 8*(i*cols+j1)]
					for k := 0; k < len(d); k += 8 {
						v := le.Uint64(src[8*((j0+k/8)*rows+i):])
						if swap {
							v = bits.ReverseBytes64(v)
						}
						le.PutUint64(d[k:], v)
					}
				}
			}
		}
	}
	return true
}

// tile is the side of transposeScalar's square tiles: 32 source columns of
// one cache line each stay resident while their 32 voxels are moved.
const tile = 32

// spacing returns |v|, or 0 (unknown) when v is not finite.
func spacing(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return math.Abs(v)
}

// orientation returns the in-plane direction cosines in DICOM's convention
// (LPS+; first the direction of increasing column index c = j, then of
// increasing row index r = i), from the affine. It is zero when the header
// sets neither sform nor qform.
func (h *Header) orientation() [6]float64 {
	if h.SformCode <= 0 && h.QformCode <= 0 {
		return [6]float64{}
	}
	a := h.Affine()
	var o [6]float64
	for n, col := range []int{1, 0} {
		norm := math.Sqrt(a[0][col]*a[0][col] + a[1][col]*a[1][col] + a[2][col]*a[2][col])
		if norm == 0 || math.IsNaN(norm) || math.IsInf(norm, 0) {
			return [6]float64{}
		}
		// RAS to LPS: negate x and y.
		o[3*n] = -a[0][col] / norm
		o[3*n+1] = -a[1][col] / norm
		o[3*n+2] = a[2][col] / norm
	}
	return o
}
