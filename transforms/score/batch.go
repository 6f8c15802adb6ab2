package score

import (
	"context"
	"fmt"
	goruntime "runtime"
	"slices"
	"sync"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"

	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/transforms/evaluate"
	"github.com/multiad/multiad/transforms/read"
)

// Missing is the group of an item whose --group-by column is empty.
const Missing = "(missing)"

var (
	scoredCount = beam.NewCounter("multiad", "scored")
	failedCount = beam.NewCounter("multiad", "score_failed")
)

// ProgressEvery is how often a worker process logs its progress.
const ProgressEvery = 30 * time.Second

// progress counts this worker process's results for periodic log lines.
var progress struct {
	sync.Mutex
	scored, failed int64
	start, last    time.Time
}

// noteProgress records n scored and f failed images and logs a progress
// line at most every ProgressEvery.
func noteProgress(ctx context.Context, n, f int64) {
	progress.Lock()
	defer progress.Unlock()
	now := time.Now()
	if progress.start.IsZero() {
		progress.start, progress.last = now, now
	}
	progress.scored += n
	progress.failed += f
	if now.Sub(progress.last) >= ProgressEvery {
		progress.last = now
		log.Infof(ctx, "score: this worker has scored %d images (%.1f/s), %d failed",
			progress.scored, float64(progress.scored)/now.Sub(progress.start).Seconds(), progress.failed)
	}
}

// Progress returns the images this process has scored and failed to score
// so far, and the time since its first result. On a runner whose workers run
// in the calling process (Prism), that is the whole run's progress.
func Progress() (scored, failed int64, elapsed time.Duration) {
	progress.Lock()
	defer progress.Unlock()
	if !progress.start.IsZero() {
		elapsed = time.Since(progress.start)
	}
	return progress.scored, progress.failed, elapsed
}

// batcher buffers preprocessed inputs and scores them in batches. A full
// batch is scored on its own goroutine while the bundle goes on decoding
// and preprocessing the next one (ONNX Runtime on a few threads and Go
// decoding then overlap). At most Options.InFlight batches (default one)
// are scored at once, sharing the session (ONNX Runtime runs concurrent
// calls); a new batch starts as soon as one of them ends, before the
// results of the batches done are emitted, so that no scoring slot waits
// for the bundle's own work. A batch's goroutine also builds its results
// (NewResult: the view, the gray input, the copies), and the bundle's
// goroutine emits them, in input order: those ready after each submitted
// batch, and the rest at FinishBundle. Its exported field is the DoFn's serialized
// configuration.
type batcher struct {
	Opt Options

	m        Scorer
	buf      []pending
	slots    chan struct{}    // one token per batch being scored
	inflight []chan []outcome // batches submitted and not yet emitted, oldest first
}

type pending struct {
	d      read.Decoded
	tensor []float32
	view   []uint8 // Viewer's view of d, for the heatmap; nil without
}

// outcome is one scored (or failed) image of a batch: its result, built
// on the batch's goroutine, or the error that failed it.
type outcome struct {
	item read.Item
	r    Result
	pix  *evaluate.PixelResult
	err  error
}

func (b *batcher) load(ctx context.Context, uri string) error {
	if b.m != nil {
		return nil
	}
	o, err := b.Opt.ortOptions()
	if err != nil {
		return err
	}
	m, err := model(ctx, b.Opt.Loader, uri, o)
	if err != nil {
		return fmt.Errorf("score: loading bundle %s: %w", uri, err)
	}
	b.m = m
	return nil
}

// ortOptions are the session options of o on this worker.
func (o Options) ortOptions() (ort.Options, error) {
	dev, err := ort.ParseDevice(o.Device)
	if err != nil {
		return ort.Options{}, fmt.Errorf("score: %w", err)
	}
	return ort.Options{IntraOpThreads: o.intraOpThreads(), Device: dev, GPUMemLimit: o.GPUMemLimit}, nil
}

// intraOpThreads resolves Threads on the worker: ThreadsAuto shares this
// process's cores among the batches in flight.
func (o Options) intraOpThreads() int {
	if o.Threads == ThreadsAuto {
		return max(1, goruntime.NumCPU()/max(1, o.InFlight))
	}
	return o.Threads
}

func (b *batcher) batchSize() int {
	if b.Opt.BatchSize > 0 {
		return b.Opt.BatchSize
	}
	return 8
}

