// Package dicom decodes the images of DICOM Part-10 files (and raw datasets
// without file meta) into pixels.Image, one image per frame.
//
// The stored values are those of pydicom's Dataset.pixel_array, as recorded
// in shared/data/decoders/dicom/golden.json (pydicom 2.3.1; GDCM for JPEG
// 2000, JPEG-LS, lossless and 12-bit JPEG; Pillow's libjpeg for 8-bit JPEG):
// the dtype follows BitsAllocated and PixelRepresentation; native data are
// not masked to BitsStored; big-endian data are byte-swapped; bit-packed
// (BitsAllocated 1) data are unpacked to one uint8 per pixel; planar colour
// data are interleaved; native YBR_FULL_422 data are expanded to three
// samples per pixel. Float and Double Float Pixel Data give float32/float64.
//
// Transfer syntaxes decoded:
//
//	1.2.840.10008.1.2, .1.2.1, .1.2.2      native (implicit LE, explicit LE, explicit BE)
//	1.2.840.10008.1.2.1.99                 deflate (inflated with a size limit)
//	1.2.840.10008.1.2.5                    RLE Lossless (io/codec/rle)
//	1.2.840.10008.1.2.8.1                  Deflated Image Frame Compression
//	1.2.840.10008.1.2.4.50, .4.51          JPEG baseline/extended, 8 and 12 bit (own
//	                                       sequential DCT decoder, libjpeg's islow IDCT)
//	1.2.840.10008.1.2.4.55                 JPEG progressive, 8 bit (image/jpeg)
//	1.2.840.10008.1.2.4.57, .4.70          JPEG lossless (io/codec/jpegll)
//	1.2.840.10008.1.2.4.80, .4.81          JPEG-LS (CharLS, cgo; codecs_cgo.go)
//	1.2.840.10008.1.2.4.90, .4.91          JPEG 2000 (OpenJPEG, cgo; codecs_cgo.go)
//
// Others (HTJ2K, MPEG, ...) and builds
// with the tag multiad_nocgo or without cgo (for JPEG-LS and JPEG 2000) give
// an error wrapping ErrUnsupported that names the transfer syntax UID.
//
// Colour and grey handling, recorded in Meta.Photometric (the interpretation
// of the stored values) and Meta.SourcePhotometric (the file's value):
//   - MONOCHROME1 is NOT inverted (pydicom does not invert either);
//     Photometric stays MONOCHROME1 so that preprocessing can invert.
//   - Native YBR_FULL and YBR_FULL_422 keep their YBR values (Photometric
//     YBR_FULL); pixels.YBRToRGB converts them.
//   - JPEG YBR data keep their YCbCr values (as pydicom with Pillow returns
//     them; Photometric YBR_FULL); JPEG data marked RGB are converted from
//     YCbCr only when an Adobe marker asks for it, as pydicom does; JPEG
//     2000 YBR_RCT/YBR_ICT data come out of the codec as RGB.
//   - PALETTE COLOR keeps the indices; ReadPalette and Palette.Apply give
//     the RGB picture.
//
// Deliberate differences from pydicom 2.3.1: 8-bit samples in an OW element
// of an explicit big-endian file are swapped back in pairs, as DICOM
// requires (pydicom leaves them swapped); a Modality LUT Sequence is not
// applied (Slope and Intercept come from RescaleSlope/RescaleIntercept only).
//
// The dataset structure is walked by this package: every element length is
// checked against the input before anything is allocated, and panics are
// turned into errors. Strings are decoded with the character sets of
// github.com/suyashkumar/dicom. That library's full parser is not used:
// v1.1.0 panics or fails on several valid files of the reference set
// (explicit_VR-UN.dcm, deflate, trailing data after the pixel data as in
// SC_rgb_jpeg.dcm, raw datasets), decodes pixel data with fixed
// assumptions, skips the Basic Offset Table, and allocates whatever an
// element length claims.
package dicom

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/multiad/multiad/io/pixels"
)

