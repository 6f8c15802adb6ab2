// Package scoring is the scoring pipeline behind `multiad score`: read every
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
// Studies: every run also groups the scored slices into series and
// studies (package study) and writes studies.jsonl, with study-level
// metrics in summary.json where study labels exist. --hash-uids replaces
// the DICOM study and series UIDs in every output by salted hashes.
//
// Incremental runs: with --state LEDGER, only inputs that are new, changed
// or were scored with another model are scored; the run writes into
// OUT/runs/<UTC time>/, updates OUT/latest/ (every input's latest scores,
// studies and a summary of them), and only then records the inputs it
// scored in the ledger (package state).
//
// Output folder: Run refuses a folder that holds an earlier run's
// summary.json or scores.jsonl unless Overwrite (incremental runs write
// runs/<time>/ and need none). Check makes Run's checks before the
// pipeline (options, input, bundle, output folder) for a caller that wants
// to stop early with a typed error (*BundleError, *OutputError).
//
// PHI: DICOM patient names, IDs, birth dates and accession numbers stay out
// of every output unless IncludePHI. Manifest columns are the user's own
// and are written as given, except columns named like PHI (name,
// patient_name, birth_date, dob, patient_id, mrn, accession...);
// multiad's own "patient" column is a pseudonymous study ID and is kept.
package scoring

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	blog "github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/multiad/multiad/io/dicomweb"
	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/transforms/dicomout"
	"github.com/multiad/multiad/transforms/evaluate"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
	"github.com/multiad/multiad/transforms/state"
	"github.com/multiad/multiad/transforms/study"
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
	// Heatmaps is none (also ""), anomalous or all.
	Heatmaps string
	// GroupBy is a manifest column to report metrics by (default: the
	// MVTec defect type).
	GroupBy string
	// Device is auto, cpu or cuda; Threads is ONNX Runtime's intra-op
	// thread count per worker process (0: its default; score.ThreadsAuto:
	// the worker's cores ÷ InFlight); InFlight is the number of batches
	// scored at once (0 or 1: one, overlapped with decoding).
	Device   string
	Threads  int
	InFlight int
	// GPUMemLimit bounds ONNX Runtime's CUDA arena per worker process in
	// bytes (0: no bound). It has no flag here: the command parses
	// --gpu-mem-limit with units.
	GPUMemLimit int64
	// MaxFailures is the number ("10") or fraction ("0.05", "5%") of
	// failed images above which Run returns an error; empty: no limit.
	MaxFailures string
	// IncludePHI writes DICOM patient identity and PHI manifest columns.
	IncludePHI bool
	// Masks writes the predicted mask of each flagged image beside its
	// heatmap (masks/); RawMaps the anomaly map as 16-bit gray (maps/).
	Masks   bool
	RawMaps bool
	// Gallery is the number of top-scoring images in report.html.
	Gallery int
	// StudyScore is how a study's or series' score comes from its slices:
	// "max" (default) or "topk:K", the mean of the K highest.
	StudyScore string
	// HashUIDs replaces DICOM study and series UIDs in the outputs with
	// salted hashes (study.HashUID) of UIDSalt, which it requires.
	HashUIDs bool
	UIDSalt  string
	// DicomOut writes the heatmap overlays of flagged DICOM series as
	// Secondary Capture instances in their source study: a DICOMweb base
	// URI receives them by STOW-RS, a folder (local or gs://) as
	// STUDY/SERIES/SOP.dcm. They carry the patient's identity by design.
	DicomOut string
	// DicomWebToken is the bearer token for DICOMweb input and output
	// (default $MULTIAD_DICOMWEB_TOKEN).
	DicomWebToken string
	// State is the ledger of an incremental run (local or gs://); see the
	// package documentation. Empty: score everything into Output.
	State string
	// Overwrite lets a run replace an earlier run's outputs in Output;
	// without it Run refuses a folder holding summary.json or
	// scores.jsonl. Incremental runs (State) write runs/<time>/ and need
	// no Overwrite.
	Overwrite bool
	// Loader is a score.Loader registered in this process
	// (score.RegisterLoader; benchmarks, tests) that stands in for the
	// model; empty: the bundle's ONNX model. It has no flag.
	Loader string

	// stage is where Build writes (Run's staging folder); empty: Output.
	stage string
	// run names an incremental run (its folder under runs/).
	run string
	// parsed holds the string options above as Validate parsed them.
	parsed parsedOptions
}

