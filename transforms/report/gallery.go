package report

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sort"

	"golang.org/x/sync/errgroup"

	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/transforms/score"
)

// galleryItem is a candidate for report.html's gallery: a result's score
// and sort key with its rendered entry. The gallery's top-K combine moves
// these, a few thumbnails, instead of the results' maps and full-size
// views.
type galleryItem struct {
	Score float64
	Key   string // sortKey of the result's URI and index
	Entry GalleryEntry
}

// galleryItem is coded as JSON, as the digest writes its entries: gob
// would decode a Record's pointer to 0 (slice 0, label 0) as nil.
func encodeGalleryItem(v galleryItem) ([]byte, error) { return json.Marshal(v) }

func decodeGalleryItem(b []byte) (galleryItem, error) {
	var v galleryItem
	err := json.Unmarshal(b, &v)
	return v, err
}

// lessScore orders results by score, ties by descending sort key, so
// that of two equal scores the earlier input ranks higher.
func lessScore(a, b score.Result) bool {
	if a.Score != b.Score {
		return a.Score < b.Score
	}
	return sortKey(a.Item.URI, a.Item.Index) > sortKey(b.Item.URI, b.Item.Index)
}

// lessGallery is lessScore on gallery items.
func lessGallery(a, b galleryItem) bool {
	if a.Score != b.Score {
		return a.Score < b.Score
	}
	return a.Key > b.Key
}

// galleryFn keeps the K highest results of its bundle (lessScore) and,
// when the bundle ends, renders them as gallery entries on all cores and
// emits them. What leaves the bundle is then K sets of thumbnails, not K
// full-size results: the run's end holds megabytes less per entry for
// large images, and the rendering no longer waits for the single final
// step. A bundle renders at most K entries, whatever its size.
type galleryFn struct {
	K           int
	Calibration bundle.Scores

	best []score.Result // ascending by lessScore, at most K
}

func (f *galleryFn) ProcessElement(_ context.Context, r score.Result, _ func(galleryItem)) error {
	if len(f.best) == f.K && !lessScore(f.best[0], r) {
		return nil
	}
	i := sort.Search(len(f.best), func(i int) bool { return lessScore(r, f.best[i]) })
	f.best = append(f.best, score.Result{})
	copy(f.best[i+1:], f.best[i:])
	f.best[i] = r
	if len(f.best) > f.K {
		copy(f.best, f.best[1:])
		f.best[len(f.best)-1] = score.Result{} // drop the lowest's maps
		f.best = f.best[:len(f.best)-1]
	}
	return nil
}

func (f *galleryFn) FinishBundle(ctx context.Context, emit func(galleryItem)) error {
	items := make([]galleryItem, len(f.best))
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, r := range f.best {
		g.Go(func() error {
			e, err := NewGalleryEntry(r, f.Calibration)
			if err != nil {
				return fmt.Errorf("report: gallery entry of %s: %w", r.Item.URI, err)
			}
			items[i] = galleryItem{Score: r.Score, Key: sortKey(r.Item.URI, r.Item.Index), Entry: e}
			return nil
		})
	}
	err := g.Wait()
	clear(f.best)
	f.best = f.best[:0]
	if err != nil {
		return err
	}
	for _, it := range items {
		emit(it)
	}
	return nil
}
