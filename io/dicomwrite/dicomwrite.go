// Package dicomwrite writes DICOM Part-10 files in Explicit VR Little
// Endian: the 128-byte preamble, "DICM", the group 0002 file meta
// information with its group length, then the data set. It writes what a
// program builds (derived images such as Secondary Captures), not
// arbitrary parsed data: values are strings, unsigned shorts, bytes or
// sequences.
package dicomwrite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
)

// Tag is a DICOM attribute tag, group<<16 | element.
type Tag uint32

func (t Tag) group() uint16 { return uint16(t >> 16) }

// String formats t as (GGGG,EEEE).
func (t Tag) String() string { return fmt.Sprintf("(%04X,%04X)", uint32(t)>>16, uint32(t)&0xFFFF) }

// Element is one attribute. Value is a string (multiple values joined
// with '\'), []uint16 (US), []uint32 (UL), []byte (OB, OW, UN) or
// []Dataset (SQ), matching VR.
type Element struct {
	Tag   Tag
	VR    string
	Value any
}

// Dataset is a list of elements; Encode sorts them by tag.
type Dataset []Element

// Transfer syntax and implementation identifiers.
const (
	// ExplicitVRLittleEndian is the transfer syntax of every file written.
	ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"
	// ImplementationVersionName names multiad's writer in the file meta.
	ImplementationVersionName = "MULTIAD"
)

// ImplementationClassUID identifies files written by this package (a
// NameUID, see uid.go).
var ImplementationClassUID = NameUID("multiad", "dicomwrite", "implementation")

// longVRs have a 2-byte reserved field and a 4-byte length.
var longVRs = map[string]bool{"OB": true, "OD": true, "OF": true, "OL": true, "OV": true, "OW": true,
	"SQ": true, "SV": true, "UC": true, "UN": true, "UR": true, "UT": true, "UV": true}

// stringVRs hold character strings.
var stringVRs = map[string]bool{"AE": true, "AS": true, "CS": true, "DA": true, "DS": true, "DT": true,
	"IS": true, "LO": true, "LT": true, "PN": true, "SH": true, "ST": true, "TM": true, "UC": true,
	"UI": true, "UR": true, "UT": true}

// maxLen is the longest value of each string VR (per value, in characters;
// checked in bytes here, which is stricter for UTF-8).
var maxLen = map[string]int{"AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12,
	"LO": 64, "LT": 10240, "PN": 64 * 5, "SH": 16, "ST": 1024, "TM": 16, "UI": 64}