// parsedOptions are the Options strings that have a meaning beyond their
// text, parsed once by Validate, which Build, Check and Run call on their
// own copy of the Options before they use these.
type parsedOptions struct {
	// heatmaps is Heatmaps: report.HeatmapsNone, HeatmapsAnomalous or
	// HeatmapsAll.
	heatmaps string
	// studyK is StudyScore's K (study.ParseScore; 1 for max).
	studyK int
	// maxFailures is MaxFailures.
	maxFailures failureLimit
}

// DefaultInFlight is --in-flight's default. With --threads auto (the
// default) two batches in flight run on two single-threaded calls on a
// 2-core worker: on the 256 px bank head that scored the tiles 1.33× faster
// than one batch on two intra-op threads, with 14% less CPU per image, in
// the same session (bench/readings/scoring.md), because ONNX Runtime's two
// threads wait on each other inside every kernel while the pipeline's own
// work shares the cores.
const DefaultInFlight = 2

// uidSaltEnv is the environment variable that supplies --uid-salt when the
// flag is not given (keeping the salt out of shell history and job specs).
const uidSaltEnv = "MULTIAD_UID_SALT"

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
	o.Threads = score.ThreadsAuto
	fs.Var(threadsFlag{&o.Threads}, "threads", "ONNX Runtime intra-op threads per worker: a count (0: ONNX Runtime's default), or auto (the worker's cores ÷ --in-flight)")
	fs.IntVar(&o.InFlight, "in-flight", DefaultInFlight, "batches scored at once while the next is decoded (they share the session; with --threads auto each gets its share of the cores)")
	fs.StringVar(&o.MaxFailures, "max-failures", "", "fail the run when more images fail: a count (10) or a fraction (0.05 or 5%); empty: no limit")
	fs.BoolVar(&o.IncludePHI, "include-phi", false, "write patient identity (DICOM names, birth dates, IDs) into the outputs")
	fs.StringVar(&o.DicomOut, "dicom-out", "", "write heatmap overlays of flagged DICOM series as Secondary Captures in their source study: a DICOMweb URL (dicomweb+http://host:8042/dicom-web; dicomweb://… is https) gets them by STOW-RS, a folder (local or gs://) as STUDY/SERIES/SOP.dcm; they carry patient identity")
	fs.StringVar(&o.DicomWebToken, "dicomweb-token", "", "bearer token for DICOMweb (default $MULTIAD_DICOMWEB_TOKEN; Google Healthcare API: Application Default Credentials)")
	fs.BoolVar(&o.Masks, "masks", true, "write the predicted defect mask (map above the bundle's pixel threshold) of each flagged image into masks/, where heatmaps are written")
	fs.BoolVar(&o.RawMaps, "raw-maps", false, "also write each heatmap's anomaly map as 16-bit gray PNG into maps/ (value/65535 = normalised pixel score)")
	fs.IntVar(&o.Gallery, "gallery", 12, "top-scoring images shown in report.html")
	fs.StringVar(&o.StudyScore, "study-score", "max", "score of a study or series from its slices: max, or topk:K (mean of the K highest)")
	fs.BoolVar(&o.HashUIDs, "hash-uids", false, "write salted hashes of DICOM study and series UIDs instead of the UIDs (needs --uid-salt)")
	fs.StringVar(&o.UIDSalt, "uid-salt", "", "secret salt for --hash-uids (default: $"+uidSaltEnv+")")
	fs.BoolVar(&o.Overwrite, "overwrite", false, "replace the outputs of an earlier run in --output (without it, a folder holding summary.json or scores.jsonl is refused; --state runs need none)")
	fs.StringVar(&o.State, "state", "", "ledger file of an incremental run (local or gs://): score only new or changed inputs (or all after a model change), into OUT/runs/<time>/ and OUT/latest/")
	return o
}

