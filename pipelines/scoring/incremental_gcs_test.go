package scoring

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/state"
)

// TestNightlyGCS runs two nights against an embedded fake GCS server: the
// ledger records object generations, and an object rewritten with the same
// bytes (a new generation) is scored again.
func TestNightlyGCS(t *testing.T) {
	srv := fakeGCS(t)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "n", VersioningEnabled: true})
	src := shared.MustPath(t, "data", "medical", "lgg_dicom", "series", patients[2])
	put := func(name string) {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "n", Name: "archive/" + name}, Content: b})
	}
	for _, n := range []string{"IM0010.dcm", "IM0011.dcm", "IM0012.dcm"} {
		put(n)
	}
	bundle := testBundle(t)
	opt := Options{Model: bundle, Input: "gs://n/archive", Output: "gs://n/out", State: "gs://n/state/ledger.jsonl", Heatmaps: report.HeatmapsAll}
	ctx := context.Background()
	sum, err := Run(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Scored != 3 || sum.Incremental.New != 3 {
		t.Fatalf("night 1 scored %d (%+v)", sum.Scored, *sum.Incremental)
	}
	ledger, err := state.Read(ctx, opt.State)
	if err != nil || len(ledger) != 3 || ledger[0].Generation == 0 {
		t.Fatalf("ledger %+v, %v; want 3 entries with generations", ledger, err)
	}
	put("IM0011.dcm") // same bytes, new generation
	put("IM0013.dcm")
	sum, err = Run(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	if inc := *sum.Incremental; sum.Scored != 2 || inc.New != 1 || inc.Changed != 1 || inc.Unchanged != 2 {
		t.Fatalf("night 2 scored %d (%+v), want 1 new and 1 changed", sum.Scored, inc)
	}
	o, err := srv.GetObject("n", "out/latest/"+report.ScoresFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(o.Content), "\n"); n != 4 {
		t.Errorf("latest scores on GCS: %d lines, want 4", n)
	}
	list, err := srv.ListObjectsWithOptionsPaginated("n", fakestorage.ListOptions{Prefix: "out/"})
	if err != nil {
		t.Fatal(err)
	}
	objs := list.Objects
	runs := map[string]bool{}
	for _, ob := range objs {
		if strings.Contains(ob.Name, "/.tmp-") || strings.Contains(ob.Name, "/_") {
			t.Errorf("left behind: %s", ob.Name)
		}
		if rest, ok := strings.CutPrefix(ob.Name, "out/runs/"); ok {
			runs[strings.Split(rest, "/")[0]] = true
		}
	}
	if len(runs) != 2 {
		t.Errorf("runs on GCS: %v, want 2", runs)
	}
}
