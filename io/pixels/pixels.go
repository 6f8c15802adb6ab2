// Package pixels defines the one in-memory image type that every multiad
// decoder produces: a 2-D grid of stored values (any integer or float type,
// channels interleaved), the rescale that maps them to physical values, and
// the metadata the model and the reports need.
package pixels

import (
	"encoding/binary"
	"fmt"
	"math"
)

// DType is the stored element type of an Image.
type DType uint8

// Stored element types.
const (
	Uint8 DType = iota + 1
	Int8
	Uint16
	Int16
	Uint32
	Int32
	Float32
	Float64
)

var dtypeNames = map[DType]string{
	Uint8: "uint8", Int8: "int8", Uint16: "uint16", Int16: "int16",
	Uint32: "uint32", Int32: "int32", Float32: "float32", Float64: "float64",
}

// String returns the NumPy-style name of the type ("uint16", "float32", ...).
func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size returns the size in bytes of one element of type d, or 0 if d is unknown.
func (d DType) Size() int {
	switch d {
	case Uint8, Int8:
		return 1
	case Uint16, Int16:
		return 2
	case Uint32, Int32, Float32:
		return 4
	case Float64:
		return 8
	}
	return 0
}

// Meta is the metadata carried with an image. Fields that a format does not
// know are left at their zero value.
type Meta struct {
	// Format is the container format: "png", "jpeg", "tiff", "bmp", "dicom", "nifti".
	Format string `json:"format,omitempty"`
	// Modality is the DICOM modality (CT, MR, CR, ...) or "" when unknown.
	Modality string `json:"modality,omitempty"`
	// Photometric is the DICOM photometric interpretation of the stored
	// values as decoded (MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, PALETTE
	// COLOR, ...): decoders keep the stored values exactly as the file
	// holds them (JPEG 2000 YBR_RCT/ICT come out as RGB) and record the
	// file's own value in SourcePhotometric. Model preprocessing inverts
	// MONOCHROME1 and converts YBR to RGB.
	Photometric       string `json:"photometric,omitempty"`
	SourcePhotometric string `json:"source_photometric,omitempty"`
	// TransferSyntax is the DICOM transfer syntax UID, when the input is DICOM.
	TransferSyntax string `json:"transfer_syntax,omitempty"`
	// Spacing is the pixel spacing in mm as (row, column), and SliceSpacing
	// the distance between slices; zero when unknown.
	Spacing      [2]float64 `json:"spacing,omitempty"`
	SliceSpacing float64    `json:"slice_spacing,omitempty"`
	// Orientation is the DICOM ImageOrientationPatient: the LPS direction
	// cosines of increasing column, then of increasing row (NIfTI readers
	// convert their affine to this convention).
	Orientation [6]float64 `json:"orientation,omitempty"`
	// WindowCenter and WindowWidth are the VOI LUT window for display, in
	// rescaled units, when the file carries one.
	WindowCenter float64 `json:"window_center,omitempty"`
	WindowWidth  float64 `json:"window_width,omitempty"`
	// BitsStored is the number of significant bits of integer stored values
	// (0 when it equals the type's size).
	BitsStored int `json:"bits_stored,omitempty"`
	// Frames is the number of frames or slices in the source file.
	Frames int `json:"frames,omitempty"`
	// Identity holds patient and study identifiers. They are never written
	// to reports unless the user opts in.
	Identity Identity `json:"-"`
}

// Identity holds the identifying header fields of a medical image.
type Identity struct {
	PatientName       string
	PatientID         string
	PatientBirthDate  string
	AccessionNumber   string
	StudyInstanceUID  string
	SeriesInstanceUID string
	SOPInstanceUID    string
}

// Image is one decoded 2-D image: a plain picture, one frame of a DICOM
// object, or one slice of a volume.
type Image struct {
	// Rows, Cols and Channels give the shape; values are stored row-major
	// with channels interleaved (index = (r*Cols+c)*Channels+ch).
	Rows, Cols, Channels int
	// DType is the stored type and Data the stored values, little-endian.
	DType DType
	Data  []byte
	// Slope and Intercept map stored values to physical values
	// (value = stored*Slope + Intercept). A zero Slope means 1.
	Slope, Intercept float64
	// Index is the frame or slice number within the source (0-based) and
	// IndexKind says which: "frame", "slice" or "" for single images.
	Index     int
	IndexKind string
	Meta      Meta
}

// New allocates an image of the given shape and type.
func New(rows, cols, channels int, dt DType) *Image {
	return &Image{Rows: rows, Cols: cols, Channels: channels, DType: dt,
		Data: make([]byte, rows*cols*channels*dt.Size())}
}

// Len returns the number of stored elements (Rows*Cols*Channels).
func (m *Image) Len() int { return m.Rows * m.Cols * m.Channels }

