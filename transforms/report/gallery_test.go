package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"golang.org/x/image/draw"

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

// TestGalleryShrink: an image larger than the gallery's side is shrunk
// before its pictures are drawn. The pictures are the size the old
// draw-then-scale gave, and close to it (golang.org/x/image/draw's
// bilinear scaling of the full-size pictures, an independent resampler),
// the entry keeps the original size, a one-pixel defect keeps its outline,
// and galleryFn holds only thumbnail-sized results.
func TestGalleryShrink(t *testing.T) {
	const rows, cols = 500, 1000
	cal := bundle.Scores{Threshold: 0.5, PixelThreshold: 0.3, PixelMin: 0, PixelMax: 0.8}
	r := testResult("big.png", 32, 0.9)
	r.Rows, r.Cols = rows, cols
	r.View = make([]uint8, 3*rows*cols)
	for i := range rows * cols {
		y, x := i/cols, i%cols
		r.View[3*i], r.View[3*i+1], r.View[3*i+2] = uint8(x/4), uint8(y/2), uint8((x+y)%256)
	}
	r.Truth = make([]uint8, rows*cols)
	for x := 100; x < 300; x++ {
		r.Truth[250*cols+x] = 1 // a one-pixel scratch, 2.5× thinner than a thumbnail pixel
	}
	g, err := NewGalleryEntry(r, cal)
	if err != nil {
		t.Fatal(err)
	}
	if g.Rows != rows || g.Cols != cols || !g.Truth {
		t.Errorf("entry %d×%d, truth %v; want the original %d×%d with truth", g.Cols, g.Rows, g.Truth, cols, rows)
	}
	scaled := func(img *image.RGBA) *image.RGBA {
		out := image.NewRGBA(image.Rect(0, 0, 400, 200))
		draw.BiLinear.Scale(out, out.Bounds(), img, img.Bounds(), draw.Src, nil)
		return out
	}
	heat, err := Heatmap(r, cal)
	if err != nil {
		t.Fatal(err)
	}
	pic, err := Picture(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		png       []byte
		want      *image.RGBA
		mean, max float64
	}{{"picture", g.Image, scaled(pic), 0.5, 2}, {"heatmap", g.PNG, scaled(heat), 0.5, 4}} {
		img, err := png.Decode(bytes.NewReader(c.png))
		if err != nil {
			t.Fatal(err)
		}
		if b := img.Bounds(); b.Dx() != 400 || b.Dy() != 200 {
			t.Fatalf("%s is %d×%d, want 400×200", c.name, b.Dx(), b.Dy())
		}
		var sum, worst float64
		var red int
		for y := range 200 {
			for x := range 400 {
				got := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
				if got == outlineColor {
					red++
					continue
				}
				w := c.want.RGBAAt(x, y)
				for _, d := range []float64{float64(got.R) - float64(w.R), float64(got.G) - float64(w.G), float64(got.B) - float64(w.B)} {
					sum += math.Abs(d)
					worst = math.Max(worst, math.Abs(d))
				}
			}
		}
		mean := sum / float64(3*(400*200-red))
		t.Logf("%s: mean |difference| %.3f, max %.0f levels against draw-then-scale; %d outline pixels", c.name, mean, worst, red)
		if mean > c.mean || worst > c.max {
			t.Errorf("%s: mean |difference| %.3f (at most %.1f), max %.0f (at most %.0f) against draw-then-scale", c.name, mean, c.mean, worst, c.max)
		}
		if want := c.name == "heatmap"; (red > 0) != want || want && red < 80 {
			t.Errorf("%s: %d outline pixels (the scratch is 80 thumbnail pixels long)", c.name, red)
		}
	}
	f := &galleryFn{K: 2, Calibration: cal}
	for i := range 3 {
		r.Score = 0.9 + float64(i)/100
		if err := f.ProcessElement(context.Background(), r, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range f.best {
		if n := len(c.small.View) + len(c.small.Truth); n > 4*gallerySide*gallerySide {
			t.Errorf("galleryFn holds %d bytes of view and truth for one result, more than a thumbnail's", n)
		}
	}
}

// BenchmarkShrink times shrinking a kept result the size of the largest
// magnetic tile (632×312 gray, with a mask), the cost of each admission
// to a bundle's gallery.
func BenchmarkShrink(b *testing.B) {
	r := testResult("tile.png", 128, 0.9)
	r.Rows, r.Cols = 312, 632
	r.View, r.Truth = make([]uint8, 312*632), make([]uint8, 312*632)
	for i := range r.View {
		r.View[i], r.Truth[i] = uint8(i), uint8(i/632%50/49)
	}
	for b.Loop() {
		shrink(r, gallerySide)
	}
}