// add preprocesses one image and submits a full batch when the next image
// arrives.
func (b *batcher) add(ctx context.Context, d read.Decoded, emit func(Result), emitPix func(evaluate.PixelResult), fail func(read.Failure)) error {
	t, view, err := Preprocess(b.m, d.Image, b.Opt)
	if err != nil {
		failedCount.Inc(ctx, 1)
		noteProgress(ctx, 0, 1)
		fail(read.Failure{URI: d.Item.URI, Index: d.Item.Index, Error: fmt.Sprintf("score: preprocessing %s: %v", d.Item.URI, err)})
		return nil
	}
	// Nothing after preprocessing reads the pixels (the view and the
	// tensor hold what the result needs): the image waits for its batch
	// without them, on a copy, so the caller's image is left as it was.
	img := *d.Image
	img.Data = nil
	d.Image = &img
	b.buf = append(b.buf, pending{d: d, tensor: t, view: view})
	// A full batch goes out when the image after it arrives, so that the
	// bundle's last images always reach flush, which shares them among the
	// slots (an input of one batch, or of whole batches, would otherwise
	// end on one slot).
	if n := b.batchSize(); len(b.buf) > n {
		next := b.buf[n]
		b.buf = b.buf[:n:n]
		b.submit(ctx, emit, emitPix, fail)
		b.buf = append(make([]pending, 0, n+1), next)
	}
	return nil
}

// submit starts scoring the buffered images once fewer than InFlight
// batches are being scored, then emits the results of the batches done.
func (b *batcher) submit(ctx context.Context, emit func(Result), emitPix func(evaluate.PixelResult), fail func(read.Failure)) {
	if len(b.buf) > 0 {
		if b.slots == nil {
			b.slots = make(chan struct{}, max(1, b.Opt.InFlight))
		}
		batch := b.buf
		b.buf = nil
		b.slots <- struct{}{} // waits while InFlight batches are scored
		done := make(chan []outcome, 1)
		b.inflight = append(b.inflight, done)
		go func() {
			// The results go out before the slot is freed: a batch
			// that has the slot finds every earlier batch's results.
			done <- b.results(ctx, b.scoreBatch(ctx, batch))
			<-b.slots
		}()
	}
	b.emitDone(ctx, false, emit, emitPix, fail)
}

// emitDone emits the results of the oldest batches, in order, as long as
// they are done; with wait it waits for every batch.
func (b *batcher) emitDone(ctx context.Context, wait bool, emit func(Result), emitPix func(evaluate.PixelResult), fail func(read.Failure)) {
	for len(b.inflight) > 0 {
		var outs []outcome
		if wait {
			outs = <-b.inflight[0]
		} else {
			select {
			case outs = <-b.inflight[0]:
			default:
				return
			}
		}
		b.inflight[0] = nil
		b.inflight = b.inflight[1:]
		for _, o := range outs {
			if o.err != nil {
				failedCount.Inc(ctx, 1)
				noteProgress(ctx, 0, 1)
				fail(read.Failure{URI: o.item.URI, Index: o.item.Index, Error: fmt.Sprintf("score: %v", o.err)})
				continue
			}
			scoredCount.Inc(ctx, 1)
			noteProgress(ctx, 1, 0)
			emit(o.r)
			if o.pix != nil {
				emitPix(*o.pix)
			}
		}
	}
}

// flush scores what is buffered and emits everything (FinishBundle). With
// several scoring slots the last images go out in small batches (an eighth
// of the batch size, at least one image), each taken by the first slot to
// free up. The slots' last full batches end up to a batch apart; the small
// ones fill that gap, so the slots finish close together instead of one
// scoring the last images alone. A batch of one costs a single-thread
// session no more per image than a batch of 8 (bench/readings/scoring.md).
func (b *batcher) flush(ctx context.Context, emit func(Result), emitPix func(evaluate.PixelResult), fail func(read.Failure)) error {
	rest, size := b.buf, len(b.buf)
	if b.Opt.InFlight > 1 {
		size = max(1, b.batchSize()/8)
	}
	for len(rest) > 0 {
		k := min(size, len(rest))
		b.buf, rest = rest[:k:k], rest[k:]
		b.submit(ctx, emit, emitPix, fail)
	}
	b.emitDone(ctx, true, emit, emitPix, fail)
	return nil
}

// scored is one image of a batch as the model returned it.
type scored struct {
	p     pending
	amap  []float32
	score float32
	err   error
}

// scoreBatch scores ps. When the batch fails, each image is retried alone
// so that one bad input fails only itself.
func (b *batcher) scoreBatch(ctx context.Context, ps []pending) []scored {
	batch := make([][]float32, len(ps))
	for i, p := range ps {
		batch[i] = p.tensor
	}
	outs := make([]scored, len(ps))
	maps, scores, err := b.m.Score(batch)
	if err != nil && len(ps) > 1 {
		log.Warnf(ctx, "score: batch of %d failed (%v); retrying one by one", len(ps), err)
		for i, p := range ps {
			outs[i] = scored{p: p}
			m, s, err := b.m.Score([][]float32{p.tensor})
			if err != nil {
				outs[i].err = err
				continue
			}
			outs[i].amap, outs[i].score = m[0], s[0]
		}
		return outs
	}
	for i, p := range ps {
		outs[i] = scored{p: p, err: err}
		if err == nil {
			outs[i].amap, outs[i].score = maps[i], scores[i]
		}
	}
	return outs
}

