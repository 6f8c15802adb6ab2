package scoring

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/inference/inferencetest"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/state"
	"github.com/multiad/multiad/transforms/study"
)

// patients are the lgg_dicom series, one study each.
var patients = []string{"TCGA_FG_6691_20020405", "TCGA_FG_A4MU_20030903", "TCGA_HT_7473_19970826"}

// copySlices copies slices [from, to) of a patient's series into
// dir/<patient>/ and returns the copies.
func copySlices(t *testing.T, dir, patient string, from, to int) []string {
	t.Helper()
	src := shared.MustPath(t, "data", "medical", "lgg_dicom", "series", patient)
	var out []string
	for i := from; i < to; i++ {
		name := fmt.Sprintf("IM%04d.dcm", i)
		dst := filepath.Join(dir, patient, name)
		copyFile(t, filepath.Join(src, name), dst)
		out = append(out, dst)
	}
	return out
}

// nightState is what a night left behind.
type nightState struct {
	ledger        []state.Entry
	latest        []scoreLine
	latestStudies []study.Record
	latestSum     map[string]any
	runs          []string
}

func readNight(t *testing.T, out, ledger string) nightState {
	t.Helper()
	var n nightState
	var err error
	if n.ledger, err = state.Read(context.Background(), ledger); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, LatestDir, report.ScoresFile)); err == nil {
		n.latest = readJSONL[scoreLine](t, filepath.Join(out, LatestDir, report.ScoresFile))
		n.latestStudies = readJSONL[study.Record](t, filepath.Join(out, LatestDir, study.File))
		n.latestSum = readSummary(t, filepath.Join(out, LatestDir, report.SummaryFile))
	}
	ents, _ := os.ReadDir(filepath.Join(out, RunsDir))
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			n.runs = append(n.runs, e.Name())
		}
	}
	return n
}

// uris returns the sorted URIs of ledger entries and checks for duplicates.
func ledgerURIs(t *testing.T, es []state.Entry) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for _, e := range es {
		if seen[e.URI] {
			t.Errorf("ledger holds %s twice", e.URI)
		}
		seen[e.URI] = true
		out = append(out, e.URI)
	}
	sort.Strings(out)
	return out
}

