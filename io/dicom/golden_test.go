package dicom

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/pixels"
)

// goldenEntry is one file of shared/data/decoders/dicom/golden.json,
// written by pydicom 2.3.1 with GDCM 3.0.21.
type goldenEntry struct {
	Readable    *bool     `json:"readable"`
	Decodable   *bool     `json:"decodable"`
	HasPixels   *bool     `json:"has_pixels"`
	TS          string    `json:"transfer_syntax"`
	Photometric string    `json:"PhotometricInterpretation"`
	Shape       []int     `json:"shape"`
	DType       string    `json:"dtype"`
	SHA         string    `json:"raw_sha256"`
	Raw         *statsRef `json:"raw"`
	ModalityLUT *statsRef `json:"modality_lut"`
	Error       string    `json:"error"`
}

type statsRef struct{ Min, Max, Mean, Sum float64 }

// unsupportedFiles lists reference-decodable files that Decode refuses with
// ErrUnsupported, each with the transfer syntax UID the error must name.
// Any other decodable file, lossy JPEG included, must match the reference
// exactly (sha256 of the stored values), so a decoder that silently returns
// wrong pixels fails.
func unsupportedFiles() map[string]string {
	m := map[string]string{}
	for name := range knownErrors {
		delete(m, name)
	}
	for _, ts := range unsupportedSyntaxes() {
		m["*"+ts] = ts
	}
	return m
}

// knownErrors lists reference-decodable files that Decode refuses with an
// error (never with pixels), and why.
var knownErrors = map[string]string{
	// The codestream's SIZ segment itself holds the bytes FE FF DD E0 (a
	// sequence delimiter), giving Rsiz 0xFEFF and a width of 0xDDE00100;
	// GDCM tolerates it, OpenJPEG refuses the header.
	"JPEG2000-embedded-sequence-delimiter.dcm": "JPEG 2000 header",
}

// bigEndianOW maps files whose pixel data are 8-bit samples in an OW
// element under Explicit VR Big Endian to their little-endian twins.
// DICOM swaps such samples in pairs (OW is a stream of 16-bit words);
// pydicom 2.3.1 returns them still swapped, so its reference for these files
// is pair-swapped. Decode swaps them back and must equal the twin's
// reference (the twins' pixel data are byte-pair swaps of each other).
var bigEndianOW = map[string]string{
	"pydicom_data/OBXXXX1A_expb.dcm":        "pydicom_data/OBXXXX1A.dcm",
	"pydicom_data/OBXXXX1A_expb_2frame.dcm": "pydicom_data/OBXXXX1A_2frame.dcm",
}

func loadGolden(t *testing.T) (string, map[string]goldenEntry) {
	t.Helper()
	dir := shared.MustPath(t, "data", "decoders", "dicom")
	b, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g map[string]goldenEntry
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return dir, g
}

func sortedKeys(g map[string]goldenEntry) []string {
	keys := make([]string, 0, len(g))
	for k := range g {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// numpyDType maps the reference's dtype (possibly big-endian, ">i2") to ours.
func numpyDType(s string) string {
	s = strings.TrimLeft(s, "<>=|")
	switch s {
	case "i1":
		return "int8"
	case "u1":
		return "uint8"
	case "i2":
		return "int16"
	case "u2":
		return "uint16"
	case "i4":
		return "int32"
	case "u4":
		return "uint32"
	case "f4":
		return "float32"
	case "f8":
		return "float64"
	}
	return s
}

func TestGolden(t *testing.T) {
	dir, golden := loadGolden(t)
	unsup := unsupportedFiles()
	exact, refused := 0, 0
	for _, name := range sortedKeys(golden) {
		g := golden[name]
		if g.Decodable == nil || !*g.Decodable {
			continue
		}
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			imgs, err := Decode(data, pixels.DefaultLimits)
			if want, ok := knownErrors[name]; ok && codecs[g.TS] != nil {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("want an error containing %q, got %v", want, err)
				}
				refused++
				return
			}
			wantUID := unsup[name]
			if wantUID == "" {
				wantUID = unsup["*"+g.TS]
			}
			if wantUID != "" {
				if err == nil || !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), wantUID) {
					t.Fatalf("want an unsupported error naming %s, got %v", wantUID, err)
				}
				refused++
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			ds, err := parse(data, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			if twin, ok := bigEndianOW[name]; ok {
				g.SHA = golden[twin].SHA
				g.Raw, g.ModalityLUT = golden[twin].Raw, golden[twin].ModalityLUT
			}
			checkAgainstGolden(t, imgs, g, ds.has(tagModalityLUT))
			exact++
		})
	}
	t.Logf("decodable reference files: %d equal (sha256 and stats), %d refused with an error", exact, refused)
}

// checkAgainstGolden compares decoded frames with a reference entry.
func checkAgainstGolden(t *testing.T, imgs []*pixels.Image, g goldenEntry, modalityLUTSeq bool) {
	t.Helper()
	if len(imgs) == 0 {
		t.Fatal("no images")
	}
	m := imgs[0]
	shape := []int{m.Rows, m.Cols}
	if len(imgs) > 1 {
		shape = append([]int{len(imgs)}, shape...)
	}
	if m.Channels > 1 {
		shape = append(shape, m.Channels)
	}
	if !equalInts(shape, g.Shape) {
		t.Fatalf("shape %v, reference %v", shape, g.Shape)
	}
	if got, want := m.DType.String(), numpyDType(g.DType); got != want {
		t.Fatalf("dtype %s, reference %s", got, want)
	}
	var stored, rescaled []float64
	h := sha256.New()
	for i, im := range imgs {
		if err := im.Validate(); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		h.Write(im.Data)
		stored = append(stored, im.Stored()...)
		rescaled = append(rescaled, im.Rescaled()...)
	}
	raw := pixels.StatsOf(stored)
	if got := hex.EncodeToString(h.Sum(nil)); got != g.SHA {
		t.Fatalf("sha256 %s, reference %s (stats %+v, reference %+v)", got, g.SHA, raw, *g.Raw)
	}
	compareStats(t, "raw", raw, g.Raw)
	// A Modality LUT Sequence is not expressible as slope/intercept.
	if g.ModalityLUT != nil && !modalityLUTSeq {
		compareStats(t, "modality_lut", pixels.StatsOf(rescaled), g.ModalityLUT)
	}
}

// unsupportedSyntaxes are the transfer syntaxes Decode refuses: those no
// Go code decodes, plus JPEG-LS and JPEG 2000 when built without their cgo
// codecs (codecs_cgo.go).
func unsupportedSyntaxes() []string {
	out := []string{
		"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203", // HTJ2K
	}
	for _, ts := range []string{"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"} {
		if codecs[ts] == nil {
			out = append(out, ts)
		}
	}
	return out
}

func compareStats(t *testing.T, what string, got pixels.Stats, want *statsRef) {
	t.Helper()
	if want == nil {
		return
	}
	close := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
	if !close(got.Min, want.Min) || !close(got.Max, want.Max) || !close(got.Mean, want.Mean) || !close(got.Sum, want.Sum) {
		t.Errorf("%s stats %+v, reference %+v", what, got, *want)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
