package study

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/multiad/multiad/internal/testenv"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
)

func TestMain(m *testing.M) { ptest.Main(m) }

func TestParseScore(t *testing.T) {
	for _, c := range []struct {
		in   string
		k    int
		fail bool
	}{
		{"", 1, false}, {"max", 1, false}, {"topk:1", 1, false}, {"topk:5", 5, false},
		{"topk:0", 0, true}, {"topk:-2", 0, true}, {"topk:x", 0, true}, {"mean", 0, true}, {"topk:", 0, true},
	} {
		k, err := ParseScore(c.in)
		if (err != nil) != c.fail || k != c.k {
			t.Errorf("ParseScore(%q) = %d, %v; want %d, error %v", c.in, k, err, c.k, c.fail)
		}
	}
}

// TestHashUID compares with Python's hmac module.
func TestHashUID(t *testing.T) {
	uids := []string{"1.2.840.113619.2.55.3.604688119.969.1268071029.320", "1.3.6.1.4.1.9328.50.45.1", "x"}
	in, _ := json.Marshal(uids)
	cmd := exec.Command(testenv.Python(t, "hmac", "hashlib"), "-c", `import json,sys,hmac,hashlib
print(json.dumps([hmac.new(b"pepper", u.encode(), hashlib.sha256).hexdigest()[:32] for u in json.load(sys.stdin)]))`)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v %s", err, out)
	}
	var want []string
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	for i, u := range uids {
		if got := HashUID("pepper", u); got != want[i] {
			t.Errorf("HashUID(%q) = %s, Python hmac %s", u, got, want[i])
		}
	}
	if HashUID("pepper", "") != "" || HashUID("a", "x") == HashUID("b", "x") {
		t.Error("empty UIDs must stay empty and different salts must differ")
	}
}

// slice makes a test slice of a DICOM series.
func slice(study, series string, i int, s float64, label int) Slice {
	return Slice{URI: "gs://b/" + series + "/" + string(rune('a'+i)) + ".dcm", Index: -1, Score: s, Anomalous: s > 0.5,
		Label: label, Study: study, Series: series, Meta: map[string]string{"patient": study, "n": string(rune('a' + i))}}
}

// bruteGroup computes a group's expected score, label and top slices
// directly from its slices.
func bruteGroup(slices []Slice, k int) (score float64, label int, top []float64) {
	sc := make([]float64, len(slices))
	pos, neg := 0, 0
	for i, s := range slices {
		sc[i] = s.Score
		switch s.Label {
		case 1:
			pos++
		case 0:
			neg++
		}
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(sc)))
	k = min(k, len(sc))
	for _, v := range sc[:k] {
		score += v
	}
	score /= float64(k)
	label = -1
	if pos > 0 {
		label = 1
	} else if neg == len(slices) {
		label = 0
	}
	return score, label, sc[:min(3, len(sc))]
}

// TestCombineOrderIndependent: any order and split of the inputs into
// merged accumulators gives the same groups, matching a direct computation.
func TestCombineOrderIndependent(t *testing.T) {
	var slices []Slice
	byStudy := map[string][]Slice{}
	for i := 0; i < 7; i++ {
		s := slice("S1", "A", i, float64(i%4)/4+0.1, i%2)
		slices = append(slices, s)
		byStudy["S1"] = append(byStudy["S1"], s)
	}
	for i := 0; i < 5; i++ {
		s := slice("S1", "B", i, 0.2+float64(i)/50, 0)
		slices = append(slices, s)
		byStudy["S1"] = append(byStudy["S1"], s)
	}
	for i := 0; i < 4; i++ {
		s := slice("S2", "C", i, 0.3, 0)
		if i == 3 {
			s.Label = -1
		}
		slices = append(slices, s)
		byStudy["S2"] = append(byStudy["S2"], s)
	}
	for _, k := range []int{1, 2, 5} {
		f := &CombineFn{K: k, Threshold: 0.5}
		want := Aggregate(slices, f)
		if len(want) != 5 {
			t.Fatalf("%d groups, want 2 studies and 3 series", len(want))
		}
		for _, g := range want {
			if g.Level != LevelStudy {
				continue
			}
			score, label, top := bruteGroup(byStudy[g.Study], k)
			if math.Abs(g.Score-score) > 1e-12 || g.Label != label || g.Slices != len(byStudy[g.Study]) {
				t.Errorf("k=%d study %s: score %g label %d slices %d; want %g %d %d", k, g.Study, g.Score, g.Label, g.Slices, score, label, len(byStudy[g.Study]))
			}
			var got []float64
			for _, s := range g.Top {
				got = append(got, s.Score)
			}
			if !reflect.DeepEqual(got, top) {
				t.Errorf("k=%d study %s: top %v, want %v", k, g.Study, got, top)
			}
			if g.Anomalous != (score > 0.5) {
				t.Errorf("k=%d study %s: anomalous %v with score %g", k, g.Study, g.Anomalous, score)
			}
		}
		r := rand.New(rand.NewSource(int64(k)))
		for trial := 0; trial < 20; trial++ {
			perm := r.Perm(len(slices))
			parts := map[string][]Accumulator{}
			for _, i := range perm {
				for _, key := range Keys(slices[i]) {
					accs := parts[key]
					if len(accs) == 0 || r.Intn(3) == 0 {
						accs = append(accs, f.CreateAccumulator())
					}
					accs[len(accs)-1] = f.AddInput(accs[len(accs)-1], slices[i])
					parts[key] = accs
				}
			}
			var got []Group
			for key, accs := range parts {
				a := accs[0]
				for _, b := range accs[1:] {
					a = f.MergeAccumulators(a, b)
				}
				got = append(got, withKey(key, f.ExtractOutput(a)))
			}
			SortGroups(got)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("k=%d trial %d: merged groups differ:\n%+v\nwant\n%+v", k, trial, got, want)
			}
		}
	}
}

