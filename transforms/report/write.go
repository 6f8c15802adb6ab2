package report

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"reflect"
	"runtime"
	"sort"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/top"

	"github.com/multiad/multiad/internal/shard"
	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/transforms/evaluate"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/score"
)

// Options configure Write.
type Options struct {
	// Dir is the (staging) folder the outputs are written to.
	Dir string
	// Heatmaps is none, anomalous or all.
	Heatmaps string
	// IncludePHI writes DICOM patient identity and PHI manifest columns.
	IncludePHI bool
	// Calibration is the bundle's calibration: heatmap colours show the
	// normalised pixel score (0.5 at the pixel threshold) and predicted
	// masks are the map above the pixel threshold. Without a pixel range
	// (PixelMax <= PixelMin) each map's own range is used.
	Calibration bundle.Scores
	// Masks writes the predicted mask of each flagged image (masks/)
	// when heatmaps are written.
	Masks bool
	// RawMaps writes, beside each heatmap, the map as 16-bit gray (maps/).
	RawMaps bool
	// Gallery is the number of top-scoring images shown in report.html
	// (default 12).
	Gallery int
}

// Line is one scores.jsonl line with what the summary needs from it.
type Line struct {
	Key       string
	JSON      string
	Score     float64
	Label     int
	Anomalous bool
	// Domain is the image's bundle.DomainOf.
	Domain string
}

var heatmapCount = beam.NewCounter("multiad", "heatmaps")

func init() {
	beam.RegisterType(reflect.TypeOf((*Line)(nil)).Elem())
	register.DoFn3x1[context.Context, score.Result, func(string), error](&lineFn{})
	register.Emitter1[string]()
	beam.RegisterCoder(reflect.TypeFor[galleryItem](), encodeGalleryItem, decodeGalleryItem)
	register.DoFn3x1[context.Context, score.Result, func(galleryItem), error](&galleryFn{})
	register.Emitter1[galleryItem]()
	register.Function2x1[galleryItem, galleryItem, bool](lessGallery)
	register.DoFn7x1[context.Context, []byte, func(*string) bool, func(*read.Failure) bool, func(*int) bool,
		func(*[]galleryItem) bool, func(*evaluate.Report) bool, error](&finalFn{})
	register.Iter1[string]()
	register.Iter1[read.Failure]()
	register.Iter1[int]()
	register.Iter1[[]galleryItem]()
	register.Iter1[evaluate.Report]()
}

// Write writes scores.jsonl, failures.jsonl, the heatmaps and the digest
// that Finish turns into summary.json and report.html, into opt.Dir.
// results is PCollection<score.Result>, failures PCollection<read.Failure>,
// inputs PCollection<int> (input rows; the elements are summed) and reports
// PCollection<evaluate.Report> (at most one element).
func Write(s beam.Scope, results, failures, inputs, reports beam.PCollection, opt Options) {
	s = s.Scope("Report")
	shards := beam.ParDo(s, &lineFn{Opt: opt}, results)
	k := opt.Gallery
	if k <= 0 {
		k = 12
	}
	best := top.Largest(s, beam.ParDo(s, &galleryFn{K: k, Calibration: opt.Calibration}, results), k, lessGallery)
	beam.ParDo0(s, &finalFn{Opt: opt}, beam.Impulse(s),
		beam.SideInput{Input: shards}, beam.SideInput{Input: failures}, beam.SideInput{Input: inputs},
		beam.SideInput{Input: best}, beam.SideInput{Input: reports})
}

func sortKey(uri string, index int) string { return fmt.Sprintf("%s\x00%012d", uri, index+1) }

// lineFn writes a result's heatmap (when the mode asks for it), formats its
// scores.jsonl line and spills the lines in sorted shards, emitting each
// shard's URI. The pictures are drawn, encoded and written on up to
// pictureGoroutines goroutines while the bundle goes on (a line names its
// pictures before they exist); FinishBundle waits for them, and the
// first that fails fails the bundle.
type lineFn struct {
	Opt Options

	spill  *shard.Spiller[Line]
	writes *pictureWriters // this bundle's
}

