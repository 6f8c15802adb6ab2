package study

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
)

// randomLines makes n lines of random studies and series, with tied scores
// and a few multi-slice groups.
func randomLines(t *testing.T, r *rand.Rand, n int) []Line {
	t.Helper()
	var all []Line
	for i := 0; i < n; i++ {
		g := Group{Level: LevelStudy, Study: fmt.Sprintf("s%05d", i), Score: float64(r.IntN(40)) / 8, Slices: 1, Label: r.IntN(3) - 1}
		if r.IntN(4) == 0 {
			g.Level, g.Series, g.Slices = LevelSeries, fmt.Sprintf("r%d", r.IntN(3)), 1+r.IntN(5)
		}
		g.Anomalous = g.Score > 2
		l, err := NewLine(g, false)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, l)
	}
	return all
}

// inMemory returns the studies.jsonl of lines as the writer made it before
// it spilled: every line sorted in memory (studies first, then series, by
// decreasing score, then by study and series).
func inMemory(lines []Line) string {
	all := append([]Line(nil), lines...)
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.Level != b.Level {
			return a.Level == LevelStudy
		}
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		return a.Key < b.Key
	})
	var b strings.Builder
	for _, l := range all {
		b.WriteString(l.JSON + "\n")
	}
	return b.String()
}

