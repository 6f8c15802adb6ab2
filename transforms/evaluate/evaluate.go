// Package evaluate computes anomaly detection metrics over scored images in
// an Apache Beam pipeline: exact image-level AUROC, average precision and
// F1-max, and pixel-level AUROC and MVTec AD AU-PRO through the mergeable
// accumulators of package metrics, overall and per group.
//
// Image metrics keep every (label, score) pair: exact, a few bytes per
// image. Pixel metrics take two passes over the maps: pass 1 combines a
// metrics.Histogram of pixel scores per group (pixel AUROC, and the AU-PRO
// thresholds from its normal pixels); pass 2, with pass 1 as side input,
// accumulates each image's per-region overlap (metrics.PRO) per group.
package evaluate

import (
	"fmt"
	"github.com/multiad/multiad/internal/gobcoder"
	"math"
	"reflect"
	"slices"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/multiad/multiad/transforms/metrics"
)

// ImageResult is one scored image for evaluation.
type ImageResult struct {
	// Groups names the groups the image belongs to besides the implicit
	// overall group, e.g. ["crack"] or ["patient=X"]; empty names are
	// ignored, repeated ones count once.
	Groups []string
	// Label is 1 for an anomalous image, 0 for a normal one.
	Label int
	// Score is the image anomaly score: higher is more anomalous.
	Score float64
}

// PixelResult is one scored image with its ground-truth mask for pixel
// metrics: Map and Mask are row-major with Rows*Cols elements; a mask value
// of 0 marks a normal pixel, any other value an anomalous one.
type PixelResult struct {
	Groups     []string
	Rows, Cols int
	Map        []float32
	Mask       []uint8
}

// Metrics are the metrics of one group. Pointers are nil when not
// computable: the image AUROC needs both classes, AP and F1 need an
// anomalous image, pixel AUROC needs normal and anomalous pixels, AU-PRO
// normal pixels and at least one anomalous region.
type Metrics struct {
	// Count and Positives count the group's images and anomalous images.
	Count, Positives int
	ImageAUROC       *float64
	ImageAP          *float64
	ImageF1Max       *float64
	// ImageF1Threshold is the score threshold (anomalous when score >= it)
	// that attains ImageF1Max.
	ImageF1Threshold *float64
	PixelAUROC       *float64
	// AUPRO is the MVTec AD area under the per-region overlap curve up to
	// a false positive rate of Options.FPRLimit (0.3 by default),
	// normalised to [0, 1].
	AUPRO *float64
}

// Report holds overall and per-group metrics.
type Report struct {
	Overall Metrics
	// ByGroup holds the metrics of every named group.
	ByGroup map[string]Metrics
}

// Options tune Evaluate. Zero fields take the defaults.
type Options struct {
	// HistogramBits is the resolution of the pixel score histograms (see
	// metrics.Histogram), metrics.DefaultHistogramBits by default: on a
	// 5 M-pixel synthetic case its pixel AUROC and AU-PRO differ from the
	// exact values by < 1e-5; 23 makes them exact at a memory cost of one
	// bin per distinct score.
	HistogramBits int
	// FPRLimit is the AU-PRO false positive rate limit, metrics.PROLimit
	// (0.3) by default.
	FPRLimit float64
}

