package dicomout

import (
	"bytes"
	"context"
	"image"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/decode"
	"github.com/multiad/multiad/io/dicom"
	"github.com/multiad/multiad/io/dicomweb/dicomwebtest"
	"github.com/multiad/multiad/io/dicomwrite"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
)

func TestMain(m *testing.M) { ptest.Main(m) }

// lggSeries returns the first n files of each of the first k lgg_dicom series.
func lggSeries(t *testing.T, k, n int) [][]string {
	dirs, _ := filepath.Glob(filepath.Join(shared.MustPath(t, "data", "medical", "lgg_dicom", "series"), "*"))
	var out [][]string
	for _, d := range dirs[:min(k, len(dirs))] {
		f, _ := filepath.Glob(filepath.Join(d, "*.dcm"))
		if n > 0 {
			f = f[:min(n, len(f))]
		}
		out = append(out, f)
	}
	if len(out) < k {
		t.Fatalf("want %d lgg_dicom series", k)
	}
	return out
}

const size = 16

// fakeResult builds a scored result for a file with a synthetic map.
func fakeResult(t *testing.T, uri string, seed int, anomalous bool) score.Result {
	imgs, err := decode.URI(context.Background(), uri, pixels.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	id := imgs[0].Meta.Identity
	r := score.Result{Item: read.Item{URI: uri, Index: -1, Label: -1, MaskIndex: -1}, Score: 0.2, Anomalous: anomalous,
		Size: size, Map: make([]float32, size*size), Gray: make([]uint8, size*size), Rows: imgs[0].Rows, Cols: imgs[0].Cols, Identity: &id}
	if anomalous {
		r.Score = 0.9
	}
	for i := range r.Map {
		r.Map[i] = float32((i*7+seed*13)%97) / 96
		r.Gray[i] = uint8(i*3 + seed)
	}
	return r
}

// rgbOf drops alpha.
func rgbOf(img *image.RGBA) []byte {
	var out []byte
	for i := 0; i < len(img.Pix); i += 4 {
		out = append(out, img.Pix[i:i+3]...)
	}
	return out
}

// checkCapture checks one written capture against its result.
func checkCapture(t *testing.T, data []byte, r score.Result, opt Options) dicomwrite.Source {
	t.Helper()
	imgs, err := dicom.Decode(data, pixels.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	want, err := report.Overlay(r, opt.MapLo, opt.MapHi)
	if err != nil {
		t.Fatal(err)
	}
	if imgs[0].Channels != 3 || !bytes.Equal(imgs[0].Data, rgbOf(want)) {
		t.Errorf("%s: capture pixels are not the overlay", r.Item.URI)
	}
	sc, err := dicomwrite.ReadSource(data)
	if err != nil {
		t.Fatal(err)
	}
	srcData, _ := os.ReadFile(r.Item.URI)
	src, _ := dicomwrite.ReadSource(srcData)
	if sc.StudyInstanceUID != src.StudyInstanceUID || sc.PatientID != src.PatientID || sc.PatientName != src.PatientName ||
		sc.InstanceNumber != src.InstanceNumber || sc.SOPClassUID != dicomwrite.SecondaryCaptureClass || sc.Modality != "OT" ||
		sc.SeriesInstanceUID == src.SeriesInstanceUID || sc.SOPInstanceUID == src.SOPInstanceUID {
		t.Errorf("%s: capture header %+v, source %+v", r.Item.URI, sc, src)
	}
	return sc
}

// TestWrite writes the captures of a flagged and an unflagged series to a
// fake DICOMweb server and to a folder.
func TestWrite(t *testing.T) {
	series := lggSeries(t, 2, 4)
	var results []score.Result
	bySOP := map[string]score.Result{}
	for k, files := range series {
		for i, f := range files {
			r := fakeResult(t, f, 10*k+i, k == 0 && i == 2) // one anomalous slice in series 0
			results = append(results, r)
			bySOP[r.Identity.SOPInstanceUID] = r
		}
	}
	noID := results[0]
	noID.Identity = nil
	notDICOM := results[0]
	notDICOM.Identity = &pixels.Identity{}
	all := append(append([]score.Result(nil), results...), noID, notDICOM)

	srv := dicomwebtest.New()
	defer srv.Close()
	dir := t.TempDir()
	for _, target := range []string{srv.Base(), dir} {
		opt := Options{Target: target, MapLo: 0, MapHi: 1, ModelVersion: "v-test", ModelID: "model-1"}
		p, s := beam.NewPipelineWithRoot()
		written, failures := Write(s, beam.CreateList(s, all), opt)
		passert.Count(s, written, "written", len(series[0]))
		passert.Count(s, failures, "failures", 1)
		ptest.RunAndValidate(t, p)

		var got [][]byte
		if target == dir {
			files, err := storage.Glob(context.Background(), filepath.Join(dir, "*", "*", "*.dcm"))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				b, _ := os.ReadFile(f)
				got = append(got, b)
			}
		} else {
			for _, r := range results[:len(series[0])] {
				sop := dicomwrite.NameUID("multiad-sc", r.Identity.SOPInstanceUID, "-1", opt.ModelID)
				b, ok := srv.Instance(sop)
				if !ok {
					t.Fatalf("capture of %s not stored", r.Item.URI)
				}
				got = append(got, b)
			}
			if srv.Len() != len(series[0]) {
				t.Errorf("server holds %d instances, want %d", srv.Len(), len(series[0]))
			}
		}
		if len(got) != len(series[0]) {
			t.Fatalf("%s: %d captures, want %d", target, len(got), len(series[0]))
		}
		newSeries := map[string]bool{}
		for _, b := range got {
			sc, err := dicomwrite.ReadSource(b)
			if err != nil {
				t.Fatal(err)
			}
			// Source Image Sequence → the result it came from.
			var r score.Result
			for sop, rr := range bySOP {
				if dicomwrite.NameUID("multiad-sc", sop, "-1", opt.ModelID) == sc.SOPInstanceUID {
					r = rr
				}
			}
			if r.Identity == nil {
				t.Fatalf("capture %s matches no result", sc.SOPInstanceUID)
			}
			checkCapture(t, b, r, opt)
			newSeries[sc.SeriesInstanceUID] = true
		}
		if len(newSeries) != 1 {
			t.Errorf("captures span %d series, want 1", len(newSeries))
		}
	}
}

// TestWriteSeries flags series by the caller's choice.
func TestWriteSeries(t *testing.T) {
	series := lggSeries(t, 2, 2)
	var results []score.Result
	for k, files := range series {
		for i, f := range files {
			results = append(results, fakeResult(t, f, i, k == 0)) // series 0 anomalous, series 1 chosen
		}
	}
	dir := t.TempDir()
	p, s := beam.NewPipelineWithRoot()
	chosen := beam.Create(s, results[len(series[0])].Identity.SeriesInstanceUID)
	written, failures := WriteSeries(s, beam.CreateList(s, results), chosen, Options{Target: dir, ModelID: "m"})
	passert.Count(s, written, "written", len(series[1]))
	passert.Empty(s, failures)
	ptest.RunAndValidate(t, p)
	files, _ := filepath.Glob(filepath.Join(dir, results[0].Identity.StudyInstanceUID, "*", "*.dcm"))
	if len(files) != 0 {
		t.Errorf("series 0 written although not chosen: %v", files)
	}
}

func TestOptions(t *testing.T) {
	if (Options{}).Validate() == nil || (Options{Target: "dicomweb+http:///x"}).Validate() == nil {
		t.Error("bad options accepted")
	}
	if (Options{Target: "dicomweb://h/dw"}).Validate() != nil || (Options{Target: "/tmp/out"}).Validate() != nil {
		t.Error("good options refused")
	}
	if !IsDICOMweb("DICOMweb+HTTP://h") || IsDICOMweb("gs://b") || IsDICOMweb("/tmp") {
		t.Error("IsDICOMweb")
	}
}