// Validate checks the options, and parses the ones that are more than text
// (Heatmaps, StudyScore, MaxFailures) for Build and Run.
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
	if o.InFlight < 0 {
		return fmt.Errorf("score: --in-flight %d must be positive", o.InFlight)
	}
	if o.BatchSize < 0 {
		return fmt.Errorf("score: --batch-size %d must be positive", o.BatchSize)
	}
	var p parsedOptions
	var err error
	if p.heatmaps, err = report.ParseHeatmaps(o.Heatmaps); err != nil {
		return fmt.Errorf("score: --heatmaps: %w", err)
	}
	if p.maxFailures, err = parseFailureLimit(o.MaxFailures); err != nil {
		return err
	}
	if p.studyK, err = study.ParseScore(o.StudyScore); err != nil {
		return fmt.Errorf("score: --study-score: %w", err)
	}
	if o.DicomOut != "" {
		if err := (dicomout.Options{Target: o.DicomOut}).Validate(); err != nil {
			return err
		}
	}
	if o.HashUIDs && o.salt() == "" {
		return fmt.Errorf("score: --hash-uids needs --uid-salt or $%s", uidSaltEnv)
	}
	if err := state.Validate(o.State); err != nil {
		return fmt.Errorf("score: --state: %w", err)
	}
	o.parsed = p
	return nil
}

// threadsFlag is --threads: a count, or auto (score.ThreadsAuto).
type threadsFlag struct{ p *int }

func (f threadsFlag) String() string {
	if f.p == nil || *f.p == 0 {
		return "0"
	}
	if *f.p == score.ThreadsAuto {
		return "auto"
	}
	return strconv.Itoa(*f.p)
}

func (f threadsFlag) Set(v string) error {
	if v == "auto" {
		*f.p = score.ThreadsAuto
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return fmt.Errorf("want a thread count or auto, got %q", v)
	}
	*f.p = n
	return nil
}

// salt returns the UID salt in effect: --uid-salt, else $MULTIAD_UID_SALT;
// empty without --hash-uids.
func (o *Options) salt() string {
	if !o.HashUIDs {
		return ""
	}
	if o.UIDSalt != "" {
		return o.UIDSalt
	}
	return os.Getenv(uidSaltEnv)
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
	l, err := parseFailureLimit(maxFailures)
	if err != nil {
		return err
	}
	return l.check(scored, failed)
}

// failureLimit is a parsed --max-failures.
type failureLimit struct {
	// count is the number of failures allowed (-1: see fraction).
	count int
	// fraction is the share of failures allowed when count is -1.
	fraction float64
	// text is the option as given ("": no limit).
	text string
}

func parseFailureLimit(s string) (failureLimit, error) {
	n, f, err := ParseMaxFailures(s)
	return failureLimit{count: n, fraction: f, text: s}, err
}

// check applies the limit to a finished run's counts.
func (l failureLimit) check(scored, failed int) error {
	n, f := l.count, l.fraction
	total := scored + failed
	switch {
	case n >= 0 && failed > n:
		return fmt.Errorf("score: %d of %d images failed, more than --max-failures %d: %w", failed, total, n, ErrTooManyFailures)
	case n < 0 && l.text != "" && total > 0 && float64(failed) > f*float64(total):
		return fmt.Errorf("score: %d of %d images failed (%.2f%%), more than --max-failures %s: %w",
			failed, total, 100*float64(failed)/float64(total), l.text, ErrTooManyFailures)
	}
	return nil
}

func init() {
	register.DoFn2x0[score.Result, func(evaluate.ImageResult)](&imageResultFn{})
	register.DoFn2x0[context.Context, read.Failure](&dicomOutFailureFn{})
	register.Emitter1[evaluate.ImageResult]()
	register.Emitter1[string]()
	register.Iter1[string]()
}

// modelInfo is what the driver reads from the bundle manifest.
type modelInfo struct {
	threshold  float64
	lo, hi     float64
	scores     bundle.Scores
	domains    map[string]int
	sha256     string
	properties map[string]any
}

