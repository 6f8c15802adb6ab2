package dicom

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom/pkg/charset"
)

// tag is a DICOM attribute tag, group in the high 16 bits.
type tag uint32

func (t tag) String() string { return fmt.Sprintf("(%04X,%04X)", uint32(t)>>16, uint32(t)&0xFFFF) }

// Tags read by the decoder.
const (
	tagTransferSyntax   tag = 0x00020010
	tagCharset          tag = 0x00080005
	tagSOPInstanceUID   tag = 0x00080018
	tagAccessionNumber  tag = 0x00080050
	tagModality         tag = 0x00080060
	tagPatientName      tag = 0x00100010
	tagPatientID        tag = 0x00100020
	tagPatientBirthDate tag = 0x00100030
	tagStudyUID         tag = 0x0020000D
	tagSeriesUID        tag = 0x0020000E
	tagOrientation      tag = 0x00200037
	tagSamples          tag = 0x00280002
	tagPhotometric      tag = 0x00280004
	tagPlanar           tag = 0x00280006
	tagFrames           tag = 0x00280008
	tagRows             tag = 0x00280010
	tagCols             tag = 0x00280011
	tagSpacing          tag = 0x00280030
	tagBitsAllocated    tag = 0x00280100
	tagBitsStored       tag = 0x00280101
	tagPixelRep         tag = 0x00280103
	tagWindowCenter     tag = 0x00281050
	tagWindowWidth      tag = 0x00281051
	tagIntercept        tag = 0x00281052
	tagSlope            tag = 0x00281053
	tagRedDesc          tag = 0x00281101
	tagGreenDesc        tag = 0x00281102
	tagBlueDesc         tag = 0x00281103
	tagRedData          tag = 0x00281201
	tagGreenData        tag = 0x00281202
	tagBlueData         tag = 0x00281203
	tagRedSegData       tag = 0x00281221
	tagGreenSegData     tag = 0x00281222
	tagBlueSegData      tag = 0x00281223
	tagModalityLUT      tag = 0x00283000
	tagFloatPixelData   tag = 0x7FE00008
	tagDoublePixelData  tag = 0x7FE00009
	tagPixelData        tag = 0x7FE00010

	tagItem          tag = 0xFFFEE000
	tagItemDelim     tag = 0xFFFEE00D
	tagSequenceDelim tag = 0xFFFEE0DD
)

// dictVR is the dictionary VR of every tag the decoder reads: it decides how
// a value is interpreted in implicit VR files and when a file says UN.
var dictVR = map[tag]string{
	tagTransferSyntax: "UI", tagCharset: "CS", tagSOPInstanceUID: "UI", tagAccessionNumber: "SH",
	tagModality: "CS", tagPatientName: "PN", tagPatientID: "LO", tagPatientBirthDate: "DA",
	tagStudyUID: "UI", tagSeriesUID: "UI", tagOrientation: "DS", tagSamples: "US",
	tagPhotometric: "CS", tagPlanar: "US", tagFrames: "IS", tagRows: "US", tagCols: "US",
	tagSpacing: "DS", tagBitsAllocated: "US", tagBitsStored: "US", tagPixelRep: "US",
	tagWindowCenter: "DS", tagWindowWidth: "DS", tagIntercept: "DS", tagSlope: "DS",
	tagRedDesc: "US", tagGreenDesc: "US", tagBlueDesc: "US",
	tagRedData: "OW", tagGreenData: "OW", tagBlueData: "OW",
	tagRedSegData: "OW", tagGreenSegData: "OW", tagBlueSegData: "OW",
	tagModalityLUT: "SQ", tagFloatPixelData: "OF", tagDoublePixelData: "OD", tagPixelData: "OW",
}

// Transfer syntax UIDs.
const (
	tsImplicitLE = "1.2.840.10008.1.2"
	tsExplicitLE = "1.2.840.10008.1.2.1"
	tsDeflate    = "1.2.840.10008.1.2.1.99"
	tsExplicitBE = "1.2.840.10008.1.2.2"
	tsRLE        = "1.2.840.10008.1.2.5"
)

