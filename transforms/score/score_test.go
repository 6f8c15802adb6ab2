package score

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/transforms/evaluate"
	"github.com/multiad/multiad/transforms/read"
)

func TestMain(m *testing.M) {
	shared.SkipExamplesIfMissing()
	ptest.Main(m)
}

// fake scores an image by its first pixel value / 255; an image whose
// first pixel is 13 makes any batch holding it fail; 2-channel images fail
// preprocessing.
type fake struct {
	mu      sync.Mutex
	batches []int
}

const fakeSize = 4

func (f *fake) Size() int          { return fakeSize }
func (f *fake) Threshold() float64 { return 0.5 }
func (f *fake) Calibration() bundle.Scores {
	return bundle.Scores{Threshold: 0.5, Min: 0, Max: 1, PixelThreshold: 0.5, PixelMax: 1}
}
func (f *fake) Close() error { return nil }
func (f *fake) Preprocess(img *pixels.Image) ([]float32, error) {
	if img.Channels != 1 {
		return nil, errors.New("fake: want 1 channel")
	}
	t := make([]float32, 3*fakeSize*fakeSize)
	for i := range t {
		t[i] = float32(img.At(0)) / 255
	}
	return t, nil
}
func (f *fake) Score(batch [][]float32) ([][]float32, []float32, error) {
	f.mu.Lock()
	f.batches = append(f.batches, len(batch))
	f.mu.Unlock()
	var maps [][]float32
	var scores []float32
	for _, t := range batch {
		if t[0] == 13.0/255 {
			return nil, nil, errors.New("fake: poison")
		}
		maps = append(maps, t[:fakeSize*fakeSize])
		scores = append(scores, t[0])
	}
	return maps, scores, nil
}

var (
	fakeModel = &fake{}
	loads     int
)

func init() {
	RegisterLoader("fake", func(ctx context.Context, uri string, opt ort.Options) (Scorer, error) {
		loads++
		return fakeModel, nil
	})
	register.Function1x1[Result, string](resultKey)
}

func decoded(n int) []read.Decoded {
	var out []read.Decoded
	for i := 0; i < n; i++ {
		img := pixels.New(2, 3, 1, pixels.Uint8)
		img.Data[0] = byte(10 * i)
		it := read.Item{URI: fmt.Sprintf("img%d.png", i), Index: -1, Label: i % 2, MaskIndex: -1}
		d := read.Decoded{Item: it, Image: img}
		if i == 3 {
			d.Mask = []uint8{0, 0, 1, 0, 0, 1}
			d.Item.Group = "crack"
		}
		out = append(out, d)
	}
	return out
}

func resultKey(r Result) string {
	return fmt.Sprintf("%s %.4f %v %d %d %d", r.Item.URI, r.Score, r.Anomalous, len(r.Map), r.Rows, r.Cols)
}

func TestScoreBatches(t *testing.T) {
	in := decoded(8)
	in[1].Image.Data[0] = 13 // poisons its batch
	in[5].Image = pixels.New(2, 3, 2, pixels.Uint8)
	var want []any
	for i, d := range in {
		if i == 1 || i == 5 {
			continue
		}
		v := float64(float32(d.Image.At(0)) / 255)
		want = append(want, fmt.Sprintf("%s %.4f %v %d %d %d", d.Item.URI, v, v > 0.5, fakeSize*fakeSize, 2, 3))
	}
	p, s := beam.NewPipelineWithRoot()
	col := beam.CreateList(s, in)
	res, pix, fails := Score(s, col, Options{Bundle: "x", BatchSize: 3, KeepMaps: true, Loader: "fake"})
	passert.Equals(s, beam.ParDo(s, resultKey, res), want...)
	passert.Count(s, fails, "failures", 2)
	passert.Equals(s, pix, evaluate.PixelResult{Groups: []string{"crack"}, Rows: fakeSize, Cols: fakeSize,
		Map: fill(fakeSize*fakeSize, 30.0/255), Mask: ResizeNearest([]uint8{0, 0, 1, 0, 0, 1}, 2, 3, fakeSize, fakeSize)})
	ptest.RunAndValidate(t, p)
	if loads != 1 {
		t.Errorf("model loaded %d times, want once per process", loads)
	}
	for _, b := range fakeModel.batches {
		if b > 3 {
			t.Errorf("batch of %d with BatchSize 3", b)
		}
	}
}

