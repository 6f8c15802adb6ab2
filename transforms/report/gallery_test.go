package report

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/transforms/evaluate"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/score"
)

// galleryResults returns n results with ties among the highest scores,
// labels 0 and 1, slice 0 and images of several sizes.
func galleryResults(n int) []score.Result {
	rng := rand.New(rand.NewPCG(7, 11))
	var rs []score.Result
	for i := 0; i < n; i++ {
		sc := rng.Float64()
		if i%7 == 3 {
			sc = 0.99 // ties, broken by URI
		}
		r := testResult(fmt.Sprintf("img%03d.dcm", (i*37)%n), 16+i%3*8, sc)
		r.Item.Label = i % 2
		r.Item.Index, r.Item.IndexKind = i%4, "slice"
		r.Rows, r.Cols = 20+i%5*10, 30
		rs = append(rs, r)
	}
	return rs
}

// wantGallery is the gallery by definition: every result sorted by
// descending score (ties: the earlier URI and index first), the first k
// rendered.
func wantGallery(t *testing.T, rs []score.Result, k int, cal bundle.Scores) []GalleryEntry {
	t.Helper()
	rank := func(r score.Result) galleryItem {
		return galleryItem{Score: r.Score, Key: sortKey(r.Item.URI, r.Item.Index)}
	}
	sorted := slices.Clone(rs)
	slices.SortStableFunc(sorted, func(a, b score.Result) int { return descending(rank(a), rank(b)) })
	var out []GalleryEntry
	for _, r := range sorted[:min(k, len(sorted))] {
		g, err := NewGalleryEntry(r, cal)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, g)
	}
	return out
}

// descending compares gallery items for a sort, highest rank first.
func descending(a, b galleryItem) int {
	switch {
	case lessGallery(b, a):
		return -1
	case lessGallery(a, b):
		return 1
	}
	return 0
}

func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(g) != string(w) {
		t.Errorf("%s differs from the top entries rendered one by one:\n got %.400s\nwant %.400s", what, g, w)
	}
}

// TestGalleryBundles runs galleryFn over the results split into bundles
// of several sizes and checks that the best of what the bundles emit is
// the gallery, and that no bundle renders more than K entries.
func TestGalleryBundles(t *testing.T) {
	ctx := context.Background()
	cal := bundle.Scores{Threshold: 0.5}
	rs := galleryResults(60)
	for _, k := range []int{1, 5, 12, 80} {
		want := wantGallery(t, rs, k, cal)
		for _, size := range []int{1, 7, 60} {
			f := &galleryFn{K: k, Calibration: cal}
			var items []galleryItem
			for lo := 0; lo < len(rs); lo += size {
				var bundle []galleryItem
				for _, r := range rs[lo:min(lo+size, len(rs))] {
					if err := f.ProcessElement(ctx, r, nil); err != nil {
						t.Fatal(err)
					}
				}
				if err := f.FinishBundle(ctx, func(it galleryItem) { bundle = append(bundle, it) }); err != nil {
					t.Fatal(err)
				}
				if len(bundle) > k {
					t.Errorf("k %d, bundles of %d: a bundle emitted %d entries", k, size, len(bundle))
				}
				items = append(items, bundle...)
			}
			// Through the coder, as the combine sees them.
			for i, it := range items {
				b, err := encodeGalleryItem(it)
				if err != nil {
					t.Fatal(err)
				}
				if items[i], err = decodeGalleryItem(b); err != nil {
					t.Fatal(err)
				}
			}
			slices.SortStableFunc(items, descending)
			var got []GalleryEntry
			for _, it := range items[:min(k, len(items))] {
				got = append(got, it.Entry)
			}
			sameJSON(t, fmt.Sprintf("k %d, bundles of %d", k, size), got, want)
		}
	}
}

// TestWriteGallery checks the gallery that Write hands to Finish.
func TestWriteGallery(t *testing.T) {
	dir := t.TempDir()
	cal := bundle.Scores{Threshold: 0.5}
	rs := galleryResults(40)
	p, s := beam.NewPipelineWithRoot()
	Write(s, beam.CreateList(s, rs), beam.CreateList(s, []read.Failure{}), beam.Create(s, len(rs)),
		beam.CreateList(s, []evaluate.Report{}), Options{Dir: dir, Heatmaps: HeatmapsNone, Calibration: cal, Gallery: 5})
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, digestFile))
	if err != nil {
		t.Fatal(err)
	}
	var d Digest
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "the digest's gallery", d.Gallery, wantGallery(t, rs, 5, cal))
}