func loadModelInfo(ctx context.Context, uri string) (*modelInfo, error) {
	b, err := bundle.Load(ctx, uri)
	if err != nil {
		return nil, &BundleError{Model: uri, Err: err}
	}
	m := b.Manifest
	return &modelInfo{
		threshold: m.Scores.Threshold, lo: m.Scores.PixelMin, hi: m.Scores.PixelMax, sha256: m.ModelSHA256,
		scores: m.Scores, domains: m.Data.Domains,
		properties: map[string]any{
			"uri": uri, "multiad_version": m.Version, "size": m.Preprocess.Size, "preprocess": m.Preprocess,
			"teacher": m.Teacher.Name, "model_sha256": m.ModelSHA256, "trained_at": m.Trained,
			"score_quantile": m.Scores.Quantile, "pixel_threshold": m.Scores.PixelThreshold,
		},
	}, nil
}

// Build adds the scoring pipeline to s. It validates opt and reads the
// bundle's manifest (threshold, display range) at construction time. It
// refuses --state, whose ledger only Run can update.
func Build(s beam.Scope, opt Options) error {
	if err := opt.Validate(); err != nil {
		return err
	}
	if opt.State != "" {
		return errors.New("score: --state needs Run, which commits the run and then records it in the ledger: it cannot be used when the job is only submitted (--dry_run, --async, --template_location)")
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
	heatmaps := opt.parsed.heatmaps
	files := read.ListFiles(s.Scope("ReadImages"), opt.Input)
	var entries, tally beam.PCollection
	if opt.State != "" {
		files, entries, tally = state.Select(s, files, state.Options{Ledger: opt.State, Model: info.sha256, Run: opt.run})
	}
	// On a local runner one process does all the work: reading each file
	// where it is listed keeps the runner from holding the whole listing.
	in := read.ReadFiles(s.Scope("ReadImages"), files, read.Options{NoReshuffle: LocalRunner(*runners.Runner), Prefetch: prefetch})
	results, pix, scoreFailures := score.Score(s, in.Images, scoreOptions(opt))
	results = study.Identify(s, results, opt.salt())
	if opt.DicomOut != "" {
		_, dfail := dicomout.Write(s, results, dicomout.Options{Target: opt.DicomOut, MapLo: info.lo, MapHi: info.hi,
			ModelVersion: fmt.Sprint(info.properties["multiad_version"]), ModelID: info.sha256})
		// A capture that cannot be written is an output failure, not an
		// input one: it is logged and counted, and the image stays scored.
		beam.ParDo0(s, &dicomOutFailureFn{}, dfail)
	}
	failures := beam.Flatten(s, in.Failures, scoreFailures)
	if opt.State != "" {
		state.WriteEntries(s, entries, failures, tally, dir)
	}
	// GroupParts, not Groups: on Prism a Flatten of the one-image groups
	// of 2-D files would hold one element per image in the runner until
	// the scoring bundle ends (bench/readings/memory.md).
	studies := study.GroupParts(s, results, study.Options{K: opt.parsed.studyK, Threshold: info.threshold, Heatmaps: heatmaps, SkipWritten: true})
	study.Write(s, study.WriteOptions{Dir: dir, Score: opt.StudyScore, Heatmaps: heatmaps, SkipWritten: true,
		Calibration: info.scores, IncludePHI: opt.IncludePHI}, studies...)

	images := beam.ParDo(s, &imageResultFn{GroupBy: opt.GroupBy}, results)
	rep := evaluate.Evaluate(s, images, pix)

	report.Write(s, results, failures, in.Inputs, rep, report.Options{
		Dir: dir, Heatmaps: heatmaps, IncludePHI: opt.IncludePHI, Calibration: info.scores, Masks: opt.Masks, RawMaps: opt.RawMaps,
		Gallery: opt.Gallery,
	})
}

// Preload starts building the session of opt's model in this process, as
// Run does on a local runner, and returns at once. A caller that makes its
// own checks before Run (Check) calls it first, so that the session builds
// while they run; Run then finds it built, or building. It does nothing
// for a runner that scores elsewhere. A model that does not load is
// reported by Check or Run, as without Preload.
func Preload(ctx context.Context, opt Options) {
	if LocalRunner(*runners.Runner) {
		score.Preload(ctx, scoreOptions(opt))
	}
}

// prefetch is how many files scoring decodes ahead (read.Options.Prefetch).
// On a local runner the listing, decoding, preprocessing, emitting and
// writing share one bundle's goroutine; decoding ahead moves decoding off
// it. With the memory benchmark's stand-in scorer, whose scoring costs
// nothing, 1000 tiles went through in 6.5-6.9 s against 7.3-8.7 s without
// (2 interleaved rounds); with the ONNX model on 2 cores, where inference
// keeps both cores busy, it changes nothing measurable.
const prefetch = 2

// scoreOptions are the score.Options of a run.
func scoreOptions(opt Options) score.Options {
	return score.Options{
		Bundle: opt.Model, BatchSize: opt.BatchSize, Device: opt.Device, Threads: opt.Threads, InFlight: opt.InFlight, GPUMemLimit: opt.GPUMemLimit,
		KeepMaps: true, KeepIdentity: opt.IncludePHI || opt.DicomOut != "", GroupBy: opt.GroupBy,
		Loader: opt.Loader,
	}
}

// LocalRunner reports whether Beam's runner named runner (the --runner
// flag, any case; empty is beamx's default, Prism) runs the pipeline in
// this process, on one worker.
func LocalRunner(runner string) bool {
	switch strings.ToLower(runner) {
	case "", "prism", "prismrunner", "direct", "directrunner":
		return true
	}
	return false
}

// dicomOutFailureFn logs Secondary Captures that could not be written.
type dicomOutFailureFn struct{}

var dicomOutFailed = beam.NewCounter("multiad", "dicom_out_failed")

func (f *dicomOutFailureFn) ProcessElement(ctx context.Context, fl read.Failure) {
	dicomOutFailed.Inc(ctx, 1)
	blog.Errorf(ctx, "multiad: --dicom-out: %s[%d]: %s", fl.URI, fl.Index, fl.Error)
}

// imageResultFn turns labelled results into evaluate.ImageResults; an
// item without a group (an MVTec good image) counts in every group.
type imageResultFn struct{ GroupBy string }

func (f *imageResultFn) ProcessElement(r score.Result, emit func(evaluate.ImageResult)) {
	if r.Item.Label < 0 {
		return
	}
	groups := score.GroupsOf(r.Item, f.GroupBy)
	emit(evaluate.ImageResult{Groups: groups, AllGroups: len(groups) == 0, Label: r.Item.Label, Score: r.Score})
}

// checkLocalInput fails early, with a short message, when input's scheme
// is unknown or a local input (not a glob) does not exist; the pipeline
// would fail later with Beam's long error chain. Inputs in other stores
// are checked by the pipeline.
func checkLocalInput(input string) error {
	if err := storage.ValidateScheme(input); err != nil {
		return fmt.Errorf("score: --input: %w", err)
	}
	p, local := storage.LocalPath(input)
	if !local || strings.ContainsAny(input, "*?[") {
		return nil
	}
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("score: --input: %w", err)
	}
	return nil
}