func TestLabels(t *testing.T) {
	f := &CombineFn{Threshold: 0.5}
	for _, c := range []struct {
		name     string
		labels   []int
		study    []string
		want     int
		conflict bool
	}{
		{"derived abnormal", []int{0, 1, -1}, nil, 1, false},
		{"derived normal", []int{0, 0}, nil, 0, false},
		{"unknown slice", []int{0, -1}, nil, -1, false},
		{"study_label wins", []int{0, 0}, []string{"1", "1"}, 1, false},
		{"study_label 0", []int{1, 1}, []string{"0", ""}, 0, false},
		{"conflict", []int{0, 0}, []string{"0", "1"}, -1, true},
		{"bad value", []int{0}, []string{"yes"}, -1, true},
	} {
		var a Accumulator
		for i, l := range c.labels {
			s := slice("S", "", i, 0.1, l)
			if i < len(c.study) {
				s.StudyLabel = c.study[i]
			}
			a = f.AddInput(a, s)
		}
		g := f.ExtractOutput(a)
		if g.Label != c.want || g.LabelConflict != c.conflict {
			t.Errorf("%s: label %d conflict %v, want %d %v", c.name, g.Label, g.LabelConflict, c.want, c.conflict)
		}
	}
}

// TestCommonMeta: a group keeps the manifest columns its slices agree on;
// studies.jsonl leaves PHI columns and identity out unless asked.
func TestCommonMeta(t *testing.T) {
	f := &CombineFn{}
	var a Accumulator
	id := &pixels.Identity{PatientName: "Doe^Jane"}
	for i := 0; i < 3; i++ {
		s := slice("S", "A", i, 0.1, 0)
		s.Meta["patient_name"] = "Doe^Jane"
		s.Identity = id
		a = f.AddInput(a, s)
	}
	g := withKey(Keys(slice("S", "A", 0, 0, 0))[0], f.ExtractOutput(a))
	if !reflect.DeepEqual(g.Meta, map[string]string{"patient": "S", "patient_name": "Doe^Jane"}) {
		t.Errorf("common meta %v", g.Meta)
	}
	b, _ := json.Marshal(NewRecord(g, false))
	if strings.Contains(string(b), "Doe") {
		t.Errorf("PHI in a study record without includePHI: %s", b)
	}
	b, _ = json.Marshal(NewRecord(g, true))
	if !strings.Contains(string(b), `"patient_name":"Doe^Jane"`) {
		t.Errorf("no identity with includePHI: %s", b)
	}
}

// result makes a scored result with a small map.
func result(study, series, uri string, index int, s float64, label int) score.Result {
	m := make([]float32, 16)
	g := make([]uint8, 16)
	for i := range m {
		m[i], g[i] = float32(i)/16*float32(s), uint8(i*16)
	}
	return score.Result{Item: read.Item{URI: uri, Index: index, IndexKind: "slice", Label: label, MaskIndex: -1, Study: study, Series: series},
		Score: s, Anomalous: s > 0.5, Size: 4, Map: m, Gray: g, Rows: 4, Cols: 4}
}

