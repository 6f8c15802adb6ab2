package dicomwrite

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/internal/testenv"
	"github.com/multiad/multiad/io/dicom"
	"github.com/multiad/multiad/io/pixels"
)

// testImage is a w×h RGBA gradient with distinct channels.
func testImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := img.PixOffset(x, y)
			img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = uint8(x*7), uint8(y*5), uint8(x+y), 255
		}
	}
	return img
}

// lggSource reads the Source of the first lgg_dicom slice.
func lggSource(t *testing.T) (Source, []byte) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(shared.MustPath(t, "data", "medical", "lgg_dicom", "series"), "*", "IM0000.dcm"))
	if len(files) == 0 {
		t.Fatal("no lgg_dicom files")
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	src, err := ReadSource(data)
	if err != nil {
		t.Fatal(err)
	}
	return src, data
}

func testCapture(t *testing.T, w, h int) (Capture, []byte) {
	src, _ := lggSource(t)
	c := Capture{
		Source: src, Image: testImage(w, h),
		SeriesInstanceUID: NameUID("series", src.SeriesInstanceUID), SOPInstanceUID: NameUID("sop", src.SOPInstanceUID),
		SeriesNumber: 9001, InstanceNumber: 7, SeriesDescription: "multiad anomaly heatmap (test)",
		DerivationDescription: "test overlay", Software: "multiad test",
		Created: time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC),
	}
	b, err := SecondaryCapture(c)
	if err != nil {
		t.Fatal(err)
	}
	return c, b
}

// rgb returns the image's RGB bytes, alpha dropped.
func rgb(img *image.RGBA) []byte {
	var out []byte
	for i := 0; i < len(img.Pix); i += 4 {
		out = append(out, img.Pix[i:i+3]...)
	}
	return out
}

func TestReadSourceLGG(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(shared.MustPath(t, "data", "medical", "lgg_dicom", "series"), "*", "IM000[05].dcm"))
	py := testenv.Python(t, "pydicom")
	// Independent reference: pydicom reads the same fields.
	script := `
import sys, json, pydicom
out = []
for f in sys.argv[1:]:
    ds = pydicom.dcmread(f, stop_before_pixels=True)
    g = lambda k: str(ds.get(k, "") or "")
    out.append({k: g(k) for k in ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
        "StudyDate", "AccessionNumber", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "SeriesNumber"]})
print(json.dumps(out))
`
	out, err := exec.Command(py, append([]string{"-c", script}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("pydicom: %v\n%s", err, out)
	}
	var want []map[string]string
	if err := json.Unmarshal(out, &want); err != nil || len(want) != len(files) || len(files) == 0 {
		t.Fatalf("%v: %s", err, out)
	}
	for i, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ReadSource(data)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{"PatientName": s.PatientName, "PatientID": s.PatientID, "PatientBirthDate": s.PatientBirthDate,
			"PatientSex": s.PatientSex, "StudyInstanceUID": s.StudyInstanceUID, "StudyDate": s.StudyDate,
			"AccessionNumber": s.AccessionNumber, "SeriesInstanceUID": s.SeriesInstanceUID, "SOPClassUID": s.SOPClassUID,
			"SOPInstanceUID": s.SOPInstanceUID, "InstanceNumber": s.InstanceNumber, "SeriesNumber": s.SeriesNumber}
		for k, v := range want[i] {
			if got[k] != v {
				t.Errorf("%s: %s = %q, pydicom %q", filepath.Base(f), k, got[k], v)
			}
		}
	}
}

