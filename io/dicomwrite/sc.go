package dicomwrite

import (
	"bytes"
	"fmt"
	"image"
	"strconv"
	"strings"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// SecondaryCaptureClass is the SOP Class UID of Secondary Capture Image Storage.
const SecondaryCaptureClass = "1.2.840.10008.5.1.4.1.1.7"

// Source holds the attributes a derived image copies from its source
// instance: the Patient and General Study modules (which identify the
// patient: a derived image filed in the same study must carry them) and
// the source's own UIDs and instance number.
type Source struct {
	// Patient module.
	PatientName, PatientID, PatientBirthDate, PatientSex string
	// General Study module.
	StudyInstanceUID, StudyDate, StudyTime, ReferringPhysicianName, StudyID, AccessionNumber, StudyDescription string
	// The source instance.
	SeriesInstanceUID, SOPClassUID, SOPInstanceUID string
	SeriesNumber, InstanceNumber                   string
	// Modality is the source's (0008,0060); a capture's own is OT.
	Modality string
	// SpecificCharacterSet is the source's (0008,0005).
	SpecificCharacterSet string
}

// fields pairs Source's fields with their tags.
func (s *Source) fields() []struct {
	t tag.Tag
	p *string
} {
	return []struct {
		t tag.Tag
		p *string
	}{
		{tag.PatientName, &s.PatientName}, {tag.PatientID, &s.PatientID}, {tag.PatientBirthDate, &s.PatientBirthDate},
		{tag.PatientSex, &s.PatientSex}, {tag.StudyInstanceUID, &s.StudyInstanceUID}, {tag.StudyDate, &s.StudyDate},
		{tag.StudyTime, &s.StudyTime}, {tag.ReferringPhysicianName, &s.ReferringPhysicianName}, {tag.StudyID, &s.StudyID},
		{tag.AccessionNumber, &s.AccessionNumber}, {tag.StudyDescription, &s.StudyDescription},
		{tag.SeriesInstanceUID, &s.SeriesInstanceUID}, {tag.SOPClassUID, &s.SOPClassUID}, {tag.SOPInstanceUID, &s.SOPInstanceUID},
		{tag.SeriesNumber, &s.SeriesNumber}, {tag.InstanceNumber, &s.InstanceNumber},
		{tag.SpecificCharacterSet, &s.SpecificCharacterSet}, {tag.Modality, &s.Modality},
	}
}

// ReadSource reads the Source attributes from a DICOM file's header (the
// pixel data is skipped, not decoded).
func ReadSource(data []byte) (src Source, err error) {
	defer func() {
		if r := recover(); r != nil { // the parser is third-party: never let it take us down
			err = fmt.Errorf("dicomwrite: reading source header: %v", r)
		}
	}()
	ds, err := dicom.Parse(bytes.NewReader(data), int64(len(data)), nil, dicom.SkipPixelData())
	if err != nil {
		return Source{}, fmt.Errorf("dicomwrite: reading source header: %w", err)
	}
	for _, f := range src.fields() {
		e, err := ds.FindElementByTag(f.t)
		if err != nil || e.Value == nil {
			continue
		}
		switch v := e.Value.GetValue().(type) {
		case []string:
			*f.p = strings.TrimRight(strings.Join(v, `\`), " \x00")
		case []int:
			if len(v) > 0 {
				*f.p = strconv.Itoa(v[0])
			}
		}
	}
	if src.StudyInstanceUID == "" || src.SOPInstanceUID == "" {
		return Source{}, fmt.Errorf("dicomwrite: source header has no StudyInstanceUID or SOPInstanceUID")
	}
	return src, nil
}

// Capture describes one Secondary Capture image derived from a source.
type Capture struct {
	// Source is the instance the image was derived from.
	Source Source
	// Image holds the RGB pixels (alpha is ignored).
	Image *image.RGBA
	// SeriesInstanceUID and SOPInstanceUID are the new UIDs; SeriesNumber
	// and InstanceNumber number the new series and the image in it.
	SeriesInstanceUID, SOPInstanceUID string
	SeriesNumber, InstanceNumber      int
	// SeriesDescription and DerivationDescription describe the image;
	// Software names the program and its version.
	SeriesDescription, DerivationDescription, Software string
	// Created is the instance creation time (zero: now).
	Created time.Time
}

// SecondaryCapture encodes c as a Part-10 Secondary Capture Image Storage
// file: RGB, 8 bits, explicit VR little endian, in the source's study
// (Patient and General Study modules copied from the source), in the new
// series c.SeriesInstanceUID, referencing the source image in Source Image
// Sequence.
func SecondaryCapture(c Capture) ([]byte, error) {
	if c.Image == nil || c.Image.Rect.Dx() <= 0 || c.Image.Rect.Dy() <= 0 {
		return nil, fmt.Errorf("dicomwrite: secondary capture: no image")
	}
	w, h := c.Image.Rect.Dx(), c.Image.Rect.Dy()
	if w > 0xFFFF || h > 0xFFFF {
		return nil, fmt.Errorf("dicomwrite: secondary capture: image of %dx%d exceeds 65535", w, h)
	}
	s := c.Source
	if s.StudyInstanceUID == "" {
		return nil, fmt.Errorf("dicomwrite: secondary capture: the source has no StudyInstanceUID")
	}
	for _, u := range []string{c.SeriesInstanceUID, c.SOPInstanceUID} {
		if !ValidUID(u) {
			return nil, fmt.Errorf("dicomwrite: secondary capture: %q is not a valid UID", u)
		}
	}
	px := make([]byte, 0, 3*w*h)
	for y := 0; y < h; y++ {
		row := c.Image.Pix[y*c.Image.Stride:]
		for x := 0; x < w; x++ {
			px = append(px, row[4*x], row[4*x+1], row[4*x+2])
		}
	}
	t := c.Created
	if t.IsZero() {
		t = time.Now()
	}
	date, clock := t.Format("20060102"), t.Format("150405")
	ds := Dataset{
		{0x00080008, "CS", `DERIVED\SECONDARY`},
		{0x00080012, "DA", date},
		{0x00080013, "TM", clock},
		{0x00080016, "UI", SecondaryCaptureClass},
		{0x00080018, "UI", c.SOPInstanceUID},
		{0x00080020, "DA", s.StudyDate},
		{0x00080023, "DA", date},
		{0x00080030, "TM", s.StudyTime},
		{0x00080033, "TM", clock},
		{0x00080050, "SH", s.AccessionNumber},
		{0x00080060, "CS", "OT"},
		{0x00080064, "CS", "WSD"},
		{0x00080070, "LO", "multiad"},
		{0x00080090, "PN", s.ReferringPhysicianName},
		{0x00081030, "LO", s.StudyDescription},
		{0x0008103E, "LO", trunc(c.SeriesDescription, 64)},
		{0x00082111, "ST", trunc(c.DerivationDescription, 1024)},
		{0x00100010, "PN", s.PatientName},
		{0x00100020, "LO", s.PatientID},
		{0x00100030, "DA", s.PatientBirthDate},
		{0x00100040, "CS", s.PatientSex},
		{0x00181020, "LO", trunc(c.Software, 64)},
		{0x0020000D, "UI", s.StudyInstanceUID},
		{0x0020000E, "UI", c.SeriesInstanceUID},
		{0x00200010, "SH", s.StudyID},
		{0x00200011, "IS", strconv.Itoa(c.SeriesNumber)},
		{0x00200013, "IS", strconv.Itoa(c.InstanceNumber)},
		{0x00200020, "CS", ""},
		{0x00200060, "CS", ""}, // Laterality: type 2C, unknown for a derived image
		{0x00280002, "US", []uint16{3}},
		{0x00280004, "CS", "RGB"},
		{0x00280006, "US", []uint16{0}},
		{0x00280010, "US", []uint16{uint16(h)}},
		{0x00280011, "US", []uint16{uint16(w)}},
		{0x00280100, "US", []uint16{8}},
		{0x00280101, "US", []uint16{8}},
		{0x00280102, "US", []uint16{7}},
		{0x00280103, "US", []uint16{0}},
		{0x00282110, "CS", "00"},
		{0x7FE00010, "OB", px},
	}
	// Copied strings keep the source's bytes, so they keep its character
	// set; multiad's own strings are ASCII, valid in any.
	if s.SpecificCharacterSet != "" {
		ds = append(ds, Element{0x00080005, "CS", s.SpecificCharacterSet})
	}
	if s.SOPClassUID != "" && s.SOPInstanceUID != "" {
		ds = append(ds, Element{0x00082112, "SQ", []Dataset{{
			{0x00081150, "UI", s.SOPClassUID},
			{0x00081155, "UI", s.SOPInstanceUID},
		}}})
	}
	return File(ds)
}

// trunc cuts s to at most n bytes without splitting a UTF-8 sequence.
func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