// Summary is the run's summary.json.
type Summary = report.Summary

// crashAt makes Run fail at a point of an incremental run, as if the
// process died there: one of the crash points below, set by tests only
// (export_test.go); empty in production.
var crashAt string

// Crash points of an incremental run (crashAt).
const (
	crashBeforeCommit = "before-commit"
	crashBeforeLatest = "before-latest"
	crashBeforeLedger = "before-ledger"
)

// errCrash is the error of a simulated crash.
var errCrash = errors.New("simulated crash")

// RunsDir and LatestDir are the folders of an incremental run's output:
// runs/<UTC time>/ holds each run's outputs, latest/ the merged view.
const (
	RunsDir   = "runs"
	LatestDir = "latest"
)

// runName names an incremental run's folder: its UTC start time, to the
// millisecond, sortable.
func runName(t time.Time) string { return t.UTC().Format("20060102T150405.000Z") }

// Run builds the pipeline, runs it (Prism unless --runner says otherwise),
// writes the summary and report, and commits every output atomically into
// opt.Output (with --state: into opt.Output/runs/<time>/, then updates
// opt.Output/latest/ and the ledger). It first makes Check's checks: it
// refuses an output folder holding an earlier run unless opt.Overwrite.
// It returns an error wrapping
// ErrTooManyFailures when failures exceed opt.MaxFailures (after
// committing the outputs).
//
// On a local runner Run raises GOMAXPROCS by PrismProcs while the pipeline
// runs (unless the GOMAXPROCS environment variable is set), then sets it
// back.
func Run(ctx context.Context, opt Options) (*Summary, error) {
	// The session builds while the checks run and Prism starts the job.
	Preload(ctx, opt)
	info, err := check(ctx, &opt)
	if err != nil {
		return nil, err
	}
	if opt.DicomWebToken != "" {
		dicomweb.SetToken(opt.DicomWebToken)
	}
	start := time.Now()
	id := make([]byte, 4)
	rand.Read(id)
	out := opt.Output
	if opt.State != "" {
		opt.run = runName(start)
		out = storage.Join(opt.Output, RunsDir, opt.run)
		opt.stage = storage.Join(opt.Output, RunsDir, ".tmp-"+opt.run+"-"+hex.EncodeToString(id))
	} else {
		opt.stage = storage.Join(opt.Output, ".tmp-"+start.UTC().Format("20060102T150405")+"-"+hex.EncodeToString(id))
	}
	local := LocalRunner(*runners.Runner)
	p, s := beam.NewPipelineWithRoot()
	build(s, opt, info)

	log.Printf("multiad: scoring %s with %s into %s", opt.Input, opt.Model, out)
	if err := runPipeline(ctx, p, local); err != nil {
		return nil, discard(ctx, opt.stage, fmt.Errorf("score: pipeline failed: %w", err))
	}
	var inc *report.Incremental
	var entries []state.Entry
	if opt.State != "" {
		if inc, entries, err = readSelection(ctx, opt); err != nil {
			return nil, discard(ctx, opt.stage, err)
		}
	}
	sum, err := report.Finish(ctx, opt.stage, report.RunInfo{
		Input: opt.Input, Output: out, Threshold: info.threshold, Model: info.properties,
		Heatmaps: opt.parsed.heatmaps, GroupBy: opt.GroupBy, Started: start, Elapsed: time.Since(start), Incremental: inc,
		TrainingDomains: info.domains,
	})
	if err != nil {
		return nil, discard(ctx, opt.stage, err)
	}
	if crashAt == crashBeforeCommit {
		return nil, fmt.Errorf("score: %w %s", errCrash, crashAt)
	}
	if err := report.Commit(ctx, opt.stage, out); err != nil {
		return nil, err
	}
	log.Printf("multiad: %d inputs: %d images scored, %d failed in %.1f s (%.1f images/s); wrote %s",
		sum.Inputs, sum.Scored, sum.Failed, sum.Throughput.Seconds, sum.Throughput.ImagesPerSecond, out)
	for _, w := range sum.Warnings {
		log.Printf("multiad: warning: %s", w)
	}
	if opt.State != "" {
		if crashAt == crashBeforeLatest {
			return nil, fmt.Errorf("score: %w %s", errCrash, crashAt)
		}
		if err := updateLatest(ctx, opt, info, sum); err != nil {
			return nil, err
		}
		if crashAt == crashBeforeLedger {
			return nil, fmt.Errorf("score: %w %s", errCrash, crashAt)
		}
		n, err := state.Merge(ctx, opt.State, entries)
		if err != nil {
			return nil, fmt.Errorf("score: outputs written to %s, but the ledger was not updated (the next run scores these inputs again): %w", out, err)
		}
		log.Printf("multiad: incremental run %s: %d listed, %d new, %d changed, %d with a new model, %d unchanged; ledger %s has %d inputs",
			opt.run, inc.Listed, inc.New, inc.Changed, inc.ModelChanged, inc.Unchanged, opt.State, n)
	}
	if err := opt.parsed.maxFailures.check(sum.Scored, sum.Failed); err != nil {
		return sum, err
	}
	return sum, nil
}