// element is one top-level data element of interest.
type element struct {
	vr    string // VR as written, or the dictionary VR for implicit files
	value []byte // raw value bytes (a sub-slice of the input)
	// For encapsulated pixel data: items[0] is the Basic Offset Table and
	// the rest are the fragments.
	items [][]byte
}

// dataset is the parsed structure of one DICOM file.
type dataset struct {
	ts       string           // transfer syntax UID (from the meta, or inferred)
	order    binary.ByteOrder // byte order of the dataset
	explicit bool
	elems    map[tag]*element
	cs       charset.CodingSystem
}

// maxDepth bounds sequence nesting so hostile files cannot exhaust the stack.
const maxDepth = 32

// parse reads the file meta information and walks the dataset, checking that
// every element length fits in the input. It keeps the top-level elements
// listed in dictVR. lim bounds the size of an inflated deflate dataset.
func parse(data []byte, maxInflated int64) (*dataset, error) {
	ds := &dataset{elems: map[tag]*element{}}
	body := data
	hasMeta := false
	if len(data) >= 132 && string(data[128:132]) == "DICM" {
		body, hasMeta = data[132:], true
	} else if len(data) >= 6 && binary.LittleEndian.Uint16(data) == 0x0002 && isVR(data[4:6]) {
		hasMeta = true // file meta without the preamble
	}
	if hasMeta {
		n, ts, err := readMeta(body)
		if err != nil {
			return nil, err
		}
		body, ds.ts = body[n:], ts
	}
	switch ds.ts {
	case "":
		ts, err := inferSyntax(body)
		if err != nil {
			return nil, err
		}
		ds.ts = ts
	case tsDeflate:
		inflated, err := inflate(body, maxInflated)
		if err != nil {
			return nil, err
		}
		body = inflated
	}
	switch ds.ts {
	case tsImplicitLE:
		ds.order = binary.LittleEndian
	case tsExplicitBE:
		ds.order, ds.explicit = binary.BigEndian, true
	default:
		ds.order, ds.explicit = binary.LittleEndian, true
	}
	// Like pydicom, trust the data over the meta when the first element of
	// an "explicit" dataset has no VR.
	if ds.explicit && ds.order == binary.LittleEndian && len(body) >= 8 && !isVR(body[4:6]) {
		ds.explicit = false
	}
	w := walker{b: body, order: ds.order, ds: ds}
	if _, err := w.elements(0, len(body), ds.explicit, 0, false); err != nil {
		// Damage after the pixel data (trailing garbage, a truncated
		// signature) does not affect the image.
		if !w.seenPixels {
			return nil, err
		}
	}
	if e := ds.elems[tagCharset]; e != nil {
		if cs, err := charset.ParseSpecificCharacterSet(ds.strings(tagCharset)); err == nil {
			ds.cs = cs
		}
	}
	return ds, nil
}

// readMeta reads the group 0002 elements (explicit VR little endian) at the
// start of b and returns their total length and the transfer syntax UID.
func readMeta(b []byte) (int, string, error) {
	pos, ts := 0, ""
	for pos+8 <= len(b) && binary.LittleEndian.Uint16(b[pos:]) == 0x0002 {
		t := tag(uint32(binary.LittleEndian.Uint16(b[pos:]))<<16 | uint32(binary.LittleEndian.Uint16(b[pos+2:])))
		vr := b[pos+4 : pos+6]
		if !isVR(vr) {
			return 0, "", fmt.Errorf("dicom: file meta element %v at offset %d has no valid VR", t, pos)
		}
		hdr, n := 8, int64(binary.LittleEndian.Uint16(b[pos+6:]))
		if longVR(string(vr)) {
			if pos+12 > len(b) {
				return 0, "", fmt.Errorf("dicom: file meta truncated at offset %d", pos)
			}
			hdr, n = 12, int64(binary.LittleEndian.Uint32(b[pos+8:]))
		}
		if n > int64(len(b)-pos-hdr) {
			return 0, "", fmt.Errorf("dicom: file meta element %v at offset %d claims %d bytes, only %d left", t, pos, n, len(b)-pos-hdr)
		}
		if t == tagTransferSyntax {
			ts = strings.TrimRight(string(b[pos+hdr:pos+hdr+int(n)]), " \x00")
		}
		pos += hdr + int(n)
	}
	return pos, ts, nil
}

