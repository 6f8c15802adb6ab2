package report

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/top"

	"github.com/multiad/multiad/io/storage"
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
	// MapLo and MapHi normalise anomaly maps for display (the bundle's
	// validation pixel range); MapHi <= MapLo uses each map's own range.
	MapLo, MapHi float64
	// Gallery is the number of top-scoring images shown in report.html
	// (default 12).
	Gallery int
}

// Line is one scores.jsonl line with what the summary needs from it.
type Line struct {
	Key   string
	JSON  string
	Score float64
	Label int
}

var heatmapCount = beam.NewCounter("multiad", "heatmaps")

func init() {
	beam.RegisterType(reflect.TypeOf((*Line)(nil)).Elem())
	register.DoFn3x1[context.Context, score.Result, func(string), error](&lineFn{})
	register.Emitter1[string]()
	register.Function2x1[score.Result, score.Result, bool](lessScore)
	register.DoFn7x1[context.Context, []byte, func(*string) bool, func(*read.Failure) bool, func(*int) bool,
		func(*[]score.Result) bool, func(*evaluate.Report) bool, error](&finalFn{})
	register.Iter1[string]()
	register.Iter1[read.Failure]()
	register.Iter1[int]()
	register.Iter1[[]score.Result]()
	register.Iter1[evaluate.Report]()
}

// Write writes scores.jsonl, failures.jsonl, the heatmaps and the digest
// that Finish turns into summary.json and report.html, into opt.Dir.
// results is PCollection<score.Result>, failures PCollection<read.Failure>,
// inputs PCollection<int> (input rows per listed file, summed) and reports
// PCollection<evaluate.Report> (at most one element).
func Write(s beam.Scope, results, failures, inputs, reports beam.PCollection, opt Options) {
	s = s.Scope("Report")
	shards := beam.ParDo(s, &lineFn{Opt: opt}, results)
	k := opt.Gallery
	if k <= 0 {
		k = 12
	}
	best := top.Largest(s, results, k, lessScore)
	beam.ParDo0(s, &finalFn{Opt: opt}, beam.Impulse(s),
		beam.SideInput{Input: shards}, beam.SideInput{Input: failures}, beam.SideInput{Input: inputs},
		beam.SideInput{Input: best}, beam.SideInput{Input: reports})
}

func lessScore(a, b score.Result) bool {
	if a.Score != b.Score {
		return a.Score < b.Score
	}
	return sortKey(a.Item.URI, a.Item.Index) > sortKey(b.Item.URI, b.Item.Index)
}

func sortKey(uri string, index int) string { return fmt.Sprintf("%s\x00%012d", uri, index+1) }

// lineFn writes a result's heatmap (when the mode asks for it), formats its
// scores.jsonl line and spills the lines in sorted shards, emitting each
// shard's URI.
type lineFn struct {
	Opt Options

	spill *spiller
}

func (f *lineFn) StartBundle(context.Context, func(string)) {
	f.spill = &spiller{dir: f.Opt.Dir}
}

func (f *lineFn) ProcessElement(ctx context.Context, r score.Result, emit func(string)) error {
	l, err := f.line(ctx, r)
	if err != nil {
		return err
	}
	uri, err := f.spill.add(ctx, l)
	if uri != "" {
		emit(uri)
	}
	return err
}

func (f *lineFn) FinishBundle(ctx context.Context, emit func(string)) error {
	uri, err := f.spill.flush(ctx)
	if uri != "" {
		emit(uri)
	}
	return err
}

func (f *lineFn) line(ctx context.Context, r score.Result) (Line, error) {
	heatmap := ""
	if r.Map != nil && WritesHeatmap(f.Opt.Heatmaps, r.Anomalous) {
		png, err := OverlayPNG(r, f.Opt.MapLo, f.Opt.MapHi)
		if err != nil {
			return Line{}, err
		}
		heatmap = HeatmapName(r.Item)
		if err := storage.WriteFileAtomic(ctx, storage.Join(f.Opt.Dir, heatmap), png); err != nil {
			return Line{}, fmt.Errorf("report: writing heatmap: %w", err)
		}
		heatmapCount.Inc(ctx, 1)
	}
	b, err := json.Marshal(NewRecord(r, heatmap, f.Opt.IncludePHI))
	if err != nil {
		return Line{}, fmt.Errorf("report: %s: %w", r.Item.URI, err)
	}
	return Line{Key: sortKey(r.Item.URI, r.Item.Index), JSON: string(b), Score: r.Score, Label: r.Item.Label}, nil
}

// finalFn writes scores.jsonl, failures.jsonl and the digest.
type finalFn struct {
	Opt Options
}

func (f *finalFn) ProcessElement(ctx context.Context, _ []byte, shards func(*string) bool, failures func(*read.Failure) bool,
	inputs func(*int) bool, best func(*[]score.Result) bool, reports func(*evaluate.Report) bool) error {
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
	slices.Sort(uris)
	uris, err := reduceShards(ctx, f.Opt.Dir, uris)
	if err != nil {
		return err
	}
	d.Points = []Point{}
	if err := writeStream(ctx, storage.Join(f.Opt.Dir, ScoresFile), func(w *bufio.Writer) error {
		return mergeShards(ctx, uris, func(l *Line) error {
			d.Points = append(d.Points, Point{Score: l.Score, Label: l.Label})
			w.WriteString(l.JSON)
			return w.WriteByte('\n')
		})
	}); err != nil {
		return err
	}
	d.Scored = len(d.Points)
	if err := removeShards(ctx, uris); err != nil {
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
		b, err := json.Marshal(NewFailureRecord(fl))
		if err != nil {
			return err
		}
		fjson[i] = string(b)
	}
	if err := writeLines(ctx, storage.Join(f.Opt.Dir, FailuresFile), len(fjson), func(i int) string { return fjson[i] }); err != nil {
		return err
	}

	var top []score.Result
	best(&top)
	sort.SliceStable(top, func(i, j int) bool { return lessScore(top[j], top[i]) })
	for _, r := range top {
		g := GalleryEntry{Record: NewRecord(r, "", false)}
		g.Record.Meta = nil
		if r.Map != nil {
			png, err := OverlayPNG(r, f.Opt.MapLo, f.Opt.MapHi)
			if err != nil {
				return err
			}
			g.PNG = png
		}
		d.Gallery = append(d.Gallery, g)
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
			bw.WriteString(line(i))
			bw.WriteByte('\n')
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