func init() {
	beam.RegisterType(reflectTypeOf[ImageResult]())
	beam.RegisterType(reflect.TypeOf((*PixelResult)(nil)).Elem())
	beam.RegisterCoder(reflect.TypeOf((*PixelResult)(nil)).Elem(), encodePixelResult, decodePixelResult)
	beam.RegisterType(reflectTypeOf[Metrics]())
	beam.RegisterType(reflectTypeOf[Report]())
	beam.RegisterType(reflectTypeOf[PixelSummary]())
	beam.RegisterType(reflectTypeOf[metrics.PRO]())
	beam.RegisterType(reflectTypeOf[metrics.Histogram]())
	beam.RegisterType(reflectTypeOf[metrics.Thresholds]())
	beam.RegisterType(reflectTypeOf[ImageAccumulator]())

	register.Combiner3[ImageAccumulator, ImageResult, Metrics](&ImageCombineFn{})
	register.Combiner3[metrics.Histogram, PixelResult, PixelSummary](&HistogramCombineFn{})
	register.Combiner1[metrics.PRO](&PROCombineFn{})

	register.DoFn2x0[ImageResult, func(string, ImageResult)](&explodeImagesFn{})
	register.Emitter2[string, ImageResult]()
	register.DoFn2x0[PixelResult, func(string, PixelResult)](&explodePixelsFn{})
	register.Emitter2[string, PixelResult]()
	register.DoFn3x1[PixelResult, func(*string, *PixelSummary) bool, func(string, metrics.PRO), error](&overlapFn{})
	register.Iter2[string, PixelSummary]()
	register.Emitter2[string, metrics.PRO]()
	register.DoFn5x1[[]byte, func(*string, *Metrics) bool, func(*string, *PixelSummary) bool, func(*string, *metrics.PRO) bool, func(Report), error](&reportFn{})
	register.Iter2[string, Metrics]()
	register.Iter2[string, metrics.PRO]()
	register.Emitter1[Report]()
}

// reflectTypeOf returns the reflect.Type of T.
func reflectTypeOf[T any]() reflect.Type { return reflect.TypeOf((*T)(nil)).Elem() }

// Evaluate computes the Report from PCollections of ImageResult and
// PixelResult (pixels may be an empty PCollection). Output: a PCollection
// with exactly one Report.
func Evaluate(s beam.Scope, images, pixels beam.PCollection) beam.PCollection {
	return EvaluateWith(s, images, pixels, Options{})
}

// EvaluateWith is Evaluate with options.
func EvaluateWith(s beam.Scope, images, pixels beam.PCollection, opts Options) beam.PCollection {
	if opts.FPRLimit == 0 {
		opts.FPRLimit = metrics.PROLimit
	}
	s = s.Scope("evaluate.Evaluate")
	byGroup := beam.ParDo(s, &explodeImagesFn{}, images)
	imageMetrics := beam.CombinePerKey(s, &ImageCombineFn{}, byGroup)

	pixelsByGroup := beam.ParDo(s, &explodePixelsFn{}, pixels)
	summaries := beam.CombinePerKey(s, &HistogramCombineFn{Bits: opts.HistogramBits}, pixelsByGroup)
	overlaps := beam.ParDo(s, &overlapFn{}, pixels, beam.SideInput{Input: summaries})
	pros := beam.CombinePerKey(s, &PROCombineFn{}, overlaps)

	return beam.ParDo(s, &reportFn{FPRLimit: opts.FPRLimit}, beam.Impulse(s),
		beam.SideInput{Input: imageMetrics}, beam.SideInput{Input: summaries}, beam.SideInput{Input: pros})
}