// TestPipeline runs Identify, Groups and Write on Prism and checks
// studies.jsonl, the heatmaps and the digest against Aggregate.
func TestPipeline(t *testing.T) {
	var results []score.Result
	var slices []Slice
	for i := 0; i < 6; i++ {
		r := result("1.2.3", "1.2.3.4", "/d/a"+string(rune('0'+i))+".dcm", -1, float64(i)/10, 0)
		results = append(results, r)
	}
	results = append(results, result("1.2.3", "1.2.3.5", "/d/b.dcm", -1, 0.9, 1))
	for i := 0; i < 4; i++ {
		results = append(results, result("", "", "/v/vol.nii.gz", i, 0.2+float64(i)/100, 0))
	}
	for _, r := range results {
		r.Item.Study, r.Item.Series = HashUID("salt", r.Item.Study), HashUID("salt", r.Item.Series)
		slices = append(slices, FromResult(r))
	}
	dir := t.TempDir()
	p, s := beam.NewPipelineWithRoot()
	in := beam.CreateList(s, results)
	parts := GroupParts(s, Identify(s, in, "salt"), Options{K: 2, Threshold: 0.5})
	Write(s, WriteOptions{Dir: dir, Score: "topk:2", Heatmaps: report.HeatmapsAnomalous}, parts...)
	ptest.RunAndValidate(t, p)

	want := Aggregate(slices, &CombineFn{K: 2, Threshold: 0.5})
	b, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(want) || len(want) != 4 {
		t.Fatalf("%d lines, %d groups (want 2 studies, 2 series):\n%s", len(lines), len(want), b)
	}
	for i, line := range lines {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		w := want[i]
		if r.Level != w.Level || r.Study != w.Study || r.Series != w.Series || r.Score != w.Score || r.Slices != w.Slices {
			t.Errorf("line %d: %s; want %+v", i, line, w)
		}
		if strings.Contains(line, "1.2.3") {
			t.Errorf("line %d has a raw UID: %s", i, line)
		}
		for j, ts := range r.Top {
			if (ts.Heatmap != "") != w.Anomalous {
				t.Errorf("line %d top %d: heatmap %q for a group anomalous=%v", i, j, ts.Heatmap, w.Anomalous)
			}
			if ts.Heatmap != "" {
				if _, err := os.Stat(filepath.Join(dir, ts.Heatmap)); err != nil {
					t.Errorf("line %d: %v", i, err)
				}
			}
		}
	}
	var d report.StudyDigest
	b, err = os.ReadFile(filepath.Join(dir, report.StudyDigestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	// Studies: the DICOM study (label 1, score mean(0.9, 0.5)) and the
	// volume (label 0, mean(0.23, 0.22)): AUROC 1.
	if d.Summary.Studies != 2 || d.Summary.Series != 2 || d.Summary.Metrics == nil || d.Summary.Metrics.ImageAUROC == nil || *d.Summary.Metrics.ImageAUROC != 1 {
		t.Errorf("digest summary %+v", d.Summary)
	}
	if d.Summary.Flagged != 1 || d.Summary.FlaggedSeries != 1 || len(d.Rows) != 4 {
		t.Errorf("flagged %d studies %d series, %d rows", d.Summary.Flagged, d.Summary.FlaggedSeries, len(d.Rows))
	}
	if err := WriteLines(context.Background(), t.TempDir(), nil); err != nil {
		t.Errorf("empty WriteLines: %v", err)
	}
}

// TestKeyDropsUndrawnMaps checks which slices keep their maps into the
// combine: only those whose study heatmap Write may still have to draw.
func TestKeyDropsUndrawnMaps(t *testing.T) {
	png := func(s float64) score.Result {
		r := result("", "", "/t/a.png", 0, s, 0)
		r.Item.IndexKind = ""
		return r
	}
	dcm := func(s float64) score.Result { return result("1.2", "1.2.3", "/d/a.dcm", 0, s, 0) }
	for _, c := range []struct {
		name        string
		mode        string
		skipWritten bool
		r           score.Result
		keep        bool
		heatmap     bool
	}{
		{"no mode keeps all", "", true, png(0.9), true, false},
		{"none drops", report.HeatmapsNone, false, dcm(0.9), false, false},
		{"single normal image", report.HeatmapsAnomalous, true, png(0.1), false, false},
		{"single anomalous image", report.HeatmapsAnomalous, true, png(0.9), false, true},
		{"normal slice of a series", report.HeatmapsAnomalous, true, dcm(0.1), true, false},
		{"anomalous slice of a series", report.HeatmapsAnomalous, true, dcm(0.9), false, true},
		{"not written elsewhere", report.HeatmapsAnomalous, false, png(0.9), true, false},
		{"all, written elsewhere", report.HeatmapsAll, true, dcm(0.1), false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []Slice
			(&keyFn{Heatmaps: c.mode, SkipWritten: c.skipWritten}).ProcessElement(c.r, func(_ string, s Slice) { got = append(got, s) })
			if len(got) == 0 {
				t.Fatal("nothing emitted")
			}
			for _, s := range got {
				if (s.Map != nil) != c.keep || (s.Gray != nil) != c.keep {
					t.Errorf("map kept = %v, want %v", s.Map != nil, c.keep)
				}
				if (s.Heatmap != "") != c.heatmap || (c.heatmap && s.Heatmap != report.HeatmapName(c.r.Item)) {
					t.Errorf("heatmap %q, want set = %v", s.Heatmap, c.heatmap)
				}
			}
		})
	}
}