// value encodes one element's value, padded to even length.
func value(e Element) ([]byte, error) {
	switch v := e.Value.(type) {
	case string:
		if !stringVRs[e.VR] {
			return nil, fmt.Errorf("dicomwrite: %s: string value for VR %s", e.Tag, e.VR)
		}
		if n := maxLen[e.VR]; n > 0 {
			for _, part := range strings.Split(v, `\`) {
				if len(part) > n {
					return nil, fmt.Errorf("dicomwrite: %s: %s value of %d bytes exceeds %d", e.Tag, e.VR, len(part), n)
				}
			}
		}
		if e.VR == "UI" {
			for _, part := range strings.Split(v, `\`) {
				if part != "" && !ValidUID(part) {
					return nil, fmt.Errorf("dicomwrite: %s: %q is not a valid UID", e.Tag, part)
				}
			}
		}
		b := []byte(v)
		if len(b)%2 == 1 {
			if e.VR == "UI" {
				b = append(b, 0)
			} else {
				b = append(b, ' ')
			}
		}
		return b, nil
	case []uint16:
		if e.VR != "US" && e.VR != "OW" {
			return nil, fmt.Errorf("dicomwrite: %s: []uint16 value for VR %s", e.Tag, e.VR)
		}
		b := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], x)
		}
		return b, nil
	case []uint32:
		if e.VR != "UL" {
			return nil, fmt.Errorf("dicomwrite: %s: []uint32 value for VR %s", e.Tag, e.VR)
		}
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], x)
		}
		return b, nil
	case []byte:
		if e.VR != "OB" && e.VR != "OW" && e.VR != "UN" {
			return nil, fmt.Errorf("dicomwrite: %s: []byte value for VR %s", e.Tag, e.VR)
		}
		if e.VR == "OW" && len(v)%2 == 1 {
			return nil, fmt.Errorf("dicomwrite: %s: OW value of odd length %d", e.Tag, len(v))
		}
		if len(v)%2 == 1 {
			return append(append([]byte(nil), v...), 0), nil
		}
		return v, nil
	case []Dataset:
		if e.VR != "SQ" {
			return nil, fmt.Errorf("dicomwrite: %s: sequence value for VR %s", e.Tag, e.VR)
		}
		var buf bytes.Buffer
		for _, item := range v {
			body, err := item.Encode()
			if err != nil {
				return nil, err
			}
			if uint64(len(body)) >= 0xFFFFFFFF {
				return nil, fmt.Errorf("dicomwrite: %s: item too long", e.Tag)
			}
			var h [8]byte
			binary.LittleEndian.PutUint16(h[0:], 0xFFFE)
			binary.LittleEndian.PutUint16(h[2:], 0xE000)
			binary.LittleEndian.PutUint32(h[4:], uint32(len(body)))
			buf.Write(h[:])
			buf.Write(body)
		}
		return buf.Bytes(), nil
	case nil:
		return nil, nil // an empty (type 2) attribute
	}
	return nil, fmt.Errorf("dicomwrite: %s: unsupported value type %T", e.Tag, e.Value)
}

// Encode encodes the data set in Explicit VR Little Endian, elements in
// ascending tag order. Duplicate tags are an error.
func (d Dataset) Encode() ([]byte, error) {
	els := append(Dataset(nil), d...)
	sort.SliceStable(els, func(i, j int) bool { return els[i].Tag < els[j].Tag })
	var buf bytes.Buffer
	for i, e := range els {
		if i > 0 && els[i-1].Tag == e.Tag {
			return nil, fmt.Errorf("dicomwrite: %s appears twice", e.Tag)
		}
		if len(e.VR) != 2 || e.VR[0] < 'A' || e.VR[0] > 'Z' || e.VR[1] < 'A' || e.VR[1] > 'Z' {
			return nil, fmt.Errorf("dicomwrite: %s: bad VR %q", e.Tag, e.VR)
		}
		v, err := value(e)
		if err != nil {
			return nil, err
		}
		var h [12]byte
		binary.LittleEndian.PutUint16(h[0:], e.Tag.group())
		binary.LittleEndian.PutUint16(h[2:], uint16(e.Tag))
		copy(h[4:], e.VR)
		if longVRs[e.VR] {
			if uint64(len(v)) >= 0xFFFFFFFF {
				return nil, fmt.Errorf("dicomwrite: %s: value of %d bytes is too long", e.Tag, len(v))
			}
			binary.LittleEndian.PutUint32(h[8:], uint32(len(v)))
			buf.Write(h[:12])
		} else {
			if len(v) > 0xFFFE {
				return nil, fmt.Errorf("dicomwrite: %s: %s value of %d bytes is too long for a 16-bit length", e.Tag, e.VR, len(v))
			}
			binary.LittleEndian.PutUint16(h[6:], uint16(len(v)))
			buf.Write(h[:8])
		}
		buf.Write(v)
	}
	return buf.Bytes(), nil
}

// File encodes a Part-10 file holding ds, with meta information naming
// the SOP class and instance (taken from ds's (0008,0016) and (0008,0018)).
// ds must not contain group 0002 elements.
func File(ds Dataset) ([]byte, error) {
	var class, inst string
	for _, e := range ds {
		if e.Tag.group() == 0x0002 {
			return nil, fmt.Errorf("dicomwrite: %s: file meta elements are written by File", e.Tag)
		}
		s, _ := e.Value.(string)
		switch e.Tag {
		case 0x00080016:
			class = s
		case 0x00080018:
			inst = s
		}
	}
	if class == "" || inst == "" {
		return nil, fmt.Errorf("dicomwrite: the data set needs SOPClassUID (0008,0016) and SOPInstanceUID (0008,0018)")
	}
	meta, err := Dataset{
		{0x00020001, "OB", []byte{0, 1}},
		{0x00020002, "UI", class},
		{0x00020003, "UI", inst},
		{0x00020010, "UI", ExplicitVRLittleEndian},
		{0x00020012, "UI", ImplementationClassUID},
		{0x00020013, "SH", ImplementationVersionName},
	}.Encode()
	if err != nil {
		return nil, err
	}
	group, err := Dataset{{0x00020000, "UL", []uint32{uint32(len(meta))}}}.Encode()
	if err != nil {
		return nil, err
	}
	body, err := ds.Encode()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 128, 128+4+len(group)+len(meta)+len(body))
	out = append(out, "DICM"...)
	out = append(out, group...)
	out = append(out, meta...)
	return append(out, body...), nil
}