// pictureWriters are the goroutines that write one bundle's pictures.
type pictureWriters struct {
	g      errgroup.Group
	failed atomic.Pointer[error] // the first write that failed
}

// pictureGoroutines is how many goroutines draw pictures at once, in
// lineFn and in the gallery: the worker's cores, not GOMAXPROCS
// (scoring.Run raises that for Prism). Each of lineFn's holds one result
// until its pictures are written.
func pictureGoroutines() int { return min(runtime.NumCPU(), runtime.GOMAXPROCS(0)) }

func (f *lineFn) StartBundle(context.Context, func(string)) {
	f.spill = scoresShards().NewSpiller(f.Opt.Dir)
	f.writes = &pictureWriters{}
	f.writes.g.SetLimit(pictureGoroutines())
}

func (f *lineFn) ProcessElement(ctx context.Context, r score.Result, emit func(string)) error {
	w := f.writes
	if err := w.failed.Load(); err != nil {
		return *err // a write failed: the bundle stops here
	}
	rec := imageNames(r, f.Opt)
	if rec.Heatmap != "" {
		heatmapCount.Inc(ctx, 1)
		// Go waits while pictureGoroutines results are being written.
		w.g.Go(func() error {
			err := writeImages(ctx, r, f.Opt, rec)
			if err != nil {
				w.failed.CompareAndSwap(nil, &err)
			}
			return err
		})
	}
	l, err := line(r, rec)
	if err != nil {
		return err
	}
	return f.spill.Add(ctx, l, emit)
}

func (f *lineFn) FinishBundle(ctx context.Context, emit func(string)) error {
	if err := f.writes.g.Wait(); err != nil {
		return err
	}
	return f.spill.Flush(ctx, emit)
}

// line is r's scores.jsonl line, with rec its record.
func line(r score.Result, rec Record) (Line, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return Line{}, fmt.Errorf("report: %s: %w", r.Item.URI, err)
	}
	return Line{Key: sortKey(r.Item.URI, r.Item.Index), JSON: string(b), Score: r.Score, Label: r.Item.Label,
		Anomalous: r.Anomalous, Domain: r.Domain}, nil
}

// WriteImages writes the heatmap, predicted mask and raw map of a result
// that opt asks for into opt.Dir, and returns its scores.jsonl record
// naming them.
func WriteImages(ctx context.Context, r score.Result, opt Options) (Record, error) {
	rec := imageNames(r, opt)
	if rec.Heatmap == "" {
		return rec, nil
	}
	return rec, writeImages(ctx, r, opt, rec)
}

// imageNames is r's scores.jsonl record, naming the pictures that opt
// asks for (none when it asks for no heatmap of r).
func imageNames(r score.Result, opt Options) Record {
	rec := NewRecord(r, "", opt.IncludePHI)
	if r.Map == nil || !WritesHeatmap(opt.Heatmaps, r.Anomalous) {
		return rec
	}
	rec.Heatmap = HeatmapName(r.Item)
	if opt.Masks && r.Anomalous {
		rec.Mask = MaskName(r.Item)
	}
	if opt.RawMaps {
		rec.RawMap = RawMapName(r.Item)
	}
	return rec
}

// writeImages draws, encodes and writes the pictures that rec names.
func writeImages(ctx context.Context, r score.Result, opt Options, rec Record) error {
	write := func(name string, img image.Image) error {
		png, err := EncodePNG(img)
		if err != nil {
			return err
		}
		if err := storage.WriteFileAtomic(ctx, storage.Join(opt.Dir, name), png); err != nil {
			return fmt.Errorf("report: writing %s: %w", name, err)
		}
		return nil
	}
	heat, err := Heatmap(r, opt.Calibration)
	if err != nil {
		return err
	}
	if err := write(rec.Heatmap, heat); err != nil {
		return err
	}
	if rec.Mask != "" {
		m, err := PredictedMask(r, opt.Calibration)
		if err != nil {
			return err
		}
		if err := write(rec.Mask, m); err != nil {
			return err
		}
	}
	if rec.RawMap != "" {
		m, err := RawMap(r, opt.Calibration)
		if err != nil {
			return err
		}
		if err := write(rec.RawMap, m); err != nil {
			return err
		}
	}
	return nil
}

