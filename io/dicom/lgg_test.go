package dicom

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/nifti"
	"github.com/multiad/multiad/io/pixels"
)

// lggRow is one row of shared/data/medical/lgg_dicom/test.csv.
type lggRow struct {
	uri, patient, syntax string
	slice                int
}

func readLGG(t *testing.T) (string, []lggRow) {
	t.Helper()
	dir := shared.MustPath(t, "data", "medical", "lgg_dicom")
	f, err := os.Open(filepath.Join(dir, "test.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	var rows []lggRow
	for _, r := range recs[1:] {
		k, err := strconv.Atoi(r[col["mask_slice"]])
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, lggRow{uri: r[col["uri"]], patient: r[col["patient"]], syntax: r[col["transfer_syntax"]], slice: k})
	}
	return dir, rows
}

// TestLGGMatchesNIfTI checks every lgg_dicom slice against the lgg_flair
// volume it was made from: DICOM value = 16 x NIfTI value, pixel for pixel.
// Orientation (checked with pydicom and nibabel): DICOM row r, column c is
// NIfTI voxel (i, j, k) = (r, c, mask_slice), i.e. numpy's vol[:, :, k]
// with the first axis as rows; io/nifti's slice k uses the same layout.
func TestLGGMatchesNIfTI(t *testing.T) {
	dir, rows := readLGG(t)
	syntaxUID := map[string]string{
		"explicit":      "1.2.840.10008.1.2.1",
		"jpeg_lossless": "1.2.840.10008.1.2.4.70",
		"rle":           "1.2.840.10008.1.2.5",
	}
	volumes := map[string][]*pixels.Image{}
	seen := map[string]int{}
	for _, r := range rows {
		vol, ok := volumes[r.patient]
		if !ok {
			b, err := os.ReadFile(shared.MustPath(t, "data", "medical", "lgg_flair", "volumes", r.patient+"_flair.nii.gz"))
			if err != nil {
				t.Fatal(err)
			}
			if vol, err = nifti.Decode(b, pixels.DefaultLimits); err != nil {
				t.Fatal(err)
			}
			volumes[r.patient] = vol
		}
		data, err := os.ReadFile(filepath.Join(dir, r.uri))
		if err != nil {
			t.Fatal(err)
		}
		imgs, err := Decode(data, pixels.DefaultLimits)
		if err != nil {
			t.Fatalf("%s: %v", r.uri, err)
		}
		m := imgs[0]
		if len(imgs) != 1 || m.DType != pixels.Uint16 || m.Channels != 1 {
			t.Fatalf("%s: %d images of %v x%d", r.uri, len(imgs), m.DType, m.Channels)
		}
		if want := syntaxUID[r.syntax]; m.Meta.TransferSyntax != want {
			t.Fatalf("%s: transfer syntax %s, csv says %s (%s)", r.uri, m.Meta.TransferSyntax, r.syntax, want)
		}
		if r.slice < 0 || r.slice >= len(vol) {
			t.Fatalf("%s: slice %d outside the %d-slice volume", r.uri, r.slice, len(vol))
		}
		ref := vol[r.slice]
		if ref.Rows != m.Rows || ref.Cols != m.Cols {
			t.Fatalf("%s: %dx%d, NIfTI slice %dx%d", r.uri, m.Rows, m.Cols, ref.Rows, ref.Cols)
		}
		for i := 0; i < m.Len(); i++ {
			if got, want := m.At(i), 16*ref.At(i); got != want {
				t.Fatalf("%s: pixel (%d, %d) = %v, 16 x NIfTI = %v", r.uri, i/m.Cols, i%m.Cols, got, want)
			}
		}
		seen[r.syntax]++
	}
	if len(seen) != 3 {
		t.Errorf("transfer syntaxes covered: %v, want 3", seen)
	}
	t.Logf("slices checked per syntax: %v", seen)
}

// TestIdentity checks that patient identity is read into Meta.Identity and
// appears nowhere else in Meta (nor in its JSON form).
func TestIdentity(t *testing.T) {
	dir, rows := readLGG(t)
	for _, r := range []lggRow{rows[0], rows[len(rows)/2], rows[len(rows)-1]} {
		data, err := os.ReadFile(filepath.Join(dir, r.uri))
		if err != nil {
			t.Fatal(err)
		}
		imgs, err := Decode(data, pixels.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		meta := imgs[0].Meta
		id := meta.Identity
		// The series folder is named after the patient ID; the synthetic
		// names are "Anon^<study date>" and the raw header must hold them.
		if id.PatientID != r.patient {
			t.Errorf("%s: PatientID %q, want %q", r.uri, id.PatientID, r.patient)
		}
		for name, v := range map[string]string{"PatientName": id.PatientName, "PatientBirthDate": id.PatientBirthDate,
			"StudyInstanceUID": id.StudyInstanceUID, "SeriesInstanceUID": id.SeriesInstanceUID, "SOPInstanceUID": id.SOPInstanceUID} {
			if v == "" || !strings.Contains(string(data), v) {
				t.Errorf("%s: %s %q empty or not in the file", r.uri, name, v)
			}
		}
		secrets := []string{id.PatientName, id.PatientID, id.PatientBirthDate}
		js, err := json.Marshal(meta)
		if err != nil {
			t.Fatal(err)
		}
		mv := reflect.ValueOf(meta)
		for i := 0; i < mv.NumField(); i++ {
			if mv.Type().Field(i).Name == "Identity" {
				continue
			}
			field := mv.Field(i).Interface()
			fjs, _ := json.Marshal(field)
			for _, s := range secrets {
				if s != "" && strings.Contains(string(fjs), s) {
					t.Errorf("%s: Meta.%s carries identity %q", r.uri, mv.Type().Field(i).Name, s)
				}
			}
		}
		for _, s := range secrets {
			if strings.Contains(string(js), s) {
				t.Errorf("%s: Meta JSON carries identity %q", r.uri, s)
			}
		}
	}
}
