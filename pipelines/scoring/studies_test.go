package scoring

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/internal/testenv"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/study"
)

// dicomUIDs reads the study and series UIDs of files with pydicom.
func dicomUIDs(t *testing.T, files []string) map[string][2]string {
	t.Helper()
	in, _ := json.Marshal(files)
	cmd := exec.Command(testenv.Python(t, "pydicom"), "-c", `import json,sys,pydicom
out={}
for f in json.load(sys.stdin):
    d=pydicom.dcmread(f, stop_before_pixels=True)
    out[f]=[str(d.StudyInstanceUID), str(d.SeriesInstanceUID)]
print(json.dumps(out))`)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pydicom: %v\n%s", err, out)
	}
	var m map[string][2]string
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("pydicom gave %q: %v", out, err)
	}
	return m
}

// studyCheck recomputes the studies of a run from its scores.jsonl, with
// the UIDs that pydicom reads, and compares them with studies.jsonl and
// summary.json. studyLabels overrides derived labels by patient.
func studyCheck(t *testing.T, out string, k int, studyLabels map[string]int) (labels []int, scores []float64) {
	t.Helper()
	lines := readJSONL[scoreLine](t, filepath.Join(out, report.ScoresFile))
	var files []string
	for _, l := range lines {
		files = append(files, l.URI)
	}
	uids := dicomUIDs(t, files)
	type agg struct {
		scores  []float64
		label   int
		patient string
	}
	want := map[string]*agg{}
	for _, l := range lines {
		u := uids[l.URI]
		if l.Study != u[0] || l.Series != u[1] {
			t.Errorf("%s: scores.jsonl study/series %q/%q, pydicom %q/%q", l.URI, l.Study, l.Series, u[0], u[1])
		}
		for _, key := range []string{"study\x00" + u[0], "series\x00" + u[0] + "\x00" + u[1]} {
			a := want[key]
			if a == nil {
				a = &agg{patient: l.Meta["patient"]}
				want[key] = a
			}
			a.scores = append(a.scores, l.Score)
			if l.Label != nil && *l.Label == 1 {
				a.label = 1
			}
		}
	}
	got := readJSONL[study.Record](t, filepath.Join(out, study.File))
	if len(got) != len(want) {
		t.Fatalf("%d groups in studies.jsonl, pydicom UIDs give %d", len(got), len(want))
	}
	prev := math.Inf(1)
	for i, g := range got {
		key := g.Level + "\x00" + g.Study
		if g.Level == study.LevelSeries {
			key += "\x00" + g.Series
		}
		a := want[key]
		if a == nil {
			t.Errorf("group %s %s %s: not in the pydicom UIDs", g.Level, g.Study, g.Series)
			continue
		}
		if i > 0 && got[i-1].Level == g.Level && g.Score > prev {
			t.Errorf("studies.jsonl not sorted by score at line %d", i+1)
		}
		prev = g.Score
		sort.Sort(sort.Reverse(sort.Float64Slice(a.scores)))
		n := min(k, len(a.scores))
		mean := 0.0
		for _, v := range a.scores[:n] {
			mean += v / float64(n)
		}
		label := a.label
		if l, ok := studyLabels[a.patient]; ok { // a study's label is its series' too
			label = l
		}
		if math.Abs(g.Score-mean) > 1e-12 || g.Slices != len(a.scores) || g.Label == nil || *g.Label != label || len(g.Top) != min(3, len(a.scores)) {
			t.Errorf("group %s %s: score %g slices %d label %v top %d; want %g, %d, %d", g.Level, g.Study, g.Score, g.Slices, g.Label, len(g.Top), mean, len(a.scores), label)
		}
		if g.Meta["patient"] != a.patient {
			t.Errorf("group %s: meta %v, want patient %s", g.Study, g.Meta, a.patient)
		}
		if g.Level == study.LevelStudy {
			labels, scores = append(labels, label), append(scores, mean)
		}
	}
	return labels, scores
}