// PrismProcs is how many Ps (GOMAXPROCS) Run adds on a local runner, for
// Prism's busy loops. Prism (Beam v2.77.0) polls in a loop that never
// blocks in two places: its element manager, while a stage waits for
// bundles in progress, and each bundle's stage.Execute, from the moment the
// bundle's outputs are all in (at once, for a bundle without outputs,
// such as a pipeline's last steps) until the SDK answers. Each holds a P.
// With GOMAXPROCS at the core count, two such loops hold every P, and the
// SDK's goroutines (the gRPC reads and writes between runner and SDK
// harness, the DoFns) wait for the scheduler's 10 ms preemption at every
// step: a runtime trace of the 116-slice lgg_dicom run showed the
// study step's bundle waiting 65 ms for Prism to answer a
// GetProcessBundleDescriptor call that does one map lookup. With two more
// Ps the kernel shares the cores among the threads instead, and wakes the
// SDK's promptly: the steps after scoring took 0.10 s instead of 0.27 s
// (medians of 6 interleaved runs; bench/BENCHMARKS.md). The added Ps do
// not add work: the pipeline's CPU-bound steps are bounded by their own
// concurrency (score.Options.InFlight), not by GOMAXPROCS.
const PrismProcs = 2

// runPipeline runs p; on a local runner with GOMAXPROCS raised by
// PrismProcs, unless the GOMAXPROCS environment variable sets it.
func runPipeline(ctx context.Context, p *beam.Pipeline, local bool) error {
	if local && os.Getenv("GOMAXPROCS") == "" {
		defer raiseProcs()()
	}
	return beamx.Run(ctx, p)
}