// catchPanics turns panics while decoding into errors; the fuzz test turns
// it off so that the fuzzer sees them.
var catchPanics = true

// ErrNoPixelData is returned (wrapped) for DICOM objects without an image,
// such as RT plans and structured reports.
var ErrNoPixelData = errors.New("dicom: no pixel data")

// ErrUnsupported is returned (wrapped) for transfer syntaxes and encodings
// this package does not decode; the message names the transfer syntax UID.
var ErrUnsupported = errors.New("dicom: unsupported")

// syntaxNames names the transfer syntaxes in error messages.
var syntaxNames = map[string]string{
	tsImplicitLE:              "Implicit VR Little Endian",
	tsExplicitLE:              "Explicit VR Little Endian",
	tsDeflate:                 "Deflated Explicit VR Little Endian",
	tsExplicitBE:              "Explicit VR Big Endian",
	"1.2.840.10008.1.2.4.50":  "JPEG Baseline",
	"1.2.840.10008.1.2.4.51":  "JPEG Extended",
	"1.2.840.10008.1.2.4.55":  "JPEG Full Progression (retired)",
	"1.2.840.10008.1.2.4.57":  "JPEG Lossless",
	"1.2.840.10008.1.2.4.70":  "JPEG Lossless SV1",
	"1.2.840.10008.1.2.4.80":  "JPEG-LS Lossless",
	"1.2.840.10008.1.2.4.81":  "JPEG-LS Near-Lossless",
	"1.2.840.10008.1.2.4.90":  "JPEG 2000 Lossless",
	"1.2.840.10008.1.2.4.91":  "JPEG 2000",
	"1.2.840.10008.1.2.4.201": "HTJ2K Lossless",
	"1.2.840.10008.1.2.4.202": "HTJ2K Lossless RPCL",
	"1.2.840.10008.1.2.4.203": "HTJ2K",
	"1.2.840.10008.1.2.5":     "RLE Lossless",
	"1.2.840.10008.1.2.8.1":   "Deflated Image Frame Compression",
	"1.2.840.10008.1.2.4.100": "MPEG2",
	"1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264",
}

// unsupported returns an ErrUnsupported error for transfer syntax ts.
func unsupported(ts, why string) error {
	name := syntaxNames[ts]
	if name == "" {
		name = "unknown"
	}
	if why != "" {
		why = ": " + why
	}
	return fmt.Errorf("%w transfer syntax %s (%s)%s", ErrUnsupported, ts, name, why)
}

// info is the Image Pixel module of a file.
type info struct {
	ts                    string
	rows, cols, spp       int
	bitsAlloc, bitsStored int
	signed                bool
	planar                int
	frames                int
	photometric           string
	float                 bool // Float or Double Float Pixel Data
	dtype                 pixels.DType
}

// frameLen is the number of stored elements of one decoded frame.
func (in *info) frameLen() int { return in.rows * in.cols * in.spp }

// Decode decodes every frame of a DICOM Part-10 file (or a raw dataset
// without preamble/meta, as in ExplVR_LitEndNoMeta.dcm / no_meta.dcm where
// the reference could read it) into one pixels.Image per frame.
func Decode(data []byte, lim pixels.Limits) (imgs []*pixels.Image, err error) {
	if catchPanics {
		defer func() {
			if r := recover(); r != nil {
				imgs, err = nil, fmt.Errorf("dicom: malformed file (internal error: %v)", r)
			}
		}()
	}
	ds, err := parse(data, maxInflated(lim))
	if err != nil {
		return nil, err
	}
	in, px, err := readInfo(ds)
	if err != nil {
		return nil, err
	}
	if err := lim.Check(int64(in.rows), int64(in.cols), int64(in.spp), int64(in.frames)); err != nil {
		return nil, fmt.Errorf("dicom: %w", err)
	}
	var frames [][]byte
	if px.items == nil {
		frames, err = nativeFrames(in, ds, px)
	} else {
		frames, err = encapsulatedFrames(in, px.items, lim)
	}
	if err != nil {
		return nil, err
	}
	meta := imageMeta(ds, in)
	slope, intercept := 1.0, 0.0
	if v := ds.floats(tagSlope); len(v) > 0 {
		slope = v[0]
	}
	if v := ds.floats(tagIntercept); len(v) > 0 {
		intercept = v[0]
	}
	for i, f := range frames {
		m := &pixels.Image{Rows: in.rows, Cols: in.cols, Channels: in.spp, DType: in.dtype, Data: f,
			Slope: slope, Intercept: intercept, Meta: meta}
		if in.frames > 1 {
			m.Index, m.IndexKind = i, "frame"
		}
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("dicom: frame %d: %w", i, err)
		}
		imgs = append(imgs, m)
	}
	return imgs, nil
}