// inferSyntax guesses the encoding of a dataset that has no file meta, from
// its first element, as pydicom does for raw datasets.
func inferSyntax(b []byte) (string, error) {
	if len(b) < 8 {
		return "", errors.New("dicom: no DICOM preamble and too short for a dataset")
	}
	le, be := binary.LittleEndian.Uint16(b), binary.BigEndian.Uint16(b)
	explicit := isVR(b[4:6])
	switch {
	case be < le && explicit:
		return tsExplicitBE, nil
	case explicit:
		return tsExplicitLE, nil
	case le <= 0x0008 && le != 0:
		return tsImplicitLE, nil
	}
	return "", errors.New("dicom: not a DICOM file (no preamble, no file meta, no recognisable dataset)")
}

// inflate decompresses a deflated dataset, refusing output over max bytes.
func inflate(b []byte, max int64) ([]byte, error) {
	r := flate.NewReader(bytes.NewReader(b))
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("dicom: inflating deflated dataset: %w", err)
	}
	if int64(len(out)) > max {
		return nil, fmt.Errorf("dicom: deflated dataset inflates to more than %d bytes", max)
	}
	return out, nil
}

// isVR reports whether b looks like an explicit VR (two upper-case letters).
func isVR(b []byte) bool {
	return len(b) >= 2 && b[0] >= 'A' && b[0] <= 'Z' && b[1] >= 'A' && b[1] <= 'Z'
}

// longVR reports whether an explicit VR uses the 4-byte length form.
func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

const undefinedLength = 0xFFFFFFFF

// walker walks the elements of a dataset.
type walker struct {
	b          []byte
	order      binary.ByteOrder
	ds         *dataset
	seenPixels bool
}

// elements walks elements in b[pos:end] and returns where it stopped. With
// untilDelim it stops after an item delimitation item.
func (w *walker) elements(pos, end int, explicit bool, depth int, untilDelim bool) (int, error) {
	if depth > maxDepth {
		return 0, fmt.Errorf("dicom: sequences nested deeper than %d at offset %d", maxDepth, pos)
	}
	for pos < end {
		if end-pos < 8 {
			return 0, fmt.Errorf("dicom: truncated element header at offset %d", pos)
		}
		t := tag(uint32(w.order.Uint16(w.b[pos:]))<<16 | uint32(w.order.Uint16(w.b[pos+2:])))
		if t>>16 == 0xFFFE {
			n := w.order.Uint32(w.b[pos+4:])
			switch t {
			case tagItemDelim:
				if untilDelim {
					return pos + 8, nil
				}
				pos += 8
				continue
			case tagSequenceDelim:
				return 0, fmt.Errorf("dicom: unexpected sequence delimiter at offset %d", pos)
			}
			return 0, fmt.Errorf("dicom: unexpected item %v (length %d) at offset %d", t, n, pos)
		}
		vr, hdr, n := "", 8, uint32(0)
		if explicit {
			vr = string(w.b[pos+4 : pos+6])
			if !isVR(w.b[pos+4 : pos+6]) {
				return 0, fmt.Errorf("dicom: element %v at offset %d has invalid VR %q", t, pos, vr)
			}
			if longVR(vr) {
				if end-pos < 12 {
					return 0, fmt.Errorf("dicom: truncated element header at offset %d", pos)
				}
				hdr, n = 12, w.order.Uint32(w.b[pos+8:])
			} else {
				n = uint32(w.order.Uint16(w.b[pos+6:]))
			}
		} else {
			vr = dictVR[t]
			n = w.order.Uint32(w.b[pos+4:])
		}
		start := pos + hdr
		top := depth == 0 && !untilDelim
		if n == undefinedLength {
			if top && t == tagPixelData {
				items, next, err := w.fragments(start, end)
				if err != nil {
					return 0, err
				}
				w.ds.elems[t] = &element{vr: vr, items: items}
				w.seenPixels = true
				pos = next
				continue
			}
			if _, ok := dictVR[t]; ok && top {
				w.ds.elems[t] = &element{vr: "SQ"}
			}
			// A sequence; UN of undefined length holds implicit VR LE.
			next, err := w.sequence(start, end, explicit && vr != "UN", depth+1)
			if err != nil {
				return 0, fmt.Errorf("%w (in sequence %v)", err, t)
			}
			pos = next
			continue
		}
		if int64(n) > int64(end-start) {
			return 0, fmt.Errorf("dicom: element %v at offset %d claims %d bytes, only %d left", t, pos, n, end-start)
		}
		if top {
			if _, ok := dictVR[t]; ok {
				w.ds.elems[t] = &element{vr: vr, value: w.b[start : start+int(n)]}
				if t == tagPixelData || t == tagFloatPixelData || t == tagDoublePixelData {
					w.seenPixels = true
				}
			}
		}
		pos = start + int(n)
	}
	if untilDelim {
		return 0, fmt.Errorf("dicom: item without delimiter before offset %d", end)
	}
	return pos, nil
}