// finalFn writes scores.jsonl, failures.jsonl and the digest.
type finalFn struct {
	Opt Options
}

func (f *finalFn) ProcessElement(ctx context.Context, _ []byte, shards func(*string) bool, failures func(*read.Failure) bool,
	inputs func(*int) bool, best func(*[]galleryItem) bool, reports func(*evaluate.Report) bool) error {
	var d Digest
	var n int
	for inputs(&n) {
		d.Inputs += n
	}
	var uris []string
	var u string
	for shards(&u) {
		uris = append(uris, u)
	}
	sf := scoresShards()
	uris, err := sf.Reduce(ctx, f.Opt.Dir, uris)
	if err != nil {
		return err
	}
	d.Points = []Point{}
	if err := writeStream(ctx, storage.Join(f.Opt.Dir, ScoresFile), func(w *bufio.Writer) error {
		return sf.Merge(ctx, uris, func(l *Line) error {
			d.Points = append(d.Points, Point{Score: l.Score, Label: l.Label})
			if l.Anomalous {
				d.Flagged++
			}
			if l.Domain != "" {
				if d.Domains == nil {
					d.Domains = map[string]int{}
				}
				d.Domains[l.Domain]++
			}
			if _, err := w.WriteString(l.JSON); err != nil {
				return err
			}
			return w.WriteByte('\n')
		})
	}); err != nil {
		return err
	}
	d.Scored = len(d.Points)
	if err := shard.Remove(ctx, uris); err != nil {
		return err
	}

	var fails []read.Failure
	var fl read.Failure
	for failures(&fl) {
		fails = append(fails, fl)
	}
	sort.Slice(fails, func(i, j int) bool {
		return sortKey(fails[i].URI, fails[i].Index) < sortKey(fails[j].URI, fails[j].Index)
	})
	d.Failed = len(fails)
	fjson := make([]string, len(fails))
	for i, fl := range fails {
		rec := NewFailureRecord(fl)
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		fjson[i] = string(b)
		if i < MaxListedFailures {
			d.Failures = append(d.Failures, rec)
		}
	}
	if err := writeLines(ctx, storage.Join(f.Opt.Dir, FailuresFile), len(fjson), func(i int) string { return fjson[i] }); err != nil {
		return err
	}

	var top []galleryItem
	best(&top)
	sort.SliceStable(top, func(i, j int) bool { return lessGallery(top[j], top[i]) })
	for _, it := range top {
		d.Gallery = append(d.Gallery, it.Entry)
	}
	var rep evaluate.Report
	if reports(&rep) {
		d.Report = &rep
	}
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("report: digest: %w", err)
	}
	return storage.WriteFileAtomic(ctx, storage.Join(f.Opt.Dir, digestFile), b)
}

// writeLines writes n lines to uri.
func writeLines(ctx context.Context, uri string, n int, line func(int) string) error {
	return writeStream(ctx, uri, func(bw *bufio.Writer) error {
		for i := 0; i < n; i++ {
			if _, err := bw.WriteString(line(i)); err != nil {
				return fmt.Errorf("report: writing %s: %w", uri, err)
			}
			if err := bw.WriteByte('\n'); err != nil {
				return fmt.Errorf("report: writing %s: %w", uri, err)
			}
		}
		return nil
	})
}

// writeStream creates uri and writes it through fill.
func writeStream(ctx context.Context, uri string, fill func(*bufio.Writer) error) error {
	w, err := storage.Create(ctx, uri)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := fill(bw); err != nil {
		w.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		w.Close()
		return fmt.Errorf("report: writing %s: %w", uri, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("report: writing %s: %w", uri, err)
	}
	return nil
}