// Validate reports whether the shape, type and data length agree.
func (m *Image) Validate() error {
	if m.Rows <= 0 || m.Cols <= 0 || m.Channels <= 0 {
		return fmt.Errorf("pixels: bad shape %dx%dx%d", m.Rows, m.Cols, m.Channels)
	}
	if m.DType.Size() == 0 {
		return fmt.Errorf("pixels: unknown dtype %v", m.DType)
	}
	if want := m.Len() * m.DType.Size(); len(m.Data) != want {
		return fmt.Errorf("pixels: data has %d bytes, shape %dx%dx%d %v needs %d",
			len(m.Data), m.Rows, m.Cols, m.Channels, m.DType, want)
	}
	return nil
}

// At returns stored element i as a float64.
func (m *Image) At(i int) float64 {
	d := m.Data
	switch m.DType {
	case Uint8:
		return float64(d[i])
	case Int8:
		return float64(int8(d[i]))
	case Uint16:
		return float64(binary.LittleEndian.Uint16(d[2*i:]))
	case Int16:
		return float64(int16(binary.LittleEndian.Uint16(d[2*i:])))
	case Uint32:
		return float64(binary.LittleEndian.Uint32(d[4*i:]))
	case Int32:
		return float64(int32(binary.LittleEndian.Uint32(d[4*i:])))
	case Float32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:])))
	case Float64:
		return math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:]))
	}
	panic("pixels: unknown dtype " + m.DType.String())
}

// Set stores v at element i, converting to the stored type (no clamping).
func (m *Image) Set(i int, v float64) {
	d := m.Data
	switch m.DType {
	case Uint8, Int8:
		d[i] = byte(int64(v))
	case Uint16, Int16:
		binary.LittleEndian.PutUint16(d[2*i:], uint16(int64(v)))
	case Uint32, Int32:
		binary.LittleEndian.PutUint32(d[4*i:], uint32(int64(v)))
	case Float32:
		binary.LittleEndian.PutUint32(d[4*i:], math.Float32bits(float32(v)))
	case Float64:
		binary.LittleEndian.PutUint64(d[8*i:], math.Float64bits(v))
	default:
		panic("pixels: unknown dtype " + m.DType.String())
	}
}

// Stored returns all stored values as float64.
func (m *Image) Stored() []float64 {
	out := make([]float64, m.Len())
	for i := range out {
		out[i] = m.At(i)
	}
	return out
}

// Rescaled returns the physical values stored*Slope+Intercept.
func (m *Image) Rescaled() []float64 {
	out := m.Stored()
	for i, v := range out {
		out[i] = m.Rescale(v)
	}
	return out
}

// Rescale returns the physical value of stored value v: v*Slope+Intercept,
// a zero Slope meaning 1.
func (m *Image) Rescale(v float64) float64 {
	s := m.Slope
	if s == 0 {
		s = 1
	}
	return v*s + m.Intercept
}

// Stats summarises a set of values. NaNs are skipped; Count is the number of
// non-NaN values.
type Stats struct {
	Min, Max, Mean, Sum float64
	Count               int
}

// StatsOf computes Stats over vs, ignoring NaNs.
func StatsOf(vs []float64) Stats {
	s := Stats{Min: math.Inf(1), Max: math.Inf(-1)}
	for _, v := range vs {
		if math.IsNaN(v) {
			continue
		}
		s.Count++
		s.Sum += v
		s.Min = math.Min(s.Min, v)
		s.Max = math.Max(s.Max, v)
	}
	if s.Count > 0 {
		s.Mean = s.Sum / float64(s.Count)
	} else {
		s.Min, s.Max, s.Mean = math.NaN(), math.NaN(), math.NaN()
	}
	return s
}

// Limits bounds what a decoder will allocate, to stop decompression bombs.
// A header claiming more gives an error before any allocation.
type Limits struct {
	// MaxPixels caps Rows*Cols*Channels of one image (frame or slice).
	MaxPixels int64
	// MaxVoxels caps the total element count of one file (all frames or slices).
	MaxVoxels int64
}

// DefaultLimits are generous: 2^28 elements per image and per file.
var DefaultLimits = Limits{MaxPixels: 1 << 28, MaxVoxels: 1 << 28}

// Check returns an error if an image of the given shape, repeated frames
// times, exceeds the limits. It is safe against overflow.
func (l Limits) Check(rows, cols, channels, frames int64) error {
	if rows <= 0 || cols <= 0 || channels <= 0 || frames <= 0 {
		return fmt.Errorf("invalid dimensions %dx%dx%d, %d frames", rows, cols, channels, frames)
	}
	maxP, maxV := l.MaxPixels, l.MaxVoxels
	if maxP <= 0 {
		maxP = DefaultLimits.MaxPixels
	}
	if maxV <= 0 {
		maxV = DefaultLimits.MaxVoxels
	}
	per := rows
	for _, f := range []int64{cols, channels} {
		if per > maxP/f {
			return fmt.Errorf("image of %dx%dx%d exceeds the limit of %d pixels", rows, cols, channels, maxP)
		}
		per *= f
	}
	if per > maxP {
		return fmt.Errorf("image of %dx%dx%d exceeds the limit of %d pixels", rows, cols, channels, maxP)
	}
	if per > maxV/frames {
		return fmt.Errorf("%d frames of %dx%dx%d exceed the limit of %d values per file", frames, rows, cols, channels, maxV)
	}
	return nil
}