// maxInflated bounds the inflated size of a deflated dataset: the pixel
// budget at 8 bytes per value plus room for the header.
func maxInflated(lim pixels.Limits) int64 {
	v := lim.MaxVoxels
	if v <= 0 {
		v = pixels.DefaultLimits.MaxVoxels
	}
	if v > math.MaxInt64/16 {
		return math.MaxInt64 / 2
	}
	return 8*v + 64<<20
}

// readInfo reads and validates the Image Pixel module and returns the pixel
// data element.
func readInfo(ds *dataset) (*info, *element, error) {
	in := &info{ts: ds.ts}
	px := ds.elems[tagPixelData]
	if px == nil {
		if px = ds.elems[tagFloatPixelData]; px != nil {
			in.float = true
		} else if px = ds.elems[tagDoublePixelData]; px != nil {
			in.float = true
		}
	}
	if px == nil {
		mod := ds.str(tagModality)
		if mod == "" {
			return nil, nil, ErrNoPixelData
		}
		return nil, nil, fmt.Errorf("%w (modality %s)", ErrNoPixelData, mod)
	}
	var missing []string
	get := func(t tag, name string, def int, required bool) int {
		if required && !ds.has(t) {
			missing = append(missing, name)
		}
		v, err := ds.int(t, def)
		if err != nil {
			missing = append(missing, name+" (malformed)")
		}
		return v
	}
	in.rows = get(tagRows, "Rows", 0, true)
	in.cols = get(tagCols, "Columns", 0, true)
	in.spp = get(tagSamples, "SamplesPerPixel", 1, true)
	in.bitsAlloc = get(tagBitsAllocated, "BitsAllocated", 0, true)
	in.bitsStored = get(tagBitsStored, "BitsStored", in.bitsAlloc, !in.float)
	rep := get(tagPixelRep, "PixelRepresentation", 0, !in.float)
	in.planar = get(tagPlanar, "PlanarConfiguration", 0, false)
	in.frames = get(tagFrames, "NumberOfFrames", 1, false)
	in.photometric = ds.str(tagPhotometric)
	if in.photometric == "" {
		missing = append(missing, "PhotometricInterpretation")
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("dicom: pixel data present but required elements missing or malformed: %s", strings.Join(missing, ", "))
	}
	in.signed = rep == 1
	if in.frames == 0 {
		in.frames = 1
	}
	switch {
	case in.rows <= 0 || in.cols <= 0:
		return nil, nil, fmt.Errorf("dicom: bad image size %dx%d", in.rows, in.cols)
	case in.spp != 1 && in.spp != 3:
		return nil, nil, fmt.Errorf("dicom: %d samples per pixel not supported (1 or 3)", in.spp)
	case in.frames < 0:
		return nil, nil, fmt.Errorf("dicom: NumberOfFrames %d", in.frames)
	case rep != 0 && rep != 1:
		return nil, nil, fmt.Errorf("dicom: PixelRepresentation %d (must be 0 or 1)", rep)
	case in.bitsStored <= 0 || in.bitsStored > in.bitsAlloc:
		return nil, nil, fmt.Errorf("dicom: BitsStored %d with BitsAllocated %d", in.bitsStored, in.bitsAlloc)
	case in.planar != 0 && in.planar != 1:
		return nil, nil, fmt.Errorf("dicom: PlanarConfiguration %d (must be 0 or 1)", in.planar)
	}
	var err error
	in.dtype, err = dtypeOf(in.bitsAlloc, in.signed, in.float)
	if err != nil {
		return nil, nil, err
	}
	return in, px, nil
}