func fill(n int, v float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestScoreWithBundleSideInput(t *testing.T) {
	p, s := beam.NewPipelineWithRoot()
	res, _, fails := ScoreWithBundle(s, beam.CreateList(s, decoded(5)), beam.Create(s, "x"), Options{Loader: "fake"})
	passert.Count(s, res, "results", 5)
	passert.Empty(s, fails)
	ptest.RunAndValidate(t, p)
}

func TestResizeNearest(t *testing.T) {
	// 2×3 → 4×6: every source pixel becomes a 2×2 block.
	src := []uint8{1, 2, 3, 4, 5, 6}
	got := ResizeNearest(src, 2, 3, 4, 6)
	for y := 0; y < 4; y++ {
		for x := 0; x < 6; x++ {
			if want := src[(y/2)*3+x/2]; got[y*6+x] != want {
				t.Fatalf("(%d,%d) = %d, want %d: %v", y, x, got[y*6+x], want, got)
			}
		}
	}
	// Downsampling picks the pixel under each output centre.
	if got := ResizeNearest([]uint8{0, 1, 2, 3}, 1, 4, 1, 2); got[0] != 1 || got[1] != 3 {
		t.Errorf("1x4 → 1x2 = %v, want [1 3]", got)
	}
}

func TestGroupsOf(t *testing.T) {
	it := read.Item{Group: "crack", Meta: map[string]string{"patient": "P1", "site": ""}}
	for _, c := range []struct {
		by   string
		want string
	}{{"", "[crack]"}, {"patient", "[P1]"}, {"site", "[" + Missing + "]"}} {
		if got := fmt.Sprint(GroupsOf(it, c.by)); got != c.want {
			t.Errorf("GroupsOf(by %q) = %s, want %s", c.by, got, c.want)
		}
	}
	if g := GroupsOf(read.Item{}, ""); g != nil {
		t.Errorf("good item groups %v", g)
	}
}

// gated scores a batch of one image only once the image two after it has
// been preprocessed (a full batch is submitted when the next image arrives,
// so scoring overlaps preprocessing when the one after that is
// preprocessed while the batch is scored); it deadlocks otherwise.
type gated struct {
	fake
	next chan struct{} // one token per image preprocessed after the second
	seen int
}

func (g *gated) Preprocess(img *pixels.Image) ([]float32, error) {
	if g.seen >= 2 {
		g.next <- struct{}{}
	}
	g.seen++
	return g.fake.Preprocess(img)
}

func (g *gated) Score(batch [][]float32) ([][]float32, []float32, error) {
	select {
	case <-g.next:
	case <-time.After(5 * time.Second):
		return nil, nil, errors.New("gated: the next image was not preprocessed while this batch was scored")
	}
	return g.fake.Score(batch)
}

// TestBatcherOverlap checks that a batch is scored while the next image is
// preprocessed, that results come out in input order, and that at most one
// batch is in flight.
func TestBatcherOverlap(t *testing.T) {
	g := &gated{next: make(chan struct{}, 16)}
	b := &batcher{Opt: Options{BatchSize: 1}, m: g}
	in := decoded(4)
	var got []string
	var fails []read.Failure
	emit := func(r Result) { got = append(got, r.Item.URI) }
	emitPix := func(evaluate.PixelResult) {}
	fail := func(f read.Failure) { fails = append(fails, f) }
	ctx := context.Background()
	for i, d := range in {
		if err := b.add(ctx, d, emit, emitPix, fail); err != nil {
			t.Fatal(err)
		}
		// image i waits for the next; image i-1 is in flight; the ones
		// before it are out
		if len(got) != max(0, i-1) {
			t.Fatalf("after %d images, %d results", i+1, len(got))
		}
	}
	g.next <- struct{}{} // the last two batches have no image two after them
	g.next <- struct{}{}
	if err := b.flush(ctx, emit, emitPix, fail); err != nil {
		t.Fatal(err)
	}
	if len(fails) != 0 {
		t.Fatalf("failures: %v", fails)
	}
	for i, d := range in {
		if i >= len(got) || got[i] != d.Item.URI {
			t.Fatalf("results %v, want the inputs' order", got)
		}
	}
}

// concurrent counts the Score calls running at once.
type concurrent struct {
	fake
	mu        sync.Mutex
	now, peak int
}

func (c *concurrent) Score(batch [][]float32) ([][]float32, []float32, error) {
	c.mu.Lock()
	c.now++
	c.peak = max(c.peak, c.now)
	c.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	defer func() { c.mu.Lock(); c.now--; c.mu.Unlock() }()
	return c.fake.Score(batch)
}

// TestBatcherInFlight checks that with InFlight n up to n batches are
// scored at once, and that results still come out in input order with
// the scores of one-at-a-time scoring.
func TestBatcherInFlight(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3} {
		c := &concurrent{}
		b := &batcher{Opt: Options{BatchSize: 2, InFlight: n}, m: c}
		in := decoded(11)
		var got []Result
		emit := func(r Result) { got = append(got, r) }
		fail := func(f read.Failure) { t.Errorf("in-flight %d: failure %v", n, f) }
		ctx := context.Background()
		for _, d := range in {
			if err := b.add(ctx, d, emit, func(evaluate.PixelResult) {}, fail); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.flush(ctx, emit, func(evaluate.PixelResult) {}, fail); err != nil {
			t.Fatal(err)
		}
		if want := max(1, n); c.peak != want {
			t.Errorf("in-flight %d: %d batches scored at once, want %d", n, c.peak, want)
		}
		if len(got) != len(in) {
			t.Fatalf("in-flight %d: %d results for %d images", n, len(got), len(in))
		}
		for i, d := range in {
			if want := float64(float32(d.Image.At(0)) / 255); got[i].Item.URI != d.Item.URI || got[i].Score != want {
				t.Errorf("in-flight %d: result %d is %s %v, want %s %v", n, i, got[i].Item.URI, got[i].Score, d.Item.URI, want)
			}
		}
	}
}

// announcing reports the index of each batch it starts scoring, and
// then scores it as gated does: once the next image is preprocessed.
type announcing struct {
	gated
	n       atomic.Int32
	started chan int
}

func (a *announcing) Score(batch [][]float32) ([][]float32, []float32, error) {
	a.started <- int(a.n.Add(1)) - 1
	return a.gated.Score(batch)
}

// TestBatcherStartsBeforeEmitting checks that a scoring slot does not wait
// for the bundle's own work: image i's result, which is ready only once
// image i+1 is preprocessed, is emitted after the batch of image i+1 has
// started (one image a batch, one batch in flight).
func TestBatcherStartsBeforeEmitting(t *testing.T) {
	const n = 6
	a := &announcing{gated: gated{next: make(chan struct{}, n)}, started: make(chan int, n)}
	b := &batcher{Opt: Options{BatchSize: 1, InFlight: 1}, m: a}
	seen := -1 // the last batch known to have started
	var got []string
	emit := func(r Result) {
		i := len(got)
		got = append(got, r.Item.URI)
		for i+1 < n && seen < i+1 {
			select {
			case seen = <-a.started:
			case <-time.After(2 * time.Second):
				t.Fatalf("image %d was emitted before batch %d started", i, i+1)
			}
		}
	}
	fail := func(f read.Failure) { t.Errorf("failure %v", f) }
	ctx := context.Background()
	for _, d := range decoded(n) {
		if err := b.add(ctx, d, emit, func(evaluate.PixelResult) {}, fail); err != nil {
			t.Fatal(err)
		}
	}
	a.next <- struct{}{} // the last two batches have no image two after them
	a.next <- struct{}{}
	if err := b.flush(ctx, emit, func(evaluate.PixelResult) {}, fail); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d results for %d images", len(got), n)
	}
}

