package dicomout

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/multiad/multiad/io/decode"
	"github.com/multiad/multiad/io/dicom"
	"github.com/multiad/multiad/io/dicomweb"
	"github.com/multiad/multiad/io/dicomweb/dicomwebtest"
	"github.com/multiad/multiad/io/dicomwrite"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/model/inference/inferencetest"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
)

// TestOrthancEndToEnd runs against a real Orthanc (scripts/orthanc.sh):
// (1) it uploads one lgg_dicom series with STOW-RS; (2) every instance
// read through DICOMweb decodes to the file's pixels and gets the file's
// anomaly map and score from the runtime test bundle; (3) a Beam pipeline
// reads the series through DICOMweb, scores it and sends the Secondary
// Captures back with STOW-RS; (4) the captures, read back with QIDO-RS and
// WADO-RS, are in the source study, in one new series, and their pixels
// are the overlays computed from the files.
func TestOrthancEndToEnd(t *testing.T) {
	root := dicomwebtest.Orthanc(t)
	start := time.Now()
	base := "dicomweb+" + root + "/dicom-web"
	ctx := context.Background()
	files := lggSeries(t, 1, 0)[0]

	// (1) Upload.
	bySOP := map[string]string{}
	var data [][]byte
	var study, series string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src, err := dicomwrite.ReadSource(b)
		if err != nil {
			t.Fatal(err)
		}
		bySOP[src.SOPInstanceUID] = f
		study, series = src.StudyInstanceUID, src.SeriesInstanceUID
		data = append(data, b)
	}
	bl, err := dicomweb.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	c := dicomweb.NewClient()
	if err := c.Store(ctx, bl, data...); err != nil {
		t.Fatalf("STOW-RS: %v", err)
	}

	// (2) Same pixels, maps and scores through DICOMweb as from files.
	bundleDir := t.TempDir()
	const S = 64
	if err := inferencetest.WriteBundle(bundleDir, S); err != nil {
		t.Fatal(err)
	}
	m, err := inference.Load(ctx, bundleDir, ort.Options{Device: ort.DeviceCPU, IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	scoreOf := func(uri string) ([]float32, float32, []float32) {
		imgs, err := decode.URI(ctx, uri, pixels.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		x, err := m.Preprocess(imgs[0])
		if err != nil {
			t.Fatal(err)
		}
		maps, scores, err := m.Score([][]float32{x})
		if err != nil {
			t.Fatal(err)
		}
		return maps[0], scores[0], x
	}
	seriesURI := base + "/studies/" + study + "/series/" + series
	expected := map[string]score.Result{} // by source SOP UID: the result computed from the file
	for sop, f := range bySOP {
		u := bl.InstanceURI(study, series, sop)
		wm, ws, _ := scoreOf(u)
		fm, fs, x := scoreOf(f)
		if ws != fs || !equalF32(wm, fm) {
			t.Fatalf("%s scores %v through DICOMweb, %v from the file", sop, ws, fs)
		}
		expected[sop] = score.Result{Item: read.Item{URI: f, Index: -1}, Score: float64(fs), Size: S, Map: fm, Gray: score.Gray(x, S)}
	}

	// (3) Pipeline: DICOMweb in, Secondary Captures out by STOW-RS.
	opt := Options{Target: base, MapLo: 0, MapHi: 1, ModelVersion: "test", ModelID: "orthanc-e2e"}
	p, s := beam.NewPipelineWithRoot()
	in := read.ReadImages(s, seriesURI+"?Modality=MR", read.Options{})
	results, _, scoreFailures := score.Score(s, in.Images, score.Options{Bundle: bundleDir, BatchSize: 16, Device: "cpu", Threads: 1, KeepMaps: true, KeepIdentity: true})
	written, failures := Write(s, results, opt)
	passert.Empty(s, in.Failures)
	passert.Empty(s, scoreFailures)
	passert.Empty(s, failures)
	passert.Count(s, written, "written", len(files))
	ptest.RunAndValidate(t, p)

	// (4) Read the captures back.
	newSeries := dicomwrite.NameUID("multiad-sc-series", series, opt.ModelID)
	ins, err := c.List(ctx, dicomweb.Location{Base: bl.Base, Study: study, Series: newSeries, Query: url.Values{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != len(files) {
		t.Fatalf("the new series holds %d instances, want %d", len(ins), len(files))
	}
	// QIDO at study level finds the new series in the source study.
	inStudy, err := c.Query(ctx, bl.Base+"/studies/"+study+"/series", url.Values{"SeriesInstanceUID": {newSeries}}, dicomweb.TagSeriesInstanceUID)
	if err != nil || len(inStudy) != 1 || inStudy[0].String("00080060") != "OT" {
		t.Errorf("new series in the study: %v, %v", inStudy, err)
	}
	want := map[string]string{}
	for sop := range expected {
		want[dicomwrite.NameUID("multiad-sc", sop, "-1", opt.ModelID)] = sop
	}
	for _, in := range ins {
		b, err := c.Retrieve(ctx, dicomweb.Location{Base: bl.Base, Study: in.Study, Series: in.Series, Instance: in.SOP})
		if err != nil {
			t.Fatal(err)
		}
		src, ok := want[in.SOP]
		if !ok {
			t.Fatalf("unexpected capture %s", in.SOP)
		}
		r := expected[src]
		sc := checkCapture(t, b, r, opt)
		if sc.StudyInstanceUID != study || in.Study != study {
			t.Errorf("capture %s is in study %s, want %s", in.SOP, sc.StudyInstanceUID, study)
		}
		imgs, err := dicom.Decode(b, pixels.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		ov, _ := report.Overlay(r, opt.MapLo, opt.MapHi)
		if !bytes.Equal(imgs[0].Data, rgbOf(ov)) {
			t.Errorf("capture %s: pixels are not the file's overlay", in.SOP)
		}
	}
	t.Logf("%d instances up, scored and %d captures back in %.1f s", len(files), len(ins), time.Since(start).Seconds())
}

func equalF32(a, b []float32) bool {
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
