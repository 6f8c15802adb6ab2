// Package score is the scoring pipeline behind `multiad score`: read every
// image, slice and frame of an input, score it with a model bundle, evaluate
// against labels and masks where they exist, and write scores.jsonl,
// failures.jsonl, heatmaps, summary.json and report.html, committed
// atomically into the output folder.
//
// Metric groups (summary.json "by_group"): with --group-by COL, a labelled
// image belongs to the group named by its manifest column COL (empty values
// to "(missing)"), so per-patient metrics compare a patient's own slices.
// Without it, an MVTec defect image belongs to its defect type and a good
// image to every defect type: per-defect metrics compare that defect's
// images with all good images, the convention for a single-category
// dataset with several defect types such as the magnetic tiles (for a
// multi-category MVTec set, score each category's folder separately).
// Overall metrics use every labelled image once.
//
// PHI: DICOM patient names, IDs, birth dates and accession numbers stay out
// of every output unless IncludePHI. Manifest columns are the user's own
// and are written as given, except columns named like PHI (name,
// patient_name, birth_date, dob, patient_id, mrn, accession...);
// multiad's own "patient" column is a pseudonymous study ID and is kept.
package score

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/filter"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/transforms/evaluate"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/report"
	tscore "github.com/multiad/multiad/transforms/score"
)

// Options configure a scoring run.
type Options struct {
	// Model is the bundle URI (directory, .tar, local or gs://).
	Model string
	// Input is a glob, directory, manifest CSV or MVTec layout.
	Input string
	// Output is the output folder (local or gs://).
	Output string
	// BatchSize is the number of images per model call.
	BatchSize int
	// Heatmaps is none, anomalous or all.
	Heatmaps string
	// GroupBy is a manifest column to report metrics by (default: the
	// MVTec defect type).
	GroupBy string
	// Device is auto, cpu or cuda; Threads is ONNX Runtime's intra-op
	// thread count per worker process (0: its default).
	Device  string
	Threads int
	// GPUMemLimit bounds ONNX Runtime's CUDA arena per worker process in
	// bytes (0: no bound). It has no flag here: the command parses
	// --gpu-mem-limit with units.
	GPUMemLimit int64
	// MaxFailures is the number ("10") or fraction ("0.05", "5%") of
	// failed images above which Run returns an error; empty: no limit.
	MaxFailures string
	// IncludePHI writes DICOM patient identity and PHI manifest columns.
	IncludePHI bool
	// Gallery is the number of top-scoring images in report.html.
	Gallery int
	// Loader selects a score.Loader registered with score.RegisterLoader
	// ("" loads bundles with model/runtime); for tests.
	Loader string

	// stage is where Build writes (Run's staging folder); empty: Output.
	stage string
}

// RegisterFlags registers the score command's flags on fs and returns the
// Options they fill.
func RegisterFlags(fs *flag.FlagSet) *Options {
	o := &Options{}
	fs.StringVar(&o.Model, "model", "", "model bundle (directory, .tar, local or gs://)")
	fs.StringVar(&o.Input, "input", "", "images: a glob, a directory, a manifest CSV or an MVTec layout (local or gs://)")
	fs.StringVar(&o.Output, "output", "", "output folder (local or gs://)")
	fs.IntVar(&o.BatchSize, "batch-size", 8, "images per model call")
	fs.StringVar(&o.Heatmaps, "heatmaps", report.HeatmapsAnomalous, "heatmap overlays to write: none, anomalous or all")
	fs.StringVar(&o.GroupBy, "group-by", "", "manifest column to report metrics by (default: MVTec defect type)")
	fs.StringVar(&o.Device, "device", "auto", "where to run the model: auto, cpu or cuda")
	fs.IntVar(&o.Threads, "threads", 0, "ONNX Runtime intra-op threads per worker (0: default)")
	fs.StringVar(&o.MaxFailures, "max-failures", "", "fail the run when more images fail: a count (10) or a fraction (0.05 or 5%); empty: no limit")
	fs.BoolVar(&o.IncludePHI, "include-phi", false, "write patient identity (DICOM names, birth dates, IDs) into the outputs")
	fs.IntVar(&o.Gallery, "gallery", 12, "top-scoring images shown in report.html")
	return o
}

// Validate checks the options.
func (o *Options) Validate() error {
	var missing []string
	for _, f := range []struct{ name, v string }{{"--model", o.Model}, {"--input", o.Input}, {"--output", o.Output}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("score: missing %s", strings.Join(missing, ", "))
	}
	if o.BatchSize < 0 {
		return fmt.Errorf("score: --batch-size %d must be positive", o.BatchSize)
	}
	if _, err := report.ParseHeatmaps(o.Heatmaps); err != nil {
		return err
	}
	if _, _, err := ParseMaxFailures(o.MaxFailures); err != nil {
		return err
	}
	return nil
}

