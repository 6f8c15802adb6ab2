// Package decode detects the format of an image file by its content and
// decodes it with the matching multiad decoder: DICOM (io/dicom), NIfTI
// (io/nifti) or PNG, JPEG, TIFF and BMP (io/raster).
package decode

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/multiad/multiad/io/dicom"
	"github.com/multiad/multiad/io/nifti"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/io/raster"
	"github.com/multiad/multiad/io/storage"
)

// Format names returned by Sniff.
const (
	DICOM = "dicom"
	NIfTI = "nifti"
	PNG   = "png"
	JPEG  = "jpeg"
	TIFF  = "tiff"
	BMP   = "bmp"
)

// Sniff returns the format of data: "dicom", "nifti", "png", "jpeg", "tiff",
// "bmp", or "" when unknown. It looks at the content first (DICM at offset
// 128; NIfTI sizeof_hdr 348 or 540 in either byte order, also inside gzip;
// the raster magics; a DICOM dataset without preamble that starts with a
// plausible group 0002 or 0008 element). The name's extension is only a hint:
// a .dcm file without preamble may start with any group.
func Sniff(name string, data []byte) string {
	if len(data) >= 132 && string(data[128:132]) == "DICM" {
		return DICOM
	}
	if isNIfTI(data) {
		return NIfTI
	}
	if f := raster.Format(data); f != "" {
		return f
	}
	ext := strings.ToLower(path.Ext(name))
	if looksLikeDataset(data, ext == ".dcm" || ext == ".dicom") {
		return DICOM
	}
	return ""
}

// isNIfTI checks sizeof_hdr, inflating at most 4 bytes of gzip input.
func isNIfTI(data []byte) bool {
	head := data
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return false
		}
		var b [4]byte
		if _, err := io.ReadFull(zr, b[:]); err != nil {
			return false
		}
		head = b[:]
	}
	if len(head) < 4 {
		return false
	}
	for _, n := range []uint32{binary.LittleEndian.Uint32(head), binary.BigEndian.Uint32(head)} {
		if n == nifti.SizeV1 || n == nifti.SizeV2 {
			return true
		}
	}
	return false
}

// looksLikeDataset reports whether data starts like a DICOM data set without
// the Part-10 preamble: an element of group 0002 or 0008 (any even group
// below 7FE0 when anyGroup) in either byte order, followed by an explicit VR
// or a plausible implicit-VR length.
func looksLikeDataset(data []byte, anyGroup bool) bool {
	if len(data) < 8 {
		return false
	}
	for _, o := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		g := o.Uint16(data)
		if g == 0 {
			continue
		}
		if !(g == 0x0002 || g == 0x0008 || (anyGroup && g%2 == 0 && g < 0x7fe0)) {
			continue
		}
		vr := data[4:6]
		if vr[0] >= 'A' && vr[0] <= 'Z' && vr[1] >= 'A' && vr[1] <= 'Z' {
			return true
		}
		if o == binary.LittleEndian && int64(o.Uint32(data[4:])) <= int64(len(data)-8) {
			return true
		}
	}
	return false
}

// Bytes decodes data of any supported format. name is used for messages and
// as a hint to Sniff.
func Bytes(name string, data []byte, lim pixels.Limits) ([]*pixels.Image, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("decode: %s: empty file", name)
	}
	var imgs []*pixels.Image
	var err error
	switch f := Sniff(name, data); f {
	case DICOM:
		imgs, err = dicom.Decode(data, lim)
	case NIfTI:
		imgs, err = nifti.Decode(data, lim)
	case PNG, JPEG, TIFF, BMP:
		imgs, err = raster.Decode(data, lim)
	default:
		head := data
		if len(head) > 16 {
			head = head[:16]
		}
		return nil, fmt.Errorf("decode: %s: unsupported format (first bytes % x)", name, head)
	}
	if err != nil {
		return nil, fmt.Errorf("decode: %s: %w", name, err)
	}
	return imgs, nil
}

// MaxBytes is the largest file URI reads under lim: 8 bytes per allowed value
// (the widest stored type) plus 64 MiB for headers and metadata.
func MaxBytes(lim pixels.Limits) int64 {
	v := lim.MaxVoxels
	if v <= 0 {
		v = pixels.DefaultLimits.MaxVoxels
	}
	return v*8 + 64<<20
}

// URI reads uri through io/storage (a local path, file:// or gs:// URI) and
// decodes it. A NIfTI .hdr (or .img) of a header/image pair is decoded with
// its partner file beside it. Files larger than MaxBytes(lim) are refused.
func URI(ctx context.Context, uri string, lim pixels.Limits) ([]*pixels.Image, error) {
	maxBytes := MaxBytes(lim)
	read := func(u string) ([]byte, error) { return storage.ReadFile(ctx, u, maxBytes) }
	lower := strings.ToLower(uri)
	base, isImg := "", false
	for _, ext := range []string{".hdr", ".hdr.gz", ".img", ".img.gz"} {
		if strings.HasSuffix(lower, ext) {
			base, isImg = uri[:len(uri)-len(ext)], strings.HasPrefix(ext, ".img")
		}
	}
	if base == "" {
		data, err := read(uri)
		if err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		return Bytes(uri, data, lim)
	}
	// A pair: find the header, then the image beside it.
	hdrURI, hdr, err := readFirst(read, uri, !isImg, base, ".hdr", ".hdr.gz", ".HDR")
	if err != nil {
		return nil, err
	}
	if h, err := nifti.ReadHeader(hdr); err != nil || h.Single() {
		if isImg {
			return nil, fmt.Errorf("decode: %s: %s is not the header of a .hdr/.img pair", uri, hdrURI)
		}
		return Bytes(uri, hdr, lim) // a single-file NIfTI named .hdr, or an error
	}
	imgURI, img, err := readFirst(read, uri, isImg, base, ".img", ".img.gz", ".IMG")
	if err != nil {
		return nil, err
	}
	imgs, err := nifti.DecodePair(hdr, img, lim)
	if err != nil {
		return nil, fmt.Errorf("decode: %s + %s: %w", hdrURI, imgURI, err)
	}
	return imgs, nil
}

// readFirst reads uri itself when self is true, else the first of base+exts
// that exists.
func readFirst(read func(string) ([]byte, error), uri string, self bool, base string, exts ...string) (string, []byte, error) {
	if self {
		b, err := read(uri)
		if err != nil {
			return "", nil, fmt.Errorf("decode: %w", err)
		}
		return uri, b, nil
	}
	for _, ext := range exts {
		b, err := read(base + ext)
		if err == nil {
			return base + ext, b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", nil, fmt.Errorf("decode: %w", err)
		}
	}
	return "", nil, fmt.Errorf("decode: %s: no %s beside it: %w", uri, strings.Join(exts, " or "), fs.ErrNotExist)
}