// TestDecodeWithIODicom decodes a written capture with multiad's own decoder.
func TestDecodeWithIODicom(t *testing.T) {
	for _, sz := range [][2]int{{64, 48}, {7, 5}, {1, 1}} { // odd sizes make odd pixel data lengths
		c, b := testCapture(t, sz[0], sz[1])
		imgs, err := dicom.Decode(b, pixels.DefaultLimits)
		if err != nil {
			t.Fatalf("%v: %v", sz, err)
		}
		m := imgs[0]
		if len(imgs) != 1 || m.Rows != sz[1] || m.Cols != sz[0] || m.Channels != 3 || m.DType != pixels.Uint8 || m.Meta.Photometric != "RGB" {
			t.Fatalf("%v: decoded %d images, %dx%dx%d %v %s", sz, len(imgs), m.Rows, m.Cols, m.Channels, m.DType, m.Meta.Photometric)
		}
		if !bytes.Equal(m.Data, rgb(c.Image)) {
			t.Errorf("%v: pixels differ", sz)
		}
		if m.Meta.TransferSyntax != ExplicitVRLittleEndian {
			t.Errorf("transfer syntax %s", m.Meta.TransferSyntax)
		}
	}
}

// TestPydicom reads a written capture with pydicom (Debian python3-pydicom).
func TestPydicom(t *testing.T) {
	py := testenv.Python(t, "pydicom", "numpy")
	c, b := testCapture(t, 33, 17)
	f := filepath.Join(t.TempDir(), "sc.dcm")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	script := `
import sys, json, hashlib, pydicom
ds = pydicom.dcmread(sys.argv[1])  # strict: a missing DICM or meta fails
a = ds.pixel_array
fm = ds.file_meta
print(json.dumps({
  "ts": str(fm.TransferSyntaxUID), "msop": str(fm.MediaStorageSOPInstanceUID), "glen": int(fm.FileMetaInformationGroupLength),
  "cls": str(ds.SOPClassUID), "sop": str(ds.SOPInstanceUID), "study": str(ds.StudyInstanceUID),
  "series": str(ds.SeriesInstanceUID), "patient": str(ds.PatientName), "pid": str(ds.PatientID),
  "inst": int(ds.InstanceNumber), "desc": str(ds.SeriesDescription), "photo": str(ds.PhotometricInterpretation),
  "shape": list(a.shape), "dtype": str(a.dtype), "sha": hashlib.sha256(a.tobytes()).hexdigest(),
  "ref": str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID),
  "explicit": not ds.is_implicit_VR, "little": ds.is_little_endian}))
`
	out, err := exec.Command(py, "-c", script, f).CombinedOutput()
	if err != nil {
		t.Fatalf("pydicom: %v\n%s", err, out)
	}
	var got struct {
		TS, MSOP, Cls, SOP, Study, Series, Patient, PID, Desc, Photo, Dtype, SHA, Ref string
		Glen, Inst                                                                    int
		Shape                                                                         []int
		Explicit, Little                                                              bool
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	sum := sha256.Sum256(rgb(c.Image))
	want := map[string][2]any{
		"ts": {got.TS, ExplicitVRLittleEndian}, "msop": {got.MSOP, c.SOPInstanceUID}, "cls": {got.Cls, SecondaryCaptureClass},
		"sop": {got.SOP, c.SOPInstanceUID}, "study": {got.Study, c.Source.StudyInstanceUID}, "series": {got.Series, c.SeriesInstanceUID},
		"patient": {got.Patient, c.Source.PatientName}, "pid": {got.PID, c.Source.PatientID}, "inst": {got.Inst, 7},
		"desc": {got.Desc, c.SeriesDescription}, "photo": {got.Photo, "RGB"}, "dtype": {got.Dtype, "uint8"},
		"sha": {got.SHA, hex.EncodeToString(sum[:])}, "ref": {got.Ref, c.Source.SOPInstanceUID},
		"shape":    {jsonOf(got.Shape), "[17,33,3]"},
		"explicit": {got.Explicit, true}, "little": {got.Little, true},
	}
	for k, v := range want {
		if v[0] != v[1] {
			t.Errorf("pydicom %s = %v, want %v", k, v[0], v[1])
		}
	}
	// The group length must cover the meta elements exactly: pydicom
	// read the data set after it, so check the number against the bytes.
	if got.Glen <= 0 || 132+12+got.Glen >= len(b) || string(b[132+12+got.Glen:132+12+got.Glen+2]) != "\x08\x00" {
		t.Errorf("group length %d does not end at the data set", got.Glen)
	}
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestDcmtk checks a written capture with dcmtk's dcmdump and, when
// installed, dicom3tools' dciodvfy (the IOD validator).
func TestDcmtk(t *testing.T) {
	_, b := testCapture(t, 32, 24)
	f := filepath.Join(t.TempDir(), "sc.dcm")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ran := false
	if p, err := exec.LookPath("dcmdump"); err == nil {
		ran = true
		out, err := exec.Command(p, "-E", "+L", f).CombinedOutput() // -E: errors to stderr; fail on errors
		if err != nil || bytes.Contains(out, []byte("E: ")) || bytes.Contains(out, []byte("W: ")) {
			t.Errorf("dcmdump: %v\n%s", err, out)
		}
		for _, want := range []string{"(0002,0010) UI =LittleEndianExplicit", "(0008,0016) UI =SecondaryCaptureImageStorage", "(0028,0004) CS [RGB]"} {
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("dcmdump output lacks %q", want)
			}
		}
	}
	if p, err := exec.LookPath("dciodvfy"); err == nil {
		ran = true
		out, _ := exec.Command(p, f).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "Error") {
				t.Errorf("dciodvfy: %s", line)
			}
		}
		t.Logf("dciodvfy:\n%s", out)
	}
	if !ran {
		testenv.Missing(t, "neither dcmdump (Debian package dcmtk) nor dciodvfy (dicom3tools) found")
	}
}