// ParseMaxFailures parses --max-failures: a count ("10"), a fraction
// ("0.05") or a percentage ("5%"). Empty means no limit (count -1).
func ParseMaxFailures(s string) (count int, fraction float64, err error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return -1, 0, nil
	case strings.HasSuffix(s, "%"):
		f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || f < 0 || f > 100 {
			return 0, 0, fmt.Errorf("score: --max-failures %q: want a count, a fraction in [0,1] or a percentage", s)
		}
		return -1, f / 100, nil
	case !strings.ContainsAny(s, ".eE"):
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, 0, fmt.Errorf("score: --max-failures %q: want a count, a fraction in [0,1] or a percentage", s)
		}
		return n, 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1 {
		return 0, 0, fmt.Errorf("score: --max-failures %q: want a count, a fraction in [0,1] or a percentage", s)
	}
	return -1, f, nil
}

// ErrTooManyFailures is returned (wrapped) by Run when failures exceed
// --max-failures; the outputs are still committed.
var ErrTooManyFailures = errors.New("too many failures")

// CheckFailures applies --max-failures to a finished run's counts.
func CheckFailures(maxFailures string, scored, failed int) error {
	n, f, err := ParseMaxFailures(maxFailures)
	if err != nil {
		return err
	}
	total := scored + failed
	switch {
	case n >= 0 && failed > n:
		return fmt.Errorf("score: %d of %d images failed, more than --max-failures %d: %w", failed, total, n, ErrTooManyFailures)
	case n < 0 && maxFailures != "" && total > 0 && float64(failed) > f*float64(total):
		return fmt.Errorf("score: %d of %d images failed (%.2f%%), more than --max-failures %s: %w",
			failed, total, 100*float64(failed)/float64(total), maxFailures, ErrTooManyFailures)
	}
	return nil
}

func init() {
	register.DoFn3x0[evaluate.PixelResult, func(*string) bool, func(evaluate.PixelResult)](&pixelGroupsFn{})
	register.DoFn3x0[tscore.Result, func(*string) bool, func(evaluate.ImageResult)](&imageResultFn{})
	register.DoFn2x0[tscore.Result, func(string)](&groupFn{})
	register.Emitter1[evaluate.ImageResult]()
	register.Emitter1[string]()
	register.Iter1[string]()
}

// modelInfo is what the driver reads from the bundle manifest.
type modelInfo struct {
	threshold  float64
	lo, hi     float64
	properties map[string]any
}

func loadModelInfo(ctx context.Context, uri string) (*modelInfo, error) {
	b, err := bundle.Load(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("score: %w", err)
	}
	m := b.Manifest
	return &modelInfo{
		threshold: m.Scores.Threshold, lo: m.Scores.PixelMin, hi: m.Scores.PixelMax,
		properties: map[string]any{
			"uri": uri, "multiad_version": m.Version, "size": m.Preprocess.Size, "preprocess": m.Preprocess,
			"teacher": m.Teacher.Name, "model_sha256": m.ModelSHA256, "trained_at": m.Trained,
			"score_quantile": m.Scores.Quantile, "pixel_threshold": m.Scores.PixelThreshold,
		},
	}, nil
}

// Build adds the scoring pipeline to s. It reads the bundle's manifest
// (threshold, display range) at construction time.
func Build(s beam.Scope, opt Options) error {
	if err := opt.Validate(); err != nil {
		return err
	}
	info, err := loadModelInfo(context.Background(), opt.Model)
	if err != nil {
		return err
	}
	build(s, opt, info)
	return nil
}

func build(s beam.Scope, opt Options, info *modelInfo) {
	dir := opt.stage
	if dir == "" {
		dir = opt.Output
	}
	heatmaps, _ := report.ParseHeatmaps(opt.Heatmaps)
	in := read.ReadImages(s, opt.Input, read.Options{})
	results, pix, scoreFailures := tscore.Score(s, in.Images, tscore.Options{
		Bundle: opt.Model, BatchSize: opt.BatchSize, Device: opt.Device, Threads: opt.Threads, GPUMemLimit: opt.GPUMemLimit,
		KeepMaps: true, KeepIdentity: opt.IncludePHI, GroupBy: opt.GroupBy, Loader: opt.Loader,
	})
	failures := beam.Flatten(s, in.Failures, scoreFailures)

	groups := filter.Distinct(s, beam.ParDo(s, &groupFn{GroupBy: opt.GroupBy}, results))
	images := beam.ParDo(s, &imageResultFn{GroupBy: opt.GroupBy}, results, beam.SideInput{Input: groups})
	pix = beam.ParDo(s, &pixelGroupsFn{}, pix, beam.SideInput{Input: groups})
	rep := evaluate.Evaluate(s, images, pix)

	report.Write(s, results, failures, in.Inputs, rep, report.Options{
		Dir: dir, Heatmaps: heatmaps, IncludePHI: opt.IncludePHI, MapLo: info.lo, MapHi: info.hi, Gallery: opt.Gallery,
	})
}