// sequence walks the items of an undefined-length sequence starting at pos
// and returns the offset after its delimiter.
func (w *walker) sequence(pos, end int, explicit bool, depth int) (int, error) {
	for {
		if end-pos < 8 {
			return 0, fmt.Errorf("dicom: sequence not terminated before offset %d", end)
		}
		t := tag(uint32(w.order.Uint16(w.b[pos:]))<<16 | uint32(w.order.Uint16(w.b[pos+2:])))
		n := w.order.Uint32(w.b[pos+4:])
		pos += 8
		switch t {
		case tagSequenceDelim:
			return pos, nil
		case tagItem:
		default:
			return 0, fmt.Errorf("dicom: expected a sequence item at offset %d, found %v", pos-8, t)
		}
		if n == undefinedLength {
			next, err := w.elements(pos, end, explicit, depth, true)
			if err != nil {
				return 0, err
			}
			pos = next
			continue
		}
		if int64(n) > int64(end-pos) {
			return 0, fmt.Errorf("dicom: sequence item at offset %d claims %d bytes, only %d left", pos-8, n, end-pos)
		}
		pos += int(n)
	}
}

// fragments reads the items of encapsulated pixel data: the Basic Offset
// Table followed by the fragments. Items are always little endian.
func (w *walker) fragments(pos, end int) ([][]byte, int, error) {
	var items [][]byte
	for {
		if end-pos < 8 {
			if len(items) > 0 {
				// Missing sequence delimiter at the end of the file.
				return items, end, nil
			}
			return nil, 0, fmt.Errorf("dicom: encapsulated pixel data truncated at offset %d", pos)
		}
		t := tag(uint32(binary.LittleEndian.Uint16(w.b[pos:]))<<16 | uint32(binary.LittleEndian.Uint16(w.b[pos+2:])))
		n := binary.LittleEndian.Uint32(w.b[pos+4:])
		pos += 8
		switch t {
		case tagSequenceDelim:
			if len(items) == 0 {
				return nil, 0, errors.New("dicom: encapsulated pixel data has no items")
			}
			return items, pos, nil
		case tagItem:
		default:
			return nil, 0, fmt.Errorf("dicom: expected a pixel data item at offset %d, found %v", pos-8, t)
		}
		if int64(n) > int64(end-pos) {
			return nil, 0, fmt.Errorf("dicom: pixel data fragment at offset %d claims %d bytes, only %d left", pos-8, n, end-pos)
		}
		items = append(items, w.b[pos:pos+int(n)])
		pos += int(n)
	}
}

