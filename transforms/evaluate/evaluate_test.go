package evaluate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/multiad/multiad/internal/golden"
	"github.com/multiad/multiad/metrics"
)

func TestMain(m *testing.M) { ptest.Main(m) }

func loadGolden(t *testing.T) golden.Metrics { return golden.LoadMetrics(t) }

// goldenInputs returns the golden binary cases as ImageResults (group =
// case name) and the first AU-PRO case's maps as PixelResults in group
// "pixels", half of them also in group "even".
func goldenInputs(t *testing.T, g golden.Metrics) ([]ImageResult, []PixelResult) {
	var images []ImageResult
	for _, c := range g.BinaryCases {
		for i := range c.Labels {
			images = append(images, ImageResult{Groups: []string{c.Name}, Label: c.Labels[i], Score: c.Scores[i]})
		}
	}
	var pixels []PixelResult
	c := g.AUPROCases[0]
	for i, m := range c.Maps {
		p := PixelResult{Groups: []string{"pixels"}, Rows: len(m), Cols: len(m[0])}
		if i%2 == 0 {
			p.Groups = append(p.Groups, "even", "pixels") // a repeated group counts once
		}
		for r := range m {
			for col := range m[r] {
				p.Map = append(p.Map, float32(m[r][col]))
				p.Mask = append(p.Mask, c.Masks[i][r][col])
			}
		}
		pixels = append(pixels, p)
	}
	return images, pixels
}

// want is an expected metric of a group with its tolerance.
type want struct {
	Group, Metric string
	Value, Tol    float64
	Nil           bool // the metric must be nil
}

// check compares m's metric with w.
func (w want) check(m Metrics, ok bool) error {
	if !ok {
		return fmt.Errorf("group %q missing", w.Group)
	}
	var got *float64
	switch w.Metric {
	case "count":
		v := float64(m.Count)
		got = &v
	case "positives":
		v := float64(m.Positives)
		got = &v
	case "auroc":
		got = m.ImageAUROC
	case "ap":
		got = m.ImageAP
	case "f1":
		got = m.ImageF1Max
	case "f1threshold":
		got = m.ImageF1Threshold
	case "pixelauroc":
		got = m.PixelAUROC
	case "aupro":
		got = m.AUPRO
	default:
		return fmt.Errorf("unknown metric %q", w.Metric)
	}
	if w.Nil {
		if got != nil {
			return fmt.Errorf("group %q %s = %v, want nil", w.Group, w.Metric, *got)
		}
		return nil
	}
	if got == nil || math.Abs(*got-w.Value) > w.Tol {
		v := "nil"
		if got != nil {
			v = fmt.Sprint(*got)
		}
		return fmt.Errorf("group %q %s = %s, want %v ± %g", w.Group, w.Metric, v, w.Value, w.Tol)
	}
	return nil
}

// checkReportFn fails the pipeline unless the Report matches Want.
type checkReportFn struct {
	Want []want
}

func (f *checkReportFn) ProcessElement(r Report) error {
	for _, w := range f.Want {
		m, ok := r.ByGroup[w.Group]
		if w.Group == "" {
			m, ok = r.Overall, true
		}
		if err := w.check(m, ok); err != nil {
			return err
		}
	}
	return nil
}

func init() {
	register.DoFn1x1[Report, error](&checkReportFn{})
}

