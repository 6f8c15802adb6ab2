package report

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multiad/multiad/model/bundle"
)

// TestLineFnWritesPictures checks that lineFn, which writes pictures on
// other goroutines, writes the same files as WriteImages does in turn, and
// the same lines, for flagged and unflagged results.
func TestLineFnWritesPictures(t *testing.T) {
	ctx := context.Background()
	cal := bundle.Scores{Threshold: 0.5, PixelThreshold: 0.5, PixelMin: 0, PixelMax: 1}
	async, sync := t.TempDir(), t.TempDir()
	f := &lineFn{Opt: Options{Dir: async, Heatmaps: HeatmapsAnomalous, Masks: true, RawMaps: true, Calibration: cal}}
	f.StartBundle(ctx, nil)
	var shards []string
	emit := func(s string) { shards = append(shards, s) }
	const n = 9
	for i := range n {
		r := testResult(fmt.Sprintf("img%d.png", i), 24+i, 0.3+0.1*float64(i))
		if err := f.ProcessElement(ctx, r, emit); err != nil {
			t.Fatal(err)
		}
		opt := f.Opt
		opt.Dir = sync
		if _, err := WriteImages(ctx, r, opt); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.FinishBundle(ctx, emit); err != nil {
		t.Fatal(err)
	}
	if len(shards) != 1 {
		t.Fatalf("%d shards, want 1", len(shards))
	}
	var files int
	err := filepath.WalkDir(sync, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(sync, p)
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join(async, rel))
		if err != nil {
			return fmt.Errorf("lineFn did not write %s: %w", rel, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s differs from WriteImages'", rel)
		}
		files++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// img3..img8 are flagged: a heatmap, a mask and a raw map each.
	if files != 3*6 {
		t.Errorf("%d pictures, want %d", files, 3*6)
	}
	lines, flagged := 0, 0
	err = scoresShards().Merge(ctx, shards, func(l *Line) error {
		lines++
		if strings.Contains(l.JSON, `"heatmap":"heatmaps/`) {
			flagged++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if lines != n || flagged != 6 {
		t.Errorf("%d lines, %d naming a heatmap; want %d and 6", lines, flagged, n)
	}
}

// TestLineFnWriteFails checks that a picture that cannot be written fails
// the bundle: at FinishBundle, or at the next element once it has failed.
func TestLineFnWriteFails(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// heatmaps/ cannot be created: a file has its name.
	if err := os.WriteFile(filepath.Join(dir, "heatmaps"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f := &lineFn{Opt: Options{Dir: dir, Heatmaps: HeatmapsAll}}
	f.StartBundle(ctx, nil)
	emit := func(string) {}
	if err := f.ProcessElement(ctx, testResult("a.png", 16, 0.9), emit); err != nil {
		t.Fatalf("first element: %v (the write runs on its own goroutine)", err)
	}
	f.writes.g.Wait() //nolint:errcheck // the error is checked below, as the bundle sees it
	err := f.ProcessElement(ctx, testResult("b.png", 16, 0.9), emit)
	if err == nil || !strings.Contains(err.Error(), "writing heatmaps/a_") {
		t.Errorf("element after a failed write: %v, want the write's error", err)
	}
	if err := f.FinishBundle(ctx, emit); err == nil || !strings.Contains(err.Error(), "writing heatmaps/a_") {
		t.Errorf("FinishBundle: %v, want the write's error", err)
	}
}