// TestWriteSpilled spills lines from several bundles (lineFn instances)
// through tiny shards and merge passes, runs finalFn, and compares
// studies.jsonl with the in-memory order and the digest with Digest over
// every line (its rows cut to report.MaxStudyRows).
func TestWriteSpilled(t *testing.T) {
	defer func(b, f int) { spillBytes, mergeFanIn = b, f }(spillBytes, mergeFanIn)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct{ n, spill, fanIn int }{{0, 100, 2}, {1, 100, 2}, {700, 1 << 20, 64}, {700, 500, 3}, {300, 200, 2}} {
		spillBytes, mergeFanIn = tc.spill, tc.fanIn
		dir := t.TempDir()
		lines := randomLines(t, r, tc.n)
		var uris []string
		emit := func(u string) { uris = append(uris, u) }
		fns := []*lineFn{{Opt: WriteOptions{Dir: dir}}, {Opt: WriteOptions{Dir: dir}}, {Opt: WriteOptions{Dir: dir}}}
		for _, f := range fns {
			f.StartBundle(ctx, emit)
		}
		for i, l := range lines {
			if err := fns[i%3].spill.Add(ctx, l, emit); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range fns {
			if err := f.FinishBundle(ctx, emit); err != nil {
				t.Fatal(err)
			}
		}
		if tc.n >= 700 && tc.spill < 1000 && len(uris) < 2*tc.fanIn {
			t.Fatalf("n=%d spill=%d: %d shards; the test must exercise merge passes", tc.n, tc.spill, len(uris))
		}
		i := 0
		err := (&finalFn{Opt: WriteOptions{Dir: dir, Score: "max"}}).ProcessElement(ctx, nil, func(u *string) bool {
			if i == len(uris) {
				return false
			}
			*u = uris[i]
			i++
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, File))
		if err != nil {
			t.Fatal(err)
		}
		if want := inMemory(lines); string(got) != want {
			t.Fatalf("n=%d spill=%d fan-in=%d: studies.jsonl differs from the in-memory order (%d vs %d bytes)", tc.n, tc.spill, tc.fanIn, len(got), len(want))
		}
		b, err := os.ReadFile(filepath.Join(dir, report.StudyDigestFile))
		if err != nil {
			t.Fatal(err)
		}
		var d report.StudyDigest
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		sorted := append([]Line(nil), lines...)
		sort.SliceStable(sorted, func(i, j int) bool { return lineCmp(&sorted[i], &sorted[j]) < 0 })
		want, err := Digest(sorted, "max")
		if err != nil {
			t.Fatal(err)
		}
		// An independent count of what the digest summarizes.
		flagged, multi := 0, false
		for _, l := range lines {
			var rec Record
			if err := json.Unmarshal([]byte(l.JSON), &rec); err != nil {
				t.Fatal(err)
			}
			if l.Level == LevelStudy && l.Anomalous {
				flagged++
			}
			multi = multi || rec.Slices > 1
		}
		if d.Total != tc.n || len(d.Rows) != min(tc.n, report.MaxStudyRows) || d.Summary.Flagged != flagged || d.MultiSlice != multi {
			t.Errorf("n=%d: digest total %d rows %d flagged %d multi %v, want %d, %d, %d, %v", tc.n, d.Total, len(d.Rows),
				d.Summary.Flagged, d.MultiSlice, tc.n, min(tc.n, report.MaxStudyRows), flagged, multi)
		}
		wb, _ := json.Marshal(want)
		var w report.StudyDigest
		if err := json.Unmarshal(wb, &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(d, w) {
			t.Errorf("n=%d: merged digest differs from Digest over the sorted lines", tc.n)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*.shard")); len(left) != 0 {
			t.Errorf("n=%d: shards left: %v", tc.n, left)
		}
	}
}

// TestGroupsSingles runs Groups and Write over plain 2-D images (grouped
// without the CombinePerKey) mixed with a DICOM study and a volume, and
// compares studies.jsonl with Aggregate's groups (every slice combined in
// memory) written by WriteLines.
func TestGroupsSingles(t *testing.T) {
	var results []score.Result
	var slices []Slice
	for i := 0; i < 7; i++ {
		r := result("", "", fmt.Sprintf("/p/img%d.png", i), -1, float64(i%4)/4, i%3-1)
		r.Item.IndexKind = ""
		r.Item.Meta = map[string]string{"site": fmt.Sprint(i % 2), LabelColumn: fmt.Sprint(i % 2)}
		results = append(results, r)
	}
	for i := 0; i < 3; i++ {
		results = append(results, result("1.2.3", "1.2.3.4", fmt.Sprintf("/d/a%d.dcm", i), -1, 0.3+float64(i)/10, i%2))
	}
	for i := 0; i < 3; i++ {
		results = append(results, result("", "", "/v/vol.nii.gz", i, 0.5-float64(i)/10, 0))
	}
	for _, r := range results {
		slices = append(slices, FromResult(r))
	}
	var lines []Line
	for _, g := range Aggregate(slices, &CombineFn{K: 2, Threshold: 0.4}) {
		l, err := NewLine(g, false)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 7+1+1+1 {
		t.Fatalf("%d groups, want 7 images, a DICOM study and series, and a volume", len(lines))
	}
	want := t.TempDir()
	if err := WriteLines(context.Background(), want, lines); err != nil {
		t.Fatal(err)
	}
	w, err := os.ReadFile(filepath.Join(want, File))
	if err != nil {
		t.Fatal(err)
	}
	opt := Options{K: 2, Threshold: 0.4}
	for _, tc := range []struct {
		name   string
		groups func(s beam.Scope, results beam.PCollection) []beam.PCollection
	}{
		{"Groups", func(s beam.Scope, results beam.PCollection) []beam.PCollection {
			return []beam.PCollection{Groups(s, results, opt)}
		}},
		{"GroupParts", func(s beam.Scope, results beam.PCollection) []beam.PCollection {
			return GroupParts(s, results, opt)
		}},
	} {
		dir := t.TempDir()
		p, s := beam.NewPipelineWithRoot()
		Write(s, WriteOptions{Dir: dir, Score: "topk:2"}, tc.groups(s, beam.CreateList(s, results))...)
		ptest.RunAndValidate(t, p)
		got, err := os.ReadFile(filepath.Join(dir, File))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(w) {
			t.Errorf("%s: studies.jsonl:\n%s\nwant (in-memory groups):\n%s", tc.name, got, w)
		}
	}
}

// TestWriteTypes checks Write's construction-time checks.
func TestWriteTypes(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   func(s beam.Scope) []beam.PCollection
		want string
	}{
		{"none", func(beam.Scope) []beam.PCollection { return nil }, "no PCollection"},
		{"strings", func(s beam.Scope) []beam.PCollection {
			return []beam.PCollection{beam.Create(s, Group{}), beam.Create(s, "a")}
		}, "groups[1] is a PCollection<string>"},
	} {
		func() {
			defer func() {
				r := recover()
				if msg := fmt.Sprint(r); r == nil || !strings.Contains(msg, tc.want) {
					t.Errorf("%s: panic %v, want one containing %q", tc.name, r, tc.want)
				}
			}()
			_, s := beam.NewPipelineWithRoot()
			Write(s, WriteOptions{Dir: t.TempDir()}, tc.in(s)...)
		}()
	}
}
