// Package score scores decoded images with a model bundle in a Beam
// pipeline. Each worker process holds one model per bundle (a process-wide
// cache shared by all DoFn instances and bundles); elements are batched
// within a bundle, and the bundle's last images are scored at FinishBundle
// in small batches shared among the scoring slots.
package score

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/multiad/multiad/internal/gobcoder"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/preprocess"
	"github.com/multiad/multiad/transforms/evaluate"
	"github.com/multiad/multiad/transforms/read"
)

// Result is the score of one image, slice or frame.
type Result struct {
	Item read.Item
	// Score is the image score; Anomalous is Score > the bundle's threshold.
	Score     float64
	Anomalous bool
	// Size is the model input size S. Map is the S×S anomaly map and Gray
	// the S×S model input as 8-bit gray (for heatmap overlays); both are nil
	// unless Options.KeepMaps.
	Size int
	Map  []float32
	Gray []uint8
	// Rows and Cols are the original image size.
	Rows, Cols int
	// Normalized is Score mapped to [0, 1] with the threshold at 0.5 from
	// the bundle's calibration (bundle.Scores.Normalize).
	Normalized float64
	// View is the image at its original size, Rows×Cols 8-bit gray or RGB
	// (see ViewChannels), normalised as the model saw it; Truth is its
	// ground-truth mask at that size (nonzero: defect), nil without a mask
	// or when the mask is empty. Both only with Options.KeepMaps; View is
	// nil when the model cannot render one.
	View  []uint8
	Truth []uint8
	// Domain is the image's bundle.DomainOf, for out-of-domain warnings.
	Domain string
	// Identity holds the DICOM patient fields, only when Options.KeepIdentity.
	Identity *pixels.Identity
}

// Scorer is what Score needs from a model; *inference.Model implements it.
type Scorer interface {
	Size() int
	Threshold() float64
	// Calibration returns the bundle's calibration statistics.
	Calibration() bundle.Scores
	Preprocess(img *pixels.Image) ([]float32, error)
	Score(batch [][]float32) (maps [][]float32, scores []float32, err error)
	Close() error
}

// Viewer is implemented by Scorers that also render an image at its own
// size as the model normalises it (*inference.Model does): PreprocessView
// returns Preprocess's tensor and that view (8-bit gray or RGB
// interleaved, Rows×Cols), normalising the image once. Score uses it when
// it keeps maps; results of other Scorers carry no View.
type Viewer interface {
	PreprocessView(img *pixels.Image) (tensor []float32, view []uint8, err error)
}

// ViewChannels returns the number of channels of r.View (1 or 3), or 0
// without a view.
func (r Result) ViewChannels() int {
	n := r.Rows * r.Cols
	if n <= 0 || len(r.View) == 0 || len(r.View)%n != 0 {
		return 0
	}
	return len(r.View) / n
}

// FullMap returns the anomaly map at the original image size (Rows×Cols),
// upsampled bilinearly from the model size (preprocess.Resize, half-pixel
// centres). Heatmaps, predicted masks and raw maps all use it. It returns
// nil when the result keeps no map.
func (r Result) FullMap() []float32 {
	s := r.Size
	if s <= 0 || len(r.Map) != s*s {
		return nil
	}
	rows, cols := r.Rows, r.Cols
	if rows <= 0 || cols <= 0 {
		rows, cols = s, s
	}
	out := make([]float32, rows*cols)
	preprocess.Resize(r.Map, s, s, out, rows, cols)
	return out
}

// Loader loads a Scorer from a bundle URI.
type Loader func(ctx context.Context, uri string, opt ort.Options) (Scorer, error)

var (
	loadersMu sync.Mutex
	loaders   = map[string]Loader{
		"": func(ctx context.Context, uri string, opt ort.Options) (Scorer, error) {
			return inference.Load(ctx, uri, opt)
		},
	}
	models = map[string]*modelEntry{}
)

type modelEntry struct {
	once sync.Once
	m    Scorer
	err  error
}

// RegisterLoader makes a Loader available to Options.Loader under name (for
// tests that inject a fake model). It must be called in every worker
// process, e.g. from an init function.
func RegisterLoader(name string, l Loader) {
	loadersMu.Lock()
	defer loadersMu.Unlock()
	loaders[name] = l
}

// model returns the process-wide model for (loader, uri, device, threads),
// loading it on first use.
func model(ctx context.Context, loader, uri string, opt ort.Options) (Scorer, error) {
	key := fmt.Sprintf("%s\x00%s\x00%s\x00%d\x00%d", loader, uri, opt.Device, opt.IntraOpThreads, opt.GPUMemLimit)
	loadersMu.Lock()
	l, ok := loaders[loader]
	e := models[key]
	if e == nil {
		e = &modelEntry{}
		models[key] = e
	}
	loadersMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("score: no model loader %q registered in this process", loader)
	}
	e.once.Do(func() {
		log.Infof(ctx, "score: loading model %s", uri)
		e.m, e.err = l(ctx, uri, opt)
	})
	return e.m, e.err
}