// groupFn emits the metric groups of a result.
type groupFn struct{ GroupBy string }

func (f *groupFn) ProcessElement(r tscore.Result, emit func(string)) {
	for _, g := range tscore.GroupsOf(r.Item, f.GroupBy) {
		emit(g)
	}
}

// groupsOrAll returns groups, or every group when an item has none (an
// MVTec good image is a normal reference for every defect type).
func groupsOrAll(groups []string, all func(*string) bool) []string {
	if len(groups) > 0 {
		return groups
	}
	var out []string
	var g string
	for all(&g) {
		out = append(out, g)
	}
	return out
}

// imageResultFn turns labelled results into evaluate.ImageResults.
type imageResultFn struct{ GroupBy string }

func (f *imageResultFn) ProcessElement(r tscore.Result, all func(*string) bool, emit func(evaluate.ImageResult)) {
	if r.Item.Label < 0 {
		return
	}
	emit(evaluate.ImageResult{Groups: groupsOrAll(tscore.GroupsOf(r.Item, f.GroupBy), all), Label: r.Item.Label, Score: r.Score})
}

// pixelGroupsFn fills the groups of pixel results of ungrouped items.
type pixelGroupsFn struct{}

func (f *pixelGroupsFn) ProcessElement(p evaluate.PixelResult, all func(*string) bool, emit func(evaluate.PixelResult)) {
	p.Groups = groupsOrAll(p.Groups, all)
	emit(p)
}

// checkLocalInput fails early, with a short message, when a local input
// (not a glob) does not exist; the pipeline would fail later with Beam's
// long error chain. Remote inputs are checked by the pipeline.
func checkLocalInput(input string) error {
	if storage.IsRemote(input) || strings.ContainsAny(input, "*?[") {
		return nil
	}
	if _, err := os.Stat(strings.TrimPrefix(input, "file://")); err != nil {
		return fmt.Errorf("score: --input: %w", err)
	}
	return nil
}

// Summary is the run's summary.json.
type Summary = report.Summary

// Run builds the pipeline, runs it (Prism unless --runner says otherwise),
// writes the summary and report, and commits every output atomically into
// opt.Output. It returns an error wrapping ErrTooManyFailures when failures
// exceed opt.MaxFailures (after committing the outputs).
func Run(ctx context.Context, opt Options) (*Summary, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if err := checkLocalInput(opt.Input); err != nil {
		return nil, err
	}
	info, err := loadModelInfo(ctx, opt.Model)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	rand.Read(id)
	opt.stage = storage.Join(opt.Output, ".tmp-"+time.Now().UTC().Format("20060102T150405")+"-"+hex.EncodeToString(id))
	p, s := beam.NewPipelineWithRoot()
	build(s, opt, info)

	start := time.Now()
	log.Printf("multiad: scoring %s with %s into %s", opt.Input, opt.Model, opt.Output)
	if err := beamx.Run(ctx, p); err != nil {
		report.Discard(ctx, opt.stage)
		return nil, fmt.Errorf("score: pipeline failed: %w", err)
	}
	heatmaps, _ := report.ParseHeatmaps(opt.Heatmaps)
	sum, err := report.Finish(ctx, opt.stage, report.RunInfo{
		Input: opt.Input, Output: opt.Output, Threshold: info.threshold, Model: info.properties,
		Heatmaps: heatmaps, GroupBy: opt.GroupBy, Started: start, Elapsed: time.Since(start),
	})
	if err != nil {
		report.Discard(ctx, opt.stage)
		return nil, err
	}
	if err := report.Commit(ctx, opt.stage, opt.Output); err != nil {
		return nil, err
	}
	log.Printf("multiad: %d inputs: %d images scored, %d failed in %.1f s (%.1f images/s); wrote %s",
		sum.Inputs, sum.Scored, sum.Failed, sum.Throughput.Seconds, sum.Throughput.ImagesPerSecond, opt.Output)
	if err := CheckFailures(opt.MaxFailures, sum.Scored, sum.Failed); err != nil {
		return sum, err
	}
	return sum, nil
}
