package state

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/transforms/read"
)

func TestMain(m *testing.M) { ptest.Main(m) }

func TestCompare(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 1, 2, 3, 456789000, time.UTC)
	base := EntryOf("gs://b/x.dcm", storage.Info{Size: 10, ModTime: t0, Generation: 7}, "m1", "r1")
	same := base
	same.Run = "r2"
	// The same instant written in another zone is the same time.
	same.ModTime = t0.In(time.FixedZone("X", 3600)).Format(time.RFC3339Nano)
	for _, c := range []struct {
		name string
		old  *Entry
		cur  func(Entry) Entry
		want string
	}{
		{"new", nil, func(e Entry) Entry { return e }, New},
		{"unchanged", &same, func(e Entry) Entry { return e }, Unchanged},
		{"size", &base, func(e Entry) Entry { e.Size++; return e }, Changed},
		{"generation", &base, func(e Entry) Entry { e.Generation++; return e }, Changed},
		{"mtime", &base, func(e Entry) Entry { e.ModTime = t0.Add(time.Nanosecond).Format(time.RFC3339Nano); return e }, Changed},
		{"model", &base, func(e Entry) Entry { e.Model = "m2"; return e }, ModelChanged},
		{"changed and model", &base, func(e Entry) Entry { e.Model, e.Size = "m2", 1; return e }, Changed},
	} {
		if got := Compare(c.old, c.cur(base)); got != c.want {
			t.Errorf("%s: Compare = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestLedgerRoundTripAndMerge(t *testing.T) {
	ctx := context.Background()
	uri := filepath.Join(t.TempDir(), "state", "ledger.jsonl")
	if got, err := Read(ctx, uri); err != nil || got != nil {
		t.Fatalf("missing ledger: %v, %v", got, err)
	}
	a := []Entry{{URI: "b", Size: 2, ModTime: "t", Model: "m", Run: "r1"}, {URI: "a", Size: 1, ModTime: "t", Model: "m", Run: "r1"}}
	if n, err := Merge(ctx, uri, a); err != nil || n != 2 {
		t.Fatalf("Merge: %d, %v", n, err)
	}
	b := []Entry{{URI: "c", Size: 3, ModTime: "t", Model: "m", Run: "r2"}, {URI: "a", Size: 9, ModTime: "u", Model: "m", Run: "r2"}}
	if n, err := Merge(ctx, uri, b); err != nil || n != 3 {
		t.Fatalf("Merge: %d, %v", n, err)
	}
	got, err := Read(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{b[1], a[0], b[0]}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ledger %+v, want %+v", got, want)
	}
	for _, bad := range []string{"{", `{"size":1}`, "[1]\n"} {
		if _, err := Parse("x", []byte("\n"+bad+"\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("Parse(%q): %v, want an error naming line 2", bad, err)
		}
	}
	if err := Validate("gs://b/state/"); err == nil {
		t.Error("a folder was accepted as ledger")
	}
}

// TestSelect runs Select and WriteEntries on Prism: with a ledger holding
// two of four files (one since changed), it selects the other three, and
// the written entries leave out the one that failed.
func TestSelect(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var files []read.File
	for _, n := range []string{"a", "b", "c", "d"} {
		p := filepath.Join(dir, n+".png")
		if err := os.WriteFile(p, []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, read.File{URI: p, Items: []read.Item{{URI: p, Index: -1, Label: -1, MaskIndex: -1}}})
	}
	files = append(files, read.File{URI: "m.csv:3", Error: "bad row", Items: []read.Item{{URI: "m.csv:3", Index: -1}}})
	ledger := filepath.Join(dir, "ledger.jsonl")
	var old []Entry
	for _, f := range files[:2] {
		info, err := storage.Stat(ctx, f.URI)
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, EntryOf(f.URI, info, "m1", "r0"))
	}
	if _, err := Merge(ctx, ledger, old); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[1].URI, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	stage := filepath.Join(dir, "stage")
	p, s := beam.NewPipelineWithRoot()
	sel, entries, tally := Select(s, beam.CreateList(s, files), Options{Ledger: ledger, Model: "m1", Run: "r1"})
	failures := beam.CreateList(s, []read.Failure{{URI: files[2].URI, Index: -1, Error: "x"}})
	WriteEntries(s, entries, failures, tally, stage)
	passert.Equals(s, beam.ParDo(s, fileURI, sel), files[1].URI, files[2].URI, files[3].URI, "m.csv:3")
	ptest.RunAndValidate(t, p)

	b, err := os.ReadFile(filepath.Join(stage, EntriesFile))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(EntriesFile, b)
	if err != nil {
		t.Fatal(err)
	}
	var gotURIs []string
	for _, e := range got {
		gotURIs = append(gotURIs, e.URI)
		if e.Model != "m1" || e.Run != "r1" || e.Size == 0 {
			t.Errorf("entry %+v", e)
		}
	}
	if want := []string{files[1].URI, files[3].URI}; !reflect.DeepEqual(gotURIs, want) {
		t.Errorf("entries for %v, want %v (c failed, a unchanged)", gotURIs, want)
	}
	tb, err := os.ReadFile(filepath.Join(stage, TallyFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"listed":5,"new":3,"changed":1,"model_changed":0,"unchanged":1}`; string(tb) != want {
		t.Errorf("tally %s, want %s", tb, want)
	}
}

func fileURI(f read.File) string { return f.URI }

func init() { register.Function1x1[read.File, string](fileURI) }

// FuzzParse: any ledger text parses or fails with an error; what parses
// formats and parses back to the same entries.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"uri":"gs://b/a.dcm","size":10,"mtime":"2026-11-29T01:02:03.456Z","generation":7,"model_sha256":"ab","run":"r"}` + "\n"))
	f.Add([]byte("\n\n{\"uri\":\"x\"}\n{"))
	f.Add([]byte(`{"uri":"","size":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		again, err := Parse("fuzz", Format(es))
		if err != nil || len(again) != len(es) {
			t.Fatalf("round trip: %d entries, then %d (%v)", len(es), len(again), err)
		}
	})
}

// TestSelectSplitFile: a file listed as two runs of manifest rows (rows of
// another file between them) is counted, selected and entered once, with
// the items of both runs.
func TestSelectSplitFile(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.nii.gz"), filepath.Join(dir, "b.png")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	item := func(u string, i int) read.Item { return read.Item{URI: u, Index: i, Label: -1, MaskIndex: -1} }
	files := []read.File{
		{URI: a, Items: []read.Item{item(a, 0)}},
		{URI: b, Items: []read.Item{item(b, -1)}},
		{URI: a, Items: []read.Item{item(a, 1), item(a, 2)}},
	}
	stage := filepath.Join(dir, "stage")
	p, s := beam.NewPipelineWithRoot()
	sel, entries, tally := Select(s, beam.CreateList(s, files), Options{Ledger: filepath.Join(dir, "ledger.jsonl"), Model: "m1", Run: "r1"})
	WriteEntries(s, entries, beam.CreateList(s, []read.Failure{}), tally, stage)
	passert.Equals(s, beam.ParDo(s, fileItems, sel), a+" 3", b+" 1")
	ptest.RunAndValidate(t, p)
	tb, err := os.ReadFile(filepath.Join(stage, TallyFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"listed":2,"new":2,"changed":0,"model_changed":0,"unchanged":0}`; string(tb) != want {
		t.Errorf("tally %s, want %s", tb, want)
	}
	eb, err := os.ReadFile(filepath.Join(stage, EntriesFile))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(EntriesFile, eb)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Errorf("%d ledger entries, want 2 (a once, b): %+v", len(got), got)
	}
}

func fileItems(f read.File) string { return fmt.Sprintf("%s %d", f.URI, len(f.Items)) }

func init() { register.Function1x1[read.File, string](fileItems) }