// results turns a batch's model outputs into what Score emits. It runs on
// the batch's goroutine, so that the post-processing of one batch (the
// view, the gray input, the map and mask copies) runs beside the next
// batch's scoring and the bundle's decoding, and the bundle's own goroutine
// is left to emit.
func (b *batcher) results(ctx context.Context, ss []scored) []outcome {
	outs := make([]outcome, len(ss))
	for i, sc := range ss {
		outs[i] = outcome{item: sc.p.d.Item, err: sc.err}
		if sc.err == nil {
			outs[i].r, outs[i].pix = NewResult(b.m, sc.p.d, sc.p.tensor, sc.p.view, sc.amap, sc.score, b.Opt)
		}
	}
	return outs
}

// Preprocess is what Score does to a decoded image before scoring it: the
// model input (m.Preprocess) and, when opt.KeepMaps is set and m is a
// Viewer, the view for its heatmap, both from one normalisation.
func Preprocess(m Scorer, img *pixels.Image, opt Options) (tensor []float32, view []uint8, err error) {
	if v, ok := m.(Viewer); ok && opt.KeepMaps {
		return v.PreprocessView(img)
	}
	t, err := m.Preprocess(img)
	return t, nil, err
}

// NewResult is what Score emits for one scored image: d decoded, tensor
// and view its model input and view (Preprocess), amap and score m's
// output for it. The pixel result, for the pixel metrics, is nil unless d
// has a mask. The outputs own their slices (amap and tensor may be reused;
// view is kept).
func NewResult(m Scorer, d read.Decoded, tensor []float32, view []uint8, amap []float32, score float32, opt Options) (Result, *evaluate.PixelResult) {
	s := m.Size()
	img := d.Image
	r := Result{Item: d.Item, Score: float64(score), Anomalous: float64(score) > m.Threshold(),
		Size: s, Rows: img.Rows, Cols: img.Cols, Domain: bundle.DomainOf(img).String()}
	r.Normalized = m.Calibration().Normalize(r.Score)
	if opt.KeepMaps {
		r.Map = append([]float32(nil), amap...)
		r.Gray = make([]uint8, s*s)
		for i := range r.Gray {
			r.Gray[i] = uint8(clamp01(tensor[i])*255 + 0.5)
		}
		r.View = view
		if mk := d.Mask; len(mk) == img.Rows*img.Cols && slices.ContainsFunc(mk, func(v uint8) bool { return v != 0 }) {
			r.Truth = mk
		}
	}
	if opt.KeepIdentity {
		id := img.Meta.Identity
		r.Identity = &id
	}
	if d.Mask == nil {
		return r, nil
	}
	groups := GroupsOf(d.Item, opt.GroupBy)
	return r, &evaluate.PixelResult{
		Groups: groups, AllGroups: len(groups) == 0,
		Rows: s, Cols: s,
		Map:  append([]float32(nil), amap...),
		Mask: ResizeNearest(d.Mask, img.Rows, img.Cols, s, s),
	}
}

// GroupsOf returns the metric groups an item belongs to: the value of the
// groupBy column (Missing when empty) when groupBy is set, else its MVTec
// defect type. It returns nil for an item without a group (an MVTec good
// image), which evaluation counts as a normal reference in every group
// (evaluate.PixelResult.AllGroups).
func GroupsOf(it read.Item, groupBy string) []string {
	if groupBy != "" {
		v := it.Meta[groupBy]
		if v == "" {
			v = Missing
		}
		return []string{v}
	}
	if it.Group != "" {
		return []string{it.Group}
	}
	return nil
}

// ResizeNearest resizes a row-major h×w mask to oh×ow by nearest neighbour
// with half-pixel centres.
func ResizeNearest(src []uint8, h, w, oh, ow int) []uint8 {
	out := make([]uint8, oh*ow)
	for y := 0; y < oh; y++ {
		sy := min((2*y+1)*h/(2*oh), h-1)
		for x := 0; x < ow; x++ {
			sx := min((2*x+1)*w/(2*ow), w-1)
			out[y*ow+x] = src[sy*w+sx]
		}
	}
	return out
}

func clamp01(v float32) float32 {
	if v < 0 || v != v {
		return 0
	}
	if v > 1 {
		return 1
	}
	return v
}