// TestBatcherFlushSplits checks that with several scoring slots the
// images left at FinishBundle (the last full batch included) go out in
// batches of an eighth of the batch size (at least one), with one slot in
// one batch, and that every image is scored once.
func TestBatcherFlushSplits(t *testing.T) {
	for _, c := range []struct {
		batch, inFlight, images int
		want                    []int // batch sizes, sorted
	}{
		{8, 1, 11, []int{3, 8}},
		{8, 0, 11, []int{3, 8}},
		{8, 2, 11, []int{1, 1, 1, 8}},
		{8, 1, 16, []int{8, 8}},
		{8, 2, 16, []int{1, 1, 1, 1, 1, 1, 1, 1, 8}}, // the last full batch too
		{8, 2, 8, []int{1, 1, 1, 1, 1, 1, 1, 1}},
		{8, 3, 13, []int{1, 1, 1, 1, 1, 8}},
		{8, 4, 3, []int{1, 1, 1}},
		{32, 2, 42, []int{2, 4, 4, 32}},
		{4, 2, 7, []int{1, 1, 1, 4}},
	} {
		f := &fake{}
		b := &batcher{Opt: Options{BatchSize: c.batch, InFlight: c.inFlight}, m: f}
		var got int
		emit := func(Result) { got++ }
		fail := func(f read.Failure) { t.Errorf("failure %v", f) }
		ctx := context.Background()
		for _, d := range decoded(c.images) {
			if err := b.add(ctx, d, emit, func(evaluate.PixelResult) {}, fail); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.flush(ctx, emit, func(evaluate.PixelResult) {}, fail); err != nil {
			t.Fatal(err)
		}
		sizes := slices.Sorted(slices.Values(f.batches))
		if !slices.Equal(sizes, c.want) || got != c.images {
			t.Errorf("batch %d, in-flight %d, %d images: batches %v and %d results, want %v and %d", c.batch, c.inFlight, c.images, sizes, got, c.want, c.images)
		}
	}
}

// slowFirst scores its first batch only when released, and every other
// batch at once.
type slowFirst struct {
	fake
	calls   atomic.Int32
	release chan struct{}
	others  chan int
}

func (s *slowFirst) Score(batch [][]float32) ([][]float32, []float32, error) {
	if s.calls.Add(1) == 1 {
		<-s.release
	} else {
		s.others <- len(batch)
	}
	return s.fake.Score(batch)
}

// TestBatcherFlushFillsFreeSlot checks that while one slot is still
// scoring a full batch, the other scores every image left at FinishBundle,
// and that the results still come out in input order.
func TestBatcherFlushFillsFreeSlot(t *testing.T) {
	s := &slowFirst{release: make(chan struct{}), others: make(chan int, 16)}
	b := &batcher{Opt: Options{BatchSize: 8, InFlight: 2}, m: s}
	in := decoded(12)
	var got []string
	emit := func(r Result) { got = append(got, r.Item.URI) }
	fail := func(f read.Failure) { t.Errorf("failure %v", f) }
	ctx := context.Background()
	for _, d := range in {
		if err := b.add(ctx, d, emit, func(evaluate.PixelResult) {}, fail); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error)
	go func() { done <- b.flush(ctx, emit, func(evaluate.PixelResult) {}, fail) }()
	scored := 0
	for scored < 4 {
		select {
		case n := <-s.others:
			scored += n
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of the 4 last images scored while the first batch was held", scored)
		}
	}
	close(s.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, d := range in {
		if i >= len(got) || got[i] != d.Item.URI {
			t.Fatalf("results %v, want the inputs' order", got)
		}
	}
}

func TestThreadsAuto(t *testing.T) {
	cores := goruntime.NumCPU()
	for _, c := range []struct {
		o    Options
		want int
	}{
		{Options{Threads: 3}, 3}, {Options{}, 0},
		{Options{Threads: ThreadsAuto}, cores}, {Options{Threads: ThreadsAuto, InFlight: 2}, max(1, cores/2)},
		{Options{Threads: ThreadsAuto, InFlight: 4 * cores}, 1},
	} {
		if got := c.o.intraOpThreads(); got != c.want {
			t.Errorf("%+v: %d threads, want %d", c.o, got, c.want)
		}
	}
}

// TestPreload checks that Preload returns while the model is still
// loading, and that a pipeline with the same options then uses that load
// instead of loading again; Options with a bad device load nothing.
func TestPreload(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	var slowLoads atomic.Int32
	RegisterLoader("slow", func(ctx context.Context, uri string, opt ort.Options) (Scorer, error) {
		slowLoads.Add(1)
		close(started)
		<-release
		return &fake{}, nil
	})
	opt := Options{Bundle: "preloaded", BatchSize: 2, Threads: ThreadsAuto, InFlight: 2, Loader: "slow"}
	Preload(context.Background(), Options{Bundle: "preloaded", Device: "tpu", Loader: "slow"})
	Preload(context.Background(), opt) // returns with the loader blocked
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("Preload started no load")
	}
	close(release)
	p, s := beam.NewPipelineWithRoot()
	res, _, fails := Score(s, beam.CreateList(s, decoded(5)), opt)
	passert.Count(s, res, "results", 5)
	passert.Empty(s, fails)
	ptest.RunAndValidate(t, p)
	if n := slowLoads.Load(); n != 1 {
		t.Errorf("model loaded %d times, want once (the preload)", n)
	}
}

// viewFake is fake with a Viewer: its view of an image is every pixel's
// value plus one. It counts the calls to Preprocess and PreprocessView.
type viewFake struct {
	fake
	plain, viewed atomic.Int64
}

func (f *viewFake) Preprocess(img *pixels.Image) ([]float32, error) {
	f.plain.Add(1)
	return f.fake.Preprocess(img)
}

func (f *viewFake) PreprocessView(img *pixels.Image) ([]float32, []uint8, error) {
	f.viewed.Add(1)
	t, err := f.fake.Preprocess(img)
	if err != nil {
		return nil, nil, err
	}
	v := make([]uint8, img.Rows*img.Cols)
	for i := range v {
		v[i] = uint8(img.At(i*img.Channels)) + 1
	}
	return t, v, nil
}

var viewModel = &viewFake{}

func init() {
	RegisterLoader("fake-view", func(ctx context.Context, uri string, opt ort.Options) (Scorer, error) {
		return viewModel, nil
	})
	register.Function1x1[Result, string](viewKey)
}

func viewKey(r Result) string { return fmt.Sprintf("%s %v", r.Item.URI, r.View) }

// TestScoreView checks that a Viewer's results carry the view it returned
// with the model input, from one PreprocessView call an image and no
// Preprocess call, when maps are kept; and that without KeepMaps scoring
// calls Preprocess alone and the results carry no view.
func TestScoreView(t *testing.T) {
	for _, keep := range []bool{true, false} {
		viewModel.plain.Store(0)
		viewModel.viewed.Store(0)
		in := decoded(5)
		var want []any
		for _, d := range in {
			var v []uint8
			if keep {
				v = make([]uint8, 6)
				for i := range v {
					v[i] = d.Image.Data[i] + 1
				}
			}
			want = append(want, fmt.Sprintf("%s %v", d.Item.URI, v))
		}
		p, s := beam.NewPipelineWithRoot()
		res, _, _ := Score(s, beam.CreateList(s, in), Options{Bundle: "v", BatchSize: 2, KeepMaps: keep, Loader: "fake-view"})
		passert.Equals(s, beam.ParDo(s, viewKey, res), want...)
		ptest.RunAndValidate(t, p)
		plain, viewed := viewModel.plain.Load(), viewModel.viewed.Load()
		if keep && (plain != 0 || viewed != int64(len(in))) {
			t.Errorf("KeepMaps: %d Preprocess and %d PreprocessView calls for %d images, want 0 and %d", plain, viewed, len(in), len(in))
		}
		if !keep && (plain != int64(len(in)) || viewed != 0) {
			t.Errorf("no KeepMaps: %d Preprocess and %d PreprocessView calls for %d images, want %d and 0", plain, viewed, len(in), len(in))
		}
	}
}

// TestAddDropsPixels checks that an image waiting for its batch no longer
// holds its decoded pixels, that the caller's image keeps them, and that
// the result still has the image's size and domain.
func TestAddDropsPixels(t *testing.T) {
	b := &batcher{Opt: Options{BatchSize: 4, KeepMaps: true}, m: viewModel}
	in := decoded(2)
	var got []Result
	emit := func(r Result) { got = append(got, r) }
	fail := func(f read.Failure) { t.Errorf("failure %v", f) }
	ctx := context.Background()
	for _, d := range in {
		if err := b.add(ctx, d, emit, func(evaluate.PixelResult) {}, fail); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range b.buf {
		if p.d.Image.Data != nil {
			t.Errorf("pending image %d holds %d bytes of pixels", i, len(p.d.Image.Data))
		}
		if in[i].Image.Data == nil || p.d.Image.Rows != in[i].Image.Rows {
			t.Errorf("image %d: the caller's image lost its pixels, or the pending one its size", i)
		}
	}
	if err := b.flush(ctx, emit, func(evaluate.PixelResult) {}, fail); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Rows != 2 || got[0].Cols != 3 || got[0].Domain != "picture 1ch 8-bit" || len(got[0].View) != 6 {
		t.Errorf("results %+v", got)
	}
}