func latestURIs(t *testing.T, ls []scoreLine) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for _, l := range ls {
		if seen[l.URI] {
			t.Errorf("latest scores hold %s twice", l.URI)
		}
		seen[l.URI] = true
		out = append(out, l.URI)
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// TestNightly runs three nights of an incremental run over DICOM slices:
// (1) scores everything; (2) scores exactly 2 new files and 1 changed one;
// (3) crashes before committing, and its rerun scores the same 3 new files
// again, with nothing lost or duplicated in the ledger and latest/. A
// fourth night crashes after latest/ was updated but before the ledger,
// and a model change makes the fifth rescore everything.
func TestNightly(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	data := filepath.Join(root, "archive")
	out := filepath.Join(root, "out")
	ledger := filepath.Join(root, "state", "ledger.jsonl")
	bundle := testBundle(t)
	opt := Options{Model: bundle, Input: data, Output: out, State: ledger, Heatmaps: report.HeatmapsAll, HashUIDs: true, UIDSalt: "s3cret"}

	night := func(name string, o Options) (*Summary, time.Duration) {
		t.Helper()
		start := time.Now()
		sum, err := Run(ctx, o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		d := time.Since(start)
		t.Logf("%s: %d listed, %d scored in %v (%+v)", name, sum.Incremental.Listed, sum.Scored, d.Round(time.Millisecond), *sum.Incremental)
		return sum, d
	}

	// Night 1: everything.
	all := append(copySlices(t, data, patients[0], 20, 24), copySlices(t, data, patients[1], 15, 19)...)
	sum, full := night("night 1", opt)
	if sum.Scored != 8 || sum.Incremental.New != 8 || sum.Incremental.Unchanged != 0 {
		t.Fatalf("night 1 scored %d (%+v), want all 8 new", sum.Scored, *sum.Incremental)
	}
	n1 := readNight(t, out, ledger)
	if !equal(ledgerURIs(t, n1.ledger), sorted(all)) || !equal(latestURIs(t, n1.latest), sorted(all)) || len(n1.runs) != 1 {
		t.Fatalf("night 1: ledger %d, latest %d, runs %v", len(n1.ledger), len(n1.latest), n1.runs)
	}

	// Night 2: two new slices and one changed file.
	added := copySlices(t, data, patients[0], 24, 26)
	changed := all[5]
	b, err := os.ReadFile(filepath.Join(shared.MustPath(t, "data", "medical", "lgg_dicom", "series", patients[1]), "IM0025.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, changed, b)
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(changed, later, later); err != nil {
		t.Fatal(err)
	}
	all = append(all, added...)
	sum, incr := night("night 2", opt)
	inc := *sum.Incremental
	if sum.Scored != 3 || inc.New != 2 || inc.Changed != 1 || inc.Unchanged != 7 || inc.Listed != 10 {
		t.Fatalf("night 2 scored %d (%+v), want 2 new and 1 changed of 10", sum.Scored, inc)
	}
	n2 := readNight(t, out, ledger)
	run2 := readJSONL[scoreLine](t, filepath.Join(out, RunsDir, sum.Incremental.Run, report.ScoresFile))
	if got, want := latestURIs(t, run2), sorted(append([]string{changed}, added...)); !equal(got, want) {
		t.Errorf("night 2 scored %v, want %v", got, want)
	}
	if !equal(ledgerURIs(t, n2.ledger), sorted(all)) || !equal(latestURIs(t, n2.latest), sorted(all)) || len(n2.runs) != 2 {
		t.Fatalf("night 2: ledger %d, latest %d, runs %v", len(n2.ledger), len(n2.latest), n2.runs)
	}
	for _, e := range n2.ledger {
		if (e.URI == changed || e.URI == added[0] || e.URI == added[1]) != (e.Run == sum.Incremental.Run) {
			t.Errorf("ledger entry %s from run %s", e.URI, e.Run)
		}
	}
	// latest/ studies cover both nights: the first patient's study has 6
	// slices; UIDs are hashed.
	studies := map[int]int{}
	for _, s := range n2.latestStudies {
		if s.Level == study.LevelStudy {
			studies[s.Slices]++
		}
		if strings.Count(s.Study, ".") > 0 || len(s.Study) != 32 {
			t.Errorf("study identifier %q is not a salted hash", s.Study)
		}
	}
	if studies[6] != 1 || studies[4] != 1 || len(studies) != 2 {
		t.Errorf("latest studies by slice count %v, want one of 6 and one of 4", studies)
	}
	// With --hash-uids no raw UID is written anywhere (pydicom reads them).
	var raw []string
	for _, u := range dicomUIDs(t, all) {
		raw = append(raw, u[0], u[1])
	}
	if hits := grepTree(t, out, raw); len(hits) > 0 {
		t.Errorf("raw UIDs in the outputs with --hash-uids:\n%s", strings.Join(hits, "\n"))
	}
	for _, l := range n2.latest {
		if l.Heatmap == "" || !strings.HasPrefix(l.Heatmap, "../runs/") {
			t.Errorf("latest heatmap %q of %s", l.Heatmap, l.URI)
		} else if _, err := os.Stat(filepath.Join(out, LatestDir, l.Heatmap)); err != nil {
			t.Errorf("latest heatmap: %v", err)
		}
	}

	// Night 3: three new files, a crash before the commit, then the rerun.
	added3 := copySlices(t, data, patients[2], 10, 13)
	all = append(all, added3...)
	setCrashAt(t, crashBeforeCommit)
	_, err = Run(ctx, opt)
	setCrashAt(t, "")
	if !errors.Is(err, errCrash) {
		t.Fatalf("night 3 with a crash: %v", err)
	}
	n3 := readNight(t, out, ledger)
	if len(n3.ledger) != len(n2.ledger) || len(n3.latest) != len(n2.latest) || len(n3.runs) != 2 {
		t.Fatalf("after the crash: ledger %d, latest %d, runs %v; want unchanged", len(n3.ledger), len(n3.latest), n3.runs)
	}
	sum, _ = night("night 3 rerun", opt)
	if sum.Scored != 3 || sum.Incremental.New != 3 || sum.Incremental.Unchanged != 10 {
		t.Fatalf("night 3 rerun scored %d (%+v), want the 3 new", sum.Scored, *sum.Incremental)
	}
	n3 = readNight(t, out, ledger)
	if !equal(ledgerURIs(t, n3.ledger), sorted(all)) || !equal(latestURIs(t, n3.latest), sorted(all)) || len(n3.runs) != 3 {
		t.Fatalf("night 3: ledger %d, latest %d (want %d), runs %v", len(n3.ledger), len(n3.latest), len(all), n3.runs)
	}
	if got := n3.latestSum["scored"]; got != float64(len(all)) {
		t.Errorf("latest summary scored %v, want %d", got, len(all))
	}

	// Night 4: a crash after latest/ was updated, before the ledger; the
	// rerun scores the file again and latest/ holds it once.
	added4 := copySlices(t, data, patients[2], 13, 14)
	all = append(all, added4...)
	setCrashAt(t, crashBeforeLedger)
	_, err = Run(ctx, opt)
	setCrashAt(t, "")
	if !errors.Is(err, errCrash) {
		t.Fatalf("night 4 with a crash: %v", err)
	}
	sum, _ = night("night 4 rerun", opt)
	n4 := readNight(t, out, ledger)
	if sum.Scored != 1 || !equal(ledgerURIs(t, n4.ledger), sorted(all)) || !equal(latestURIs(t, n4.latest), sorted(all)) {
		t.Fatalf("night 4: scored %d, ledger %d, latest %d (want %d)", sum.Scored, len(n4.ledger), len(n4.latest), len(all))
	}

	// Night 5: a new model rescores everything.
	other := filepath.Join(root, "bundle2")
	if err := inferencetest.WriteBundle(other, 64); err != nil {
		t.Fatal(err)
	}
	o5 := opt
	o5.Model = other
	sum, _ = night("night 5 (new model)", o5)
	if sum.Scored != len(all) || sum.Incremental.ModelChanged != len(all) {
		t.Errorf("night 5 scored %d (%+v), want all %d for the new model", sum.Scored, *sum.Incremental, len(all))
	}
	t.Logf("timing: full night of 8 files %v, incremental night of 3 changed among 10 %v", full.Round(time.Millisecond), incr.Round(time.Millisecond))
}

// TestNightlyTiming measures an incremental night against a full run over
// all of lgg_dicom (116 slices), with the bundle named by
// $MULTIAD_TEST_BUNDLE; skipped unless $MULTIAD_NIGHTLY_BENCH is set.
func TestNightlyTiming(t *testing.T) {
	if os.Getenv("MULTIAD_NIGHTLY_BENCH") == "" {
		t.Skip("MULTIAD_NIGHTLY_BENCH not set")
	}
	bundle := os.Getenv("MULTIAD_TEST_BUNDLE")
	if bundle == "" {
		bundle = testBundle(t)
	}
	ctx := context.Background()
	root := t.TempDir()
	data := filepath.Join(root, "archive")
	counts := []int{48, 36, 32}
	var last []string
	for i, p := range patients {
		n := counts[i]
		if i == 0 {
			n -= 3 // held back for the second night
		}
		copySlices(t, data, p, 0, n)
	}
	timed := func(name string, o Options) *Summary {
		start := time.Now()
		sum, err := Run(ctx, o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %d images scored in %v", name, sum.Scored, time.Since(start).Round(time.Millisecond))
		return sum
	}
	// The first run loads the model into the process's cache; the others
	// reuse it, as the nights of a long-lived worker would.
	full := Options{Model: bundle, Input: data, Output: filepath.Join(root, "full"), Heatmaps: report.HeatmapsAnomalous, Device: "cpu"}
	timed("warm-up full run (no ledger, 113 files)", full)
	opt := full
	opt.Output, opt.State = filepath.Join(root, "out"), filepath.Join(root, "ledger.jsonl")
	timed("night 1 (incremental, empty ledger, 113 files)", opt)
	last = copySlices(t, data, patients[0], counts[0]-3, counts[0])
	if sum := timed("night 2 (incremental, 3 new of 116)", opt); sum.Scored != len(last) {
		t.Errorf("night 2 scored %d, want %d", sum.Scored, len(last))
	}
	timed("night 3 (incremental, nothing new of 116)", opt)
	timed("full run (no ledger, 116 files)", full)
}