// groupsOf returns the overall group "" and the distinct non-empty names
// in groups.
func groupsOf(groups []string) []string {
	out := []string{""}
	for _, g := range groups {
		if g != "" && !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// explodeImagesFn keys an image by the overall group and each of its groups.
type explodeImagesFn struct{}

// ProcessElement emits (group, r) for every group of r.
func (*explodeImagesFn) ProcessElement(r ImageResult, emit func(string, ImageResult)) {
	for _, g := range groupsOf(r.Groups) {
		emit(g, r)
	}
}

// explodePixelsFn keys a pixel result by the overall group and each of its
// groups.
type explodePixelsFn struct{}

// ProcessElement emits (group, r) for every group of r.
func (*explodePixelsFn) ProcessElement(r PixelResult, emit func(string, PixelResult)) {
	for _, g := range groupsOf(r.Groups) {
		emit(g, r)
	}
}

// ImageAccumulator holds the scores of a group's anomalous (Pos) and normal
// (Neg) images.
type ImageAccumulator struct {
	Pos, Neg []float64
}

// ImageCombineFn combines ImageResults into their group's exact image
// metrics (Count, Positives, ImageAUROC, ImageAP, ImageF1Max,
// ImageF1Threshold).
type ImageCombineFn struct{}

// CreateAccumulator returns an empty accumulator.
func (*ImageCombineFn) CreateAccumulator() ImageAccumulator { return ImageAccumulator{} }

// AddInput adds one image; it fails on a label other than 0 or 1 or a NaN
// score.
func (*ImageCombineFn) AddInput(a ImageAccumulator, r ImageResult) (ImageAccumulator, error) {
	if math.IsNaN(r.Score) {
		return a, fmt.Errorf("evaluate: image score is NaN (groups %q)", r.Groups)
	}
	switch r.Label {
	case 0:
		a.Neg = append(a.Neg, r.Score)
	case 1:
		a.Pos = append(a.Pos, r.Score)
	default:
		return a, fmt.Errorf("evaluate: image label %d is not 0 or 1 (groups %q)", r.Label, r.Groups)
	}
	return a, nil
}

// MergeAccumulators returns the union of a and b.
func (*ImageCombineFn) MergeAccumulators(a, b ImageAccumulator) ImageAccumulator {
	a.Pos = append(a.Pos, b.Pos...)
	a.Neg = append(a.Neg, b.Neg...)
	return a
}

// ExtractOutput computes the image metrics. The scores are sorted first, so
// the result does not depend on the order of inputs and merges.
func (*ImageCombineFn) ExtractOutput(a ImageAccumulator) (Metrics, error) {
	m := Metrics{Count: len(a.Pos) + len(a.Neg), Positives: len(a.Pos)}
	if m.Count == 0 {
		return m, nil
	}
	pos, neg := slices.Clone(a.Pos), slices.Clone(a.Neg)
	slices.Sort(pos)
	slices.Sort(neg)
	labels := make([]int, 0, m.Count)
	scores := make([]float64, 0, m.Count)
	for _, s := range neg {
		labels, scores = append(labels, 0), append(scores, s)
	}
	for _, s := range pos {
		labels, scores = append(labels, 1), append(scores, s)
	}
	if m.Positives > 0 && len(neg) > 0 {
		v, err := metrics.AUROC(labels, scores)
		if err != nil {
			return m, fmt.Errorf("evaluate: %w", err)
		}
		m.ImageAUROC = &v
	}
	if m.Positives > 0 {
		ap, err := metrics.AveragePrecision(labels, scores)
		if err != nil {
			return m, fmt.Errorf("evaluate: %w", err)
		}
		f1, thr, err := metrics.F1Max(labels, scores)
		if err != nil {
			return m, fmt.Errorf("evaluate: %w", err)
		}
		m.ImageAP, m.ImageF1Max, m.ImageF1Threshold = &ap, &f1, &thr
	}
	return m, nil
}

// PixelSummary is pass 1 of the pixel metrics for one group: pixel counts,
// pixel AUROC, and the AU-PRO thresholds of pass 2 (nil without normal
// pixels).
type PixelSummary struct {
	Normal, Anomalous int64
	PixelAUROC        *float64
	Thresholds        *metrics.Thresholds
}

// HistogramCombineFn combines PixelResults into a metrics.Histogram of
// Bits mantissa bits (0 means metrics.DefaultHistogramBits) and extracts
// the group's PixelSummary.
type HistogramCombineFn struct {
	Bits int
}

// bits returns the histogram resolution.
func (f *HistogramCombineFn) bits() int {
	if f.Bits == 0 {
		return metrics.DefaultHistogramBits
	}
	return f.Bits
}

// CreateAccumulator returns an empty histogram.
func (f *HistogramCombineFn) CreateAccumulator() (metrics.Histogram, error) {
	h, err := metrics.NewHistogram(f.bits())
	if err != nil {
		return metrics.Histogram{}, fmt.Errorf("evaluate: %w", err)
	}
	return *h, nil
}

// AddInput counts the pixels of r.
func (f *HistogramCombineFn) AddInput(h metrics.Histogram, r PixelResult) (metrics.Histogram, error) {
	if err := h.Add(pixelMap(r)); err != nil {
		return h, fmt.Errorf("evaluate: pixel result (groups %q): %w", r.Groups, err)
	}
	return h, nil
}

// MergeAccumulators adds the counts of b to a.
func (f *HistogramCombineFn) MergeAccumulators(a, b metrics.Histogram) (metrics.Histogram, error) {
	if err := a.Merge(&b); err != nil {
		return a, fmt.Errorf("evaluate: %w", err)
	}
	return a, nil
}

// ExtractOutput computes the pixel AUROC and AU-PRO thresholds.
func (f *HistogramCombineFn) ExtractOutput(h metrics.Histogram) (PixelSummary, error) {
	var s PixelSummary
	s.Normal, s.Anomalous = h.Counts()
	if s.Normal > 0 && s.Anomalous > 0 {
		v, err := h.AUROC()
		if err != nil {
			return s, fmt.Errorf("evaluate: %w", err)
		}
		s.PixelAUROC = &v
	}
	if s.Normal > 0 {
		t, err := h.Thresholds()
		if err != nil {
			return s, fmt.Errorf("evaluate: %w", err)
		}
		s.Thresholds = &t
	}
	return s, nil
}

// pixelMap views r as a metrics.Map.
func pixelMap(r PixelResult) metrics.Map {
	return metrics.Map{Rows: r.Rows, Cols: r.Cols, Scores: r.Map, Mask: r.Mask}
}

// overlapFn is pass 2 of AU-PRO: for every group of a PixelResult whose
// pass-1 summary has thresholds, it emits the image's per-region overlap.
type overlapFn struct{}

// ProcessElement emits (group, PRO of r) for every group of r.
func (*overlapFn) ProcessElement(r PixelResult, summaries func(*string, *PixelSummary) bool, emit func(string, metrics.PRO)) error {
	th := map[string]*metrics.Thresholds{}
	var g string
	var s PixelSummary
	for summaries(&g, &s) {
		th[g] = s.Thresholds
	}
	for _, g := range groupsOf(r.Groups) {
		t := th[g]
		if t == nil {
			continue // no normal pixels in the group: AU-PRO undefined
		}
		var p metrics.PRO
		if err := p.Add(*t, pixelMap(r)); err != nil {
			return fmt.Errorf("evaluate: pixel result (groups %q): %w", r.Groups, err)
		}
		if p.Regions > 0 {
			emit(g, p)
		}
	}
	return nil
}

// PROCombineFn merges per-image metrics.PRO accumulators.
type PROCombineFn struct{}

// MergeAccumulators adds the regions of b to a.
func (*PROCombineFn) MergeAccumulators(a, b metrics.PRO) (metrics.PRO, error) {
	if err := a.Merge(b); err != nil {
		return a, fmt.Errorf("evaluate: %w", err)
	}
	return a, nil
}

// reportFn gathers the per-group results into the Report.
type reportFn struct {
	FPRLimit float64
}

// ProcessElement emits the one Report.
func (f *reportFn) ProcessElement(_ []byte, images func(*string, *Metrics) bool, summaries func(*string, *PixelSummary) bool, pros func(*string, *metrics.PRO) bool, emit func(Report)) error {
	all := map[string]*Metrics{}
	get := func(g string) *Metrics {
		if all[g] == nil {
			all[g] = &Metrics{}
		}
		return all[g]
	}
	var g string
	var m Metrics
	for images(&g, &m) {
		*get(g) = m
		m = Metrics{}
	}
	th := map[string]*metrics.Thresholds{}
	var s PixelSummary
	for summaries(&g, &s) {
		get(g).PixelAUROC = s.PixelAUROC
		th[g] = s.Thresholds
		s = PixelSummary{}
	}
	var p metrics.PRO
	for pros(&g, &p) {
		if t := th[g]; t != nil && p.Regions > 0 {
			v, err := t.AUPRO(p, f.FPRLimit)
			if err != nil {
				return fmt.Errorf("evaluate: group %q: %w", g, err)
			}
			get(g).AUPRO = &v
		}
		p = metrics.PRO{}
	}
	r := Report{Overall: *get(""), ByGroup: map[string]Metrics{}}
	for name, m := range all {
		if name != "" {
			r.ByGroup[name] = *m
		}
	}
	emit(r)
	return nil
}

// PixelResult elements carry large float and byte slices; they travel
// gob-encoded (see internal/gobcoder).
func encodePixelResult(v PixelResult) ([]byte, error) { return gobcoder.Encode(v) }

func decodePixelResult(b []byte) (PixelResult, error) { return gobcoder.Decode[PixelResult](b) }
