package report

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"golang.org/x/sync/errgroup"

	"github.com/multiad/multiad/internal/gobcoder"
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

// galleryWire is a galleryItem as it travels between steps: gob, with the
// entry's Record as JSON. Gob would decode a Record's pointer to 0 (slice
// 0, label 0) as nil; JSON would spell the pictures in base64, which cost
// about 7 ms per item and pass on the way to the final step.
type galleryWire struct {
	Score      float64
	Key        string
	Record     []byte // JSON
	PNG, Image []byte
	Truth      bool
	Rows, Cols int
}

func encodeGalleryItem(v galleryItem) ([]byte, error) {
	rec, err := json.Marshal(v.Entry.Record)
	if err != nil {
		return nil, fmt.Errorf("report: gallery record: %w", err)
	}
	e := v.Entry
	return gobcoder.Encode(galleryWire{Score: v.Score, Key: v.Key, Record: rec, PNG: e.PNG, Image: e.Image, Truth: e.Truth, Rows: e.Rows, Cols: e.Cols})
}

func decodeGalleryItem(b []byte) (galleryItem, error) {
	w, err := gobcoder.Decode[galleryWire](b)
	if err != nil {
		return galleryItem{}, err
	}
	v := galleryItem{Score: w.Score, Key: w.Key, Entry: GalleryEntry{PNG: w.PNG, Image: w.Image, Truth: w.Truth, Rows: w.Rows, Cols: w.Cols}}
	if err := json.Unmarshal(w.Record, &v.Entry.Record); err != nil {
		return galleryItem{}, fmt.Errorf("report: gallery record: %w", err)
	}
	return v, nil
}

// lessGallery orders gallery items by score, ties by descending sort key,
// so that of two equal scores the earlier input ranks higher.
func lessGallery(a, b galleryItem) bool {
	if a.Score != b.Score {
		return a.Score < b.Score
	}
	return a.Key > b.Key
}

// galleryFn keeps the K highest results of its bundle (lessGallery),
// each shrunk to the gallery's size as it is kept, and when the bundle
// ends renders them as gallery entries on the machine's cores and emits
// them. What the bundle holds is then at most K thumbnail-sized results,
// and what leaves it K sets of thumbnails: the same memory for
// 4000-pixel images as for 400-pixel ones, whatever the bundle's size.
type galleryFn struct {
	K           int
	Calibration bundle.Scores

	best []candidate // ascending by lessGallery, at most K
}

// candidate is a kept result, shrunk to the gallery's size, with its
// gallery item, whose entry has no pictures yet.
type candidate struct {
	item  galleryItem
	small score.Result
}

func (f *galleryFn) ProcessElement(_ context.Context, r score.Result, _ func(galleryItem)) error {
	item := galleryItem{Score: r.Score, Key: sortKey(r.Item.URI, r.Item.Index)}
	if len(f.best) == f.K && !lessGallery(f.best[0].item, item) {
		return nil
	}
	c := candidate{item: item}
	c.item.Entry, c.small = newGalleryEntry(r)
	i := sort.Search(len(f.best), func(i int) bool { return lessGallery(c.item, f.best[i].item) })
	f.best = slices.Insert(f.best, i, c)
	if len(f.best) > f.K {
		f.best = slices.Delete(f.best, 0, 1) // clears the freed slot: the lowest's maps go
	}
	return nil
}

func (f *galleryFn) FinishBundle(_ context.Context, emit func(galleryItem)) error {
	var g errgroup.Group
	g.SetLimit(pictureGoroutines())
	for i := range f.best {
		c := &f.best[i]
		g.Go(func() error {
			if err := c.item.Entry.draw(c.small, f.Calibration); err != nil {
				return fmt.Errorf("report: gallery entry of %s: %w", c.small.Item.URI, err)
			}
			return nil
		})
	}
	err := g.Wait()
	if err == nil {
		for _, c := range f.best {
			emit(c.item)
		}
	}
	clear(f.best)
	f.best = f.best[:0]
	return err
}