func TestEncodeErrors(t *testing.T) {
	for name, ds := range map[string]Dataset{
		"duplicate":   {{0x00100010, "PN", "A"}, {0x00100010, "PN", "B"}},
		"bad UID":     {{0x00080018, "UI", "1.02.3"}},
		"long SH":     {{0x00080050, "SH", strings.Repeat("x", 17)}},
		"wrong type":  {{0x00280010, "US", "12"}},
		"bad VR":      {{0x00280010, "us", []uint16{1}}},
		"long short":  {{0x00080050, "LT", strings.Repeat("x", 10241)}},
		"meta in set": {{0x00020010, "UI", "1.2"}, {0x00080016, "UI", "1.2"}, {0x00080018, "UI", "1.2"}},
	} {
		if _, err := File(ds); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := File(Dataset{{0x00100010, "PN", "A"}}); err == nil {
		t.Error("no SOP UIDs: no error")
	}
	if _, err := SecondaryCapture(Capture{}); err == nil {
		t.Error("empty capture: no error")
	}
	if _, err := ReadSource([]byte("not dicom")); err == nil {
		t.Error("ReadSource of junk: no error")
	}
}

func TestUIDs(t *testing.T) {
	a, b := NameUID("x", "y"), NameUID("x", "y")
	if a != b || a == NameUID("x", "z") || a == NameUID("xy") {
		t.Error("NameUID is not a function of its names")
	}
	for i := 0; i < 100; i++ {
		for _, u := range []string{NameUID(strings.Repeat("n", i)), RandomUID()} {
			if !ValidUID(u) || !strings.HasPrefix(u, "2.25.") {
				t.Fatalf("bad UID %q", u)
			}
		}
	}
	for s, want := range map[string]bool{"1.2.3": true, "2.25.0": true, "1..2": false, "1.02": false, "": false, "1.a": false, strings.Repeat("1", 65): false} {
		if ValidUID(s) != want {
			t.Errorf("ValidUID(%q) != %v", s, want)
		}
	}
}

func FuzzReadSource(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(shared.MustPath(f, "data", "medical", "lgg_dicom", "series"), "*", "IM000[01].dcm"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b[:min(len(b), 4096)])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Must not panic; a success has the UIDs ReadSource promises.
		if src, err := ReadSource(data); err == nil && (src.StudyInstanceUID == "" || src.SOPInstanceUID == "") {
			t.Errorf("source %+v without StudyInstanceUID or SOPInstanceUID and no error", src)
		}
	})
}