// vrOf returns the VR to interpret e with: the dictionary VR when the file
// did not say (implicit) or said UN.
func (d *dataset) vrOf(t tag, e *element) string {
	if e.vr == "" || e.vr == "UN" {
		return dictVR[t]
	}
	return e.vr
}

// has reports whether the top-level element t is present.
func (d *dataset) has(t tag) bool { return d.elems[t] != nil }

// strings returns the backslash-separated values of a text element, trimmed.
func (d *dataset) strings(t tag) []string {
	e := d.elems[t]
	if e == nil || len(e.value) == 0 {
		return nil
	}
	s := string(e.value)
	if d.vrOf(t, e) == "PN" || t == tagPatientID || t == tagAccessionNumber {
		if dec := d.cs.Alphabetic; dec != nil {
			if b, err := dec.Bytes(e.value); err == nil {
				s = string(b)
			}
		}
	}
	parts := strings.Split(s, `\`)
	for i, p := range parts {
		parts[i] = strings.Trim(p, " \x00")
	}
	return parts
}

// str returns the first value of a text element, or "".
func (d *dataset) str(t tag) string {
	if s := d.strings(t); len(s) > 0 {
		return s[0]
	}
	return ""
}

// ints returns the values of an integer element (US, SS, UL, SL or IS).
func (d *dataset) ints(t tag) ([]int, error) {
	e := d.elems[t]
	if e == nil {
		return nil, nil
	}
	v := e.value
	switch vr := d.vrOf(t, e); vr {
	case "US", "SS":
		if len(v)%2 != 0 {
			return nil, fmt.Errorf("dicom: %v has odd length %d for VR %s", t, len(v), vr)
		}
		out := make([]int, len(v)/2)
		for i := range out {
			u := d.order.Uint16(v[2*i:])
			if vr == "SS" {
				out[i] = int(int16(u))
			} else {
				out[i] = int(u)
			}
		}
		return out, nil
	case "UL", "SL":
		if len(v)%4 != 0 {
			return nil, fmt.Errorf("dicom: %v has length %d, not a multiple of 4 for VR %s", t, len(v), vr)
		}
		out := make([]int, len(v)/4)
		for i := range out {
			u := d.order.Uint32(v[4*i:])
			if vr == "SL" {
				out[i] = int(int32(u))
			} else {
				out[i] = int(u)
			}
		}
		return out, nil
	case "IS", "DS":
		var out []int
		for _, s := range d.strings(t) {
			if s == "" {
				continue
			}
			n, err := strconv.Atoi(s)
			if err != nil {
				return nil, fmt.Errorf("dicom: %v value %q is not an integer", t, s)
			}
			out = append(out, n)
		}
		return out, nil
	}
	return nil, fmt.Errorf("dicom: %v has VR %s, expected an integer VR", t, e.vr)
}

// int returns the first value of an integer element, def when absent, or an
// error when malformed.
func (d *dataset) int(t tag, def int) (int, error) {
	v, err := d.ints(t)
	if err != nil {
		return 0, err
	}
	if len(v) == 0 {
		return def, nil
	}
	return v[0], nil
}

// floats returns the values of a DS (or FL/FD) element; malformed values are
// skipped, so header decoration never blocks decoding.
func (d *dataset) floats(t tag) []float64 {
	e := d.elems[t]
	if e == nil {
		return nil
	}
	switch d.vrOf(t, e) {
	case "FD":
		out := make([]float64, len(e.value)/8)
		for i := range out {
			out[i] = math.Float64frombits(d.order.Uint64(e.value[8*i:]))
		}
		return out
	case "FL":
		out := make([]float64, len(e.value)/4)
		for i := range out {
			out[i] = float64(math.Float32frombits(d.order.Uint32(e.value[4*i:])))
		}
		return out
	}
	var out []float64
	for _, s := range d.strings(t) {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			out = append(out, f)
		}
	}
	return out
}