// Preload starts loading the model of opt.Bundle into this process's model
// cache, the one Score's DoFns take their model from, and returns at once.
// A pipeline that runs in this process (a local runner such as Prism) then
// finds the model loaded, or loading, when its scoring bundle starts,
// instead of building the session only then. Call it with the Options given
// to Score, after the bundle has been checked: a load that fails is
// reported by Score, as without Preload. On a remote runner it only costs
// the launcher a model load.
//
// Example:
//
//	opt := score.Options{Bundle: "model/", InFlight: 2, Threads: 1}
//	score.Preload(ctx, opt)
//	results, pix, failures := score.Score(s, images, opt)
func Preload(ctx context.Context, opt Options) {
	o, err := opt.ortOptions()
	if err != nil {
		return // Score's setup reports it
	}
	// Not cancelled with ctx: the cache keeps what the load returns.
	ctx = context.WithoutCancel(ctx)
	go model(ctx, opt.Loader, opt.Bundle, o) //nolint:errcheck // the cache keeps the result for Score
}

// ThreadsAuto in Options.Threads sets the intra-op threads from the
// worker's core count: its cores divided among the batches in flight.
const ThreadsAuto = -1

// Options configure Score.
type Options struct {
	// Bundle is the model bundle URI (directory, .tar, local or gs://).
	Bundle string
	// BatchSize is the number of images per model call (default 8). With
	// InFlight above one, a bundle's last images go in calls of an eighth
	// of it (at least one), each to the first slot free.
	BatchSize int
	// Device is auto, cpu or cuda; Threads is ONNX Runtime's intra-op
	// thread count (0: its default; ThreadsAuto: the worker's cores ÷
	// InFlight).
	Device  string
	Threads int
	// InFlight is the number of batches scored at once on the session
	// while the next is decoded (0 or 1: one). With Threads 1 and InFlight
	// 2, two single-threaded calls share two cores.
	InFlight int
	// GPUMemLimit bounds ONNX Runtime's CUDA arena in bytes (0: no bound).
	GPUMemLimit int64
	// KeepMaps keeps each result's anomaly map and gray input (for heatmaps
	// and the report gallery).
	KeepMaps bool
	// KeepIdentity copies DICOM patient identity into results (--include-phi).
	KeepIdentity bool
	// GroupBy names the manifest column that groups results for metrics;
	// empty: the MVTec defect type.
	GroupBy string
	// Loader selects a registered Loader ("" is inference.Load).
	Loader string
}

func init() {
	beam.RegisterType(reflect.TypeOf((*Result)(nil)).Elem())
	beam.RegisterCoder(reflect.TypeOf((*Result)(nil)).Elem(), encodeResult, decodeResult)
	register.DoFn5x1[context.Context, read.Decoded, func(Result), func(evaluate.PixelResult), func(read.Failure), error](&scoreFn{})
	// The generic registration cannot infer a FinishBundle that takes the
	// side input; this DoFn runs through reflection.
	beam.RegisterType(reflect.TypeOf((*scoreSideFn)(nil)).Elem())
	register.Emitter1[Result]()
	register.Emitter1[evaluate.PixelResult]()
}

// Score scores a PCollection<read.Decoded> with the bundle opt.Bundle. It
// returns PCollection<Result>, PCollection<evaluate.PixelResult> (items with
// masks) and PCollection<read.Failure>.
func Score(s beam.Scope, images beam.PCollection, opt Options) (results, pixelResults, failures beam.PCollection) {
	s = s.Scope("Score")
	return beam.ParDo3(s, &scoreFn{batcher: batcher{Opt: opt}}, images)
}

// ScoreWithBundle is Score with the bundle URI given as a singleton
// PCollection<string> side input (e.g. the output of a training step).
func ScoreWithBundle(s beam.Scope, images, bundle beam.PCollection, opt Options) (results, pixelResults, failures beam.PCollection) {
	s = s.Scope("Score")
	return beam.ParDo3(s, &scoreSideFn{batcher: batcher{Opt: opt}}, images, beam.SideInput{Input: bundle})
}

// scoreFn scores with the bundle named in its options.
type scoreFn struct{ batcher }

// Setup loads (or finds) the process's model.
func (f *scoreFn) Setup(ctx context.Context) error { return f.load(ctx, f.Opt.Bundle) }

func (f *scoreFn) ProcessElement(ctx context.Context, d read.Decoded, emit func(Result), emitPix func(evaluate.PixelResult), fail func(read.Failure)) error {
	return f.add(ctx, d, emit, emitPix, fail)
}

func (f *scoreFn) FinishBundle(ctx context.Context, emit func(Result), emitPix func(evaluate.PixelResult), fail func(read.Failure)) error {
	return f.flush(ctx, emit, emitPix, fail)
}

// scoreSideFn scores with the bundle given as a side input.
type scoreSideFn struct{ batcher }

func (f *scoreSideFn) ProcessElement(ctx context.Context, d read.Decoded, bundle string, emit func(Result), emitPix func(evaluate.PixelResult), fail func(read.Failure)) error {
	if err := f.load(ctx, bundle); err != nil {
		return err
	}
	return f.add(ctx, d, emit, emitPix, fail)
}

func (f *scoreSideFn) FinishBundle(ctx context.Context, _ string, emit func(Result), emitPix func(evaluate.PixelResult), fail func(read.Failure)) error {
	return f.flush(ctx, emit, emitPix, fail)
}

// Result elements carry large float and byte slices; they travel
// gob-encoded (see internal/gobcoder), the map as raw float bits.
func encodeResult(v Result) ([]byte, error) { return gobcoder.EncodeFloats(v, resultMap) }

func decodeResult(b []byte) (Result, error) { return gobcoder.DecodeFloats(b, resultMap) }

func resultMap(r *Result) *[]float32 { return &r.Map }