// expectations returns the golden values for every group, and exact
// metrics-package values (themselves checked against scikit-learn) for
// the groups the golden file does not cover.
func expectations(t *testing.T, g golden.Metrics, images []ImageResult, pixels []PixelResult) []want {
	var ws []want
	for _, c := range g.BinaryCases {
		pos := 0
		for _, l := range c.Labels {
			pos += l
		}
		ws = append(ws,
			want{Group: c.Name, Metric: "count", Value: float64(len(c.Labels)), Tol: 0},
			want{Group: c.Name, Metric: "positives", Value: float64(pos), Tol: 0},
			want{Group: c.Name, Metric: "auroc", Value: c.AUROC, Tol: 1e-9},
			want{Group: c.Name, Metric: "ap", Value: c.AveragePrecision, Tol: 1e-9},
			want{Group: c.Name, Metric: "f1", Value: c.F1Max, Tol: 1e-9},
			want{Group: c.Name, Metric: "f1threshold", Value: c.F1MaxThreshold, Tol: 1e-9},
			want{Group: c.Name, Metric: "pixelauroc", Nil: true},
			want{Group: c.Name, Metric: "aupro", Nil: true},
		)
	}
	var labels []int
	var scores []float64
	for _, r := range images {
		labels, scores = append(labels, r.Label), append(scores, r.Score)
	}
	auc, err := metrics.AUROC(labels, scores)
	if err != nil {
		t.Fatal(err)
	}
	ap, _ := metrics.AveragePrecision(labels, scores)
	f1, thr, _ := metrics.F1Max(labels, scores)
	ws = append(ws, want{Group: "", Metric: "count", Value: float64(len(labels)), Tol: 0}, want{Group: "", Metric: "auroc", Value: auc, Tol: 1e-12},
		want{Group: "", Metric: "ap", Value: ap, Tol: 1e-12}, want{Group: "", Metric: "f1", Value: f1, Tol: 1e-12}, want{Group: "", Metric: "f1threshold", Value: thr, Tol: 0})

	c := g.AUPROCases[0]
	for _, group := range []string{"", "pixels"} {
		ws = append(ws, want{Group: group, Metric: "pixelauroc", Value: c.PixelAUROC, Tol: 1e-4}, want{Group: group, Metric: "aupro", Value: c.AUPRO, Tol: 1e-4})
	}
	var even []metrics.Map
	for i, p := range pixels {
		if i%2 == 0 {
			even = append(even, pixelMap(p))
		}
	}
	eauc, err := metrics.PixelAUROC(even)
	if err != nil {
		t.Fatal(err)
	}
	epro, err := metrics.AUPRO(even, metrics.PROLimit)
	if err != nil {
		t.Fatal(err)
	}
	ws = append(ws, want{Group: "even", Metric: "pixelauroc", Value: eauc, Tol: 1e-4}, want{Group: "even", Metric: "aupro", Value: epro, Tol: 1e-4},
		want{Group: "even", Metric: "count", Value: 0, Tol: 0}, want{Group: "even", Metric: "auroc", Nil: true})
	return ws
}

// createInBundles creates a PCollection from elems in parts separate
// Creates, flattened and reshuffled, so that the combines see several
// bundles and merge encoded accumulators.
func createInBundles[T any](s beam.Scope, elems []T, parts int) beam.PCollection {
	var cols []beam.PCollection
	for p := range parts {
		var part []T
		for i := p; i < len(elems); i += parts {
			part = append(part, elems[i])
		}
		cols = append(cols, beam.CreateList(s, part))
	}
	return beam.Reshuffle(s, beam.Flatten(s, cols...))
}

func TestEvaluatePipelineGolden(t *testing.T) {
	g := loadGolden(t)
	images, pixels := goldenInputs(t, g)
	p, s := beam.NewPipelineWithRoot()
	report := Evaluate(s, createInBundles(s, images, 7), createInBundles(s, pixels, 3))
	passert.Count(s, report, "reports", 1)
	beam.ParDo0(s, &checkReportFn{Want: expectations(t, g, images, pixels)}, report)
	ptest.RunAndValidate(t, p)
}

func TestEvaluatePipelineNoPixels(t *testing.T) {
	g := loadGolden(t)
	images, _ := goldenInputs(t, g)
	c := g.BinaryCases[0]
	p, s := beam.NewPipelineWithRoot()
	report := Evaluate(s, beam.CreateList(s, images), beam.CreateList(s, []PixelResult{}))
	passert.Count(s, report, "reports", 1)
	beam.ParDo0(s, &checkReportFn{Want: []want{
		{Group: c.Name, Metric: "auroc", Value: c.AUROC, Tol: 1e-9},
		{Group: "", Metric: "pixelauroc", Nil: true},
		{Group: "", Metric: "aupro", Nil: true},
	}}, report)
	ptest.RunAndValidate(t, p)
}

func TestEvaluatePipelineEmpty(t *testing.T) {
	p, s := beam.NewPipelineWithRoot()
	report := Evaluate(s, beam.CreateList(s, []ImageResult{}), beam.CreateList(s, []PixelResult{}))
	passert.Count(s, report, "reports", 1)
	beam.ParDo0(s, &checkReportFn{Want: []want{
		{Group: "", Metric: "count", Value: 0, Tol: 0},
		{Group: "", Metric: "auroc", Nil: true},
		{Group: "", Metric: "aupro", Nil: true},
	}}, report)
	ptest.RunAndValidate(t, p)
}

func TestEvaluatePipelineBadLabel(t *testing.T) {
	p, s := beam.NewPipelineWithRoot()
	images := beam.CreateList(s, []ImageResult{{Label: 0, Score: 1}, {Label: 2, Score: 1}})
	Evaluate(s, images, beam.CreateList(s, []PixelResult{}))
	if err := ptest.Run(p); err == nil {
		t.Fatal("pipeline with label 2 succeeded")
	}
}