// prismRuns counts the local pipelines running in this process: the first
// raises GOMAXPROCS by PrismProcs, the last sets it back.
var prismRuns struct {
	sync.Mutex
	n, prev int
}

// raiseProcs raises GOMAXPROCS for one more local pipeline and returns
// the function that ends it.
func raiseProcs() (restore func()) {
	prismRuns.Lock()
	defer prismRuns.Unlock()
	if prismRuns.n == 0 {
		prismRuns.prev = runtime.GOMAXPROCS(0)
		runtime.GOMAXPROCS(prismRuns.prev + PrismProcs)
	}
	prismRuns.n++
	return func() {
		prismRuns.Lock()
		defer prismRuns.Unlock()
		if prismRuns.n--; prismRuns.n == 0 {
			runtime.GOMAXPROCS(prismRuns.prev)
		}
	}
}

// discard removes the staging folder of a run that failed with err and
// returns err, with the removal's own failure joined to it.
func discard(ctx context.Context, stage string, err error) error {
	if derr := report.Discard(ctx, stage); derr != nil {
		return errors.Join(err, fmt.Errorf("score: removing staging folder %s: %w", stage, derr))
	}
	return err
}

// readSelection reads what state.Select and state.WriteEntries left in
// the staging folder.
func readSelection(ctx context.Context, opt Options) (*report.Incremental, []state.Entry, error) {
	b, err := storage.ReadFile(ctx, storage.Join(opt.stage, state.TallyFile), 1<<20)
	if err != nil {
		return nil, nil, fmt.Errorf("score: the pipeline left no selection counts: %w", err)
	}
	var t state.Tally
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, nil, fmt.Errorf("score: %s: %w", state.TallyFile, err)
	}
	b, err = storage.ReadFile(ctx, storage.Join(opt.stage, state.EntriesFile), 0)
	if err != nil {
		return nil, nil, fmt.Errorf("score: the pipeline left no ledger entries: %w", err)
	}
	entries, err := state.Parse(state.EntriesFile, b)
	if err != nil {
		return nil, nil, err
	}
	return &report.Incremental{State: opt.State, Run: opt.run, Listed: t.Listed, New: t.New, Changed: t.Changed,
		ModelChanged: t.ModelChanged, Unchanged: t.Unchanged}, entries, nil
}