// dtypeOf maps BitsAllocated and PixelRepresentation to a stored type as
// pydicom does (bit-packed data unpacks to uint8).
func dtypeOf(bits int, signed, float bool) (pixels.DType, error) {
	if float {
		switch bits {
		case 32:
			return pixels.Float32, nil
		case 64:
			return pixels.Float64, nil
		}
		return 0, fmt.Errorf("dicom: float pixel data with BitsAllocated %d", bits)
	}
	switch {
	case bits == 1:
		return pixels.Uint8, nil
	case bits == 8 && signed:
		return pixels.Int8, nil
	case bits == 8:
		return pixels.Uint8, nil
	case bits == 16 && signed:
		return pixels.Int16, nil
	case bits == 16:
		return pixels.Uint16, nil
	case bits == 32 && signed:
		return pixels.Int32, nil
	case bits == 32:
		return pixels.Uint32, nil
	}
	return 0, fmt.Errorf("dicom: BitsAllocated %d not supported (1, 8, 16 or 32)", bits)
}

// imageMeta fills the image metadata shared by all frames.
func imageMeta(ds *dataset, in *info) pixels.Meta {
	m := pixels.Meta{
		Format:            "dicom",
		Modality:          ds.str(tagModality),
		TransferSyntax:    ds.ts,
		Photometric:       outputPhotometric(in),
		SourcePhotometric: in.photometric,
		Frames:            in.frames,
		Identity: pixels.Identity{
			PatientName:       ds.str(tagPatientName),
			PatientID:         ds.str(tagPatientID),
			PatientBirthDate:  ds.str(tagPatientBirthDate),
			AccessionNumber:   ds.str(tagAccessionNumber),
			StudyInstanceUID:  ds.str(tagStudyUID),
			SeriesInstanceUID: ds.str(tagSeriesUID),
			SOPInstanceUID:    ds.str(tagSOPInstanceUID),
		},
	}
	if v := ds.floats(tagSpacing); len(v) >= 2 {
		m.Spacing = [2]float64{v[0], v[1]}
	}
	if v := ds.floats(tagOrientation); len(v) >= 6 {
		copy(m.Orientation[:], v)
	}
	if v := ds.floats(tagWindowCenter); len(v) > 0 {
		m.WindowCenter = v[0]
	}
	if v := ds.floats(tagWindowWidth); len(v) > 0 {
		m.WindowWidth = v[0]
	}
	if !in.float && in.bitsStored < 8*in.dtype.Size() {
		m.BitsStored = in.bitsStored
	}
	return m
}

// outputPhotometric is the interpretation of the decoded stored values.
func outputPhotometric(in *info) string {
	p := in.photometric
	switch {
	case p == "YBR_FULL_422" && isNative(in.ts):
		return "YBR_FULL" // expanded to three samples per pixel, values unchanged
	case (p == "YBR_FULL" || p == "YBR_FULL_422") && isJPEG(in.ts):
		return "YBR_FULL" // upsampled by the JPEG decoder, values unchanged
	case p == "YBR_RCT" || p == "YBR_ICT":
		return "RGB" // the JPEG 2000 codec applies the inverse transform
	}
	return p
}

// isJPEG reports whether ts is a lossy JPEG (DCT) transfer syntax.
func isJPEG(ts string) bool {
	return ts == "1.2.840.10008.1.2.4.50" || ts == "1.2.840.10008.1.2.4.51" || ts == "1.2.840.10008.1.2.4.55"
}

// isNative reports whether ts stores pixel data uncompressed.
func isNative(ts string) bool {
	switch ts {
	case tsImplicitLE, tsExplicitLE, tsExplicitBE, tsDeflate:
		return true
	}
	return false
}