// mergeShuffled adds inputs to parts accumulators in a random order, then
// merges them in a random order into one.
func mergeShuffled[A, I any](r *rand.Rand, inputs []I, parts int, create func() A, add func(A, I) A, merge func(A, A) A) A {
	order := r.Perm(len(inputs))
	accs := make([]A, parts)
	for i := range accs {
		accs[i] = create()
	}
	for _, i := range order {
		k := r.IntN(parts)
		accs[k] = add(accs[k], inputs[i])
	}
	for len(accs) > 1 {
		i, j := r.IntN(len(accs)), r.IntN(len(accs)-1)
		if j >= i {
			j++
		}
		accs[i] = merge(accs[i], accs[j])
		accs = append(accs[:j], accs[j+1:]...)
	}
	return accs[0]
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func equalMetrics(a, b Metrics, tol float64) error {
	if a.Count != b.Count || a.Positives != b.Positives {
		return fmt.Errorf("counts %d/%d vs %d/%d", a.Count, a.Positives, b.Count, b.Positives)
	}
	for _, f := range []struct {
		name string
		x, y *float64
	}{{"auroc", a.ImageAUROC, b.ImageAUROC}, {"ap", a.ImageAP, b.ImageAP}, {"f1", a.ImageF1Max, b.ImageF1Max},
		{"f1threshold", a.ImageF1Threshold, b.ImageF1Threshold}, {"pixelauroc", a.PixelAUROC, b.PixelAUROC}, {"aupro", a.AUPRO, b.AUPRO}} {
		if (f.x == nil) != (f.y == nil) || (f.x != nil && math.Abs(*f.x-*f.y) > tol) {
			return fmt.Errorf("%s differs", f.name)
		}
	}
	return nil
}

// TestCombineFnsMergeOrder calls the CombineFn methods directly with inputs
// spread over shuffled partitions merged in different orders.
func TestCombineFnsMergeOrder(t *testing.T) {
	g := loadGolden(t)
	images, pixels := goldenInputs(t, g)
	r := rand.New(rand.NewPCG(5, 6))

	imgFn := &GroupedImageCombineFn{}
	var first Report
	for trial := range 6 {
		acc := mergeShuffled(r, images, 1+r.IntN(9), imgFn.CreateAccumulator,
			func(a GroupedImages, in ImageResult) GroupedImages {
				return must[GroupedImages](t)(imgFn.AddInput(a, in))
			},
			imgFn.MergeAccumulators)
		rep := must[Report](t)(imgFn.ExtractOutput(acc))
		if trial == 0 {
			first = rep
			continue
		}
		if err := equalReports(rep, first, 1e-12); err != nil {
			t.Errorf("image metrics, trial %d: %v", trial, err)
		}
	}

	pixFn := &PixelCombineFn{}
	c := g.AUPROCases[0]
	for trial := range 6 {
		acc := mergeShuffled(r, pixels, 1+r.IntN(5), func() GroupedPixels { return must[GroupedPixels](t)(pixFn.CreateAccumulator()) },
			func(a GroupedPixels, in PixelResult) GroupedPixels {
				return must[GroupedPixels](t)(pixFn.AddInput(a, in))
			},
			func(a, b GroupedPixels) GroupedPixels {
				// Round-trip b through its coder, as between bundles.
				b = must[GroupedPixels](t)(decodeGroupedPixels(must[[]byte](t)(encodeGroupedPixels(b))))
				return must[GroupedPixels](t)(pixFn.MergeAccumulators(a, b))
			})
		rep := must[Report](t)(pixFn.ExtractOutput(acc))
		if trial == 0 {
			first = rep
			if math.Abs(*rep.Overall.PixelAUROC-c.PixelAUROC) > 1e-4 || math.Abs(*rep.Overall.AUPRO-c.AUPRO) > 1e-4 {
				t.Errorf("pixel AUROC %v AU-PRO %v, golden %v %v", *rep.Overall.PixelAUROC, *rep.Overall.AUPRO, c.PixelAUROC, c.AUPRO)
			}
			continue
		}
		if err := equalReports(rep, first, 1e-12); err != nil {
			t.Errorf("pixel metrics, trial %d: %v", trial, err)
		}
	}
}

// equalReports compares every group of a and b.
func equalReports(a, b Report, tol float64) error {
	if err := equalMetrics(a.Overall, b.Overall, tol); err != nil {
		return fmt.Errorf("overall: %w", err)
	}
	if len(a.ByGroup) != len(b.ByGroup) {
		return fmt.Errorf("%d groups vs %d", len(a.ByGroup), len(b.ByGroup))
	}
	for g, m := range a.ByGroup {
		if err := equalMetrics(m, b.ByGroup[g], tol); err != nil {
			return fmt.Errorf("group %q: %w", g, err)
		}
	}
	return nil
}

// TestAllGroups checks that AllGroups results count in every named group:
// each group's metrics equal those computed on its own results plus the
// AllGroups ones, and the overall group counts each result once.
func TestAllGroups(t *testing.T) {
	g := loadGolden(t)
	_, pixels := goldenInputs(t, g)
	r := rand.New(rand.NewPCG(1, 2))
	var images []ImageResult
	var pix []PixelResult
	byGroup := map[string][]ImageResult{}
	pixByGroup := map[string][]metrics.Map{}
	for i, p := range pixels {
		p.Groups = nil
		anomalous := slices.ContainsFunc(p.Mask, func(v uint8) bool { return v != 0 })
		img := ImageResult{Score: r.Float64()}
		if anomalous {
			grp := []string{"a", "b"}[i%2]
			p.Groups, img.Groups, img.Label = []string{grp}, []string{grp}, 1
			img.Score += 0.5
			byGroup[grp] = append(byGroup[grp], img)
			pixByGroup[grp] = append(pixByGroup[grp], pixelMap(p))
		} else {
			p.AllGroups, img.AllGroups = true, true
			for _, grp := range []string{"a", "b"} {
				byGroup[grp] = append(byGroup[grp], img)
				pixByGroup[grp] = append(pixByGroup[grp], pixelMap(p))
			}
		}
		images, pix = append(images, img), append(pix, p)
	}
	if len(byGroup["a"]) == len(pixByGroup["a"]) && len(byGroup["a"]) == 0 {
		t.Fatal("no anomalous golden maps")
	}
	imgFn, pixFn := &GroupedImageCombineFn{}, &PixelCombineFn{}
	ia, pa := imgFn.CreateAccumulator(), must[GroupedPixels](t)(pixFn.CreateAccumulator())
	for i := range images {
		ia = must[GroupedImages](t)(imgFn.AddInput(ia, images[i]))
		pa = must[GroupedPixels](t)(pixFn.AddInput(pa, pix[i]))
	}
	irep, prep := must[Report](t)(imgFn.ExtractOutput(ia)), must[Report](t)(pixFn.ExtractOutput(pa))
	if irep.Overall.Count != len(images) {
		t.Errorf("overall count %d, want %d", irep.Overall.Count, len(images))
	}
	for _, grp := range []string{"a", "b"} {
		var labels []int
		var scores []float64
		for _, im := range byGroup[grp] {
			labels, scores = append(labels, im.Label), append(scores, im.Score)
		}
		m := irep.ByGroup[grp]
		auc := must[float64](t)(metrics.AUROC(labels, scores))
		if m.Count != len(labels) || m.ImageAUROC == nil || math.Abs(*m.ImageAUROC-auc) > 1e-12 {
			t.Errorf("group %s: count %d AUROC %v, want %d %v", grp, m.Count, m.ImageAUROC, len(labels), auc)
		}
		pauc := must[float64](t)(metrics.PixelAUROC(pixByGroup[grp]))
		ppro := must[float64](t)(metrics.AUPRO(pixByGroup[grp], metrics.PROLimit))
		pm := prep.ByGroup[grp]
		if pm.PixelAUROC == nil || pm.AUPRO == nil || math.Abs(*pm.PixelAUROC-pauc) > 1e-4 || math.Abs(*pm.AUPRO-ppro) > 1e-4 {
			t.Errorf("group %s: pixel AUROC %v AU-PRO %v, want %v %v", grp, pm.PixelAUROC, pm.AUPRO, pauc, ppro)
		}
	}
}

// TestPixelResultCoder: a PixelResult comes back equal, its map bit for
// bit in 4 bytes a value, and without a map its map stays nil.
func TestPixelResultCoder(t *testing.T) {
	m := make([]float32, 64*64)
	for i := range m {
		m[i] = float32(math.Cos(float64(i)))
	}
	for _, in := range []PixelResult{{Groups: []string{"crack"}, Rows: 64, Cols: 64, Map: m, Mask: make([]uint8, 64*64)}, {AllGroups: true}} {
		b, err := encodePixelResult(in)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 5*len(in.Map)+400 {
			t.Errorf("%d-value map: %d bytes, want about 5 a pixel (map and mask)", len(in.Map), len(b))
		}
		out, err := decodePixelResult(b)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(out.Groups, in.Groups) || out.AllGroups != in.AllGroups || out.Rows != in.Rows || out.Cols != in.Cols ||
			!slices.Equal(out.Mask, in.Mask) || len(out.Map) != len(in.Map) || (in.Map == nil) != (out.Map == nil) {
			t.Fatalf("round trip: got %+v, want %+v", out, in)
		}
		for i := range in.Map {
			if math.Float32bits(out.Map[i]) != math.Float32bits(in.Map[i]) {
				t.Fatalf("map[%d]: %v, want %v", i, out.Map[i], in.Map[i])
			}
		}
	}
}