// TestStudiesDICOM groups DICOM slices into studies and series with
// --study-score topk:2: studies.jsonl matches a recomputation from
// scores.jsonl with pydicom's UIDs, study_label sets labels, and the study
// AUROC in summary.json matches scikit-learn.
func TestStudiesDICOM(t *testing.T) {
	ddir := shared.MustPath(t, "data", "medical", "lgg_dicom")
	header, rows := dicomRows(t)
	root := t.TempDir()
	abs := [][]string{append(append([]string(nil), header...), "study_label")}
	first := rows[0][4]
	for _, r := range rows {
		r = append([]string(nil), r...)
		r[0], r[2] = filepath.Join(ddir, r[0]), filepath.Join(ddir, r[2])
		sl := ""
		if r[4] == first {
			sl = "0"
		}
		abs = append(abs, append(r, sl))
	}
	manifest := filepath.Join(root, "dicom.csv")
	writeCSV(t, manifest, abs)
	out := filepath.Join(root, "out")
	sum, err := Run(context.Background(), Options{Model: testBundle(t), Input: manifest, Output: out, Heatmaps: report.HeatmapsAnomalous, StudyScore: "topk:2"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Studies == nil || sum.Studies.Studies != 3 || sum.Studies.Series != 3 || sum.Studies.Score != "topk:2" {
		t.Fatalf("summary studies %+v", sum.Studies)
	}
	labels, scores := studyCheck(t, out, 2, map[string]int{first: 0})
	m := sum.Studies.Metrics
	if m == nil || m.Count != 3 {
		t.Fatalf("study metrics %+v", m)
	}
	if m.ImageAUROC == nil {
		t.Fatalf("no study AUROC with labels %v", labels)
	}
	if want := sklearnAUROC(t, labels, scores); math.Abs(*m.ImageAUROC-want) > 1e-12 {
		t.Errorf("study AUROC %g, scikit-learn %g", *m.ImageAUROC, want)
	}
	html, _ := os.ReadFile(filepath.Join(out, report.ReportFile))
	if !strings.Contains(string(html), "Studies and series") || strings.Count(string(html), "<td>study</td>") != 3 {
		t.Errorf("report.html lacks the study table")
	}
	for _, s := range readJSONL[study.Record](t, filepath.Join(out, study.File)) {
		for _, ts := range s.Top {
			if ts.Heatmap != "" {
				if _, err := os.Stat(filepath.Join(out, ts.Heatmap)); err != nil {
					t.Errorf("study %s: %v", s.Study, err)
				}
			} else if s.Anomalous {
				t.Errorf("flagged %s %s: top slice %s without heatmap", s.Level, s.Study, ts.URI)
			}
		}
	}
}

// TestStudiesRealBundle scores all of lgg_dicom with the bundle named by
// $MULTIAD_TEST_BUNDLE (skipped without it) and logs the study, series and
// per-patient slice metrics.
func TestStudiesRealBundle(t *testing.T) {
	b := os.Getenv("MULTIAD_TEST_BUNDLE")
	if b == "" {
		t.Skip("MULTIAD_TEST_BUNDLE not set")
	}
	out := os.Getenv("MULTIAD_TEST_OUT")
	if out == "" {
		out = filepath.Join(t.TempDir(), "out")
	}
	manifest := shared.MustPath(t, "data", "medical", "lgg_dicom", "test.csv")
	sum, err := Run(context.Background(), Options{Model: b, Input: manifest, Output: out, Heatmaps: report.HeatmapsAnomalous, GroupBy: "patient", Device: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	studyCheck(t, out, 1, nil)
	js, _ := json.MarshalIndent(map[string]any{"scored": sum.Scored, "metrics": sum.Metrics, "by_patient": sum.ByGroup, "studies": sum.Studies}, "", "  ")
	t.Logf("lgg_dicom with %s:\n%s", b, js)
	for _, s := range readJSONL[study.Record](t, filepath.Join(out, study.File)) {
		t.Logf("%s %s: score %.4f anomalous %v label %v slices %d (%d above threshold)", s.Level, s.Meta["patient"], s.Score, s.Anomalous, *s.Label, s.Slices, s.AnomalousSlices)
	}
}
