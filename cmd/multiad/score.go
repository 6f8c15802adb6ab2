package main

import (
	"context"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	blog "github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/pipelines/scoring"
	"github.com/multiad/multiad/transforms/score"
)

func init() {
	register("score", "score images with a model bundle in a Beam pipeline (Prism locally, or Dataflow)", runScore)
}

// Batch sizes used when --batch-size is not given. On CPU, batches of 8
// scored the tiles 22% faster than single images under Prism (inference of
// one batch overlaps the decoding of the next; bench/BENCHMARKS.md), and a
// GPU needs batches to be busy.
const (
	cpuBatchSize  = 8
	cudaBatchSize = 16
)

// workerImageEnv names the environment variable that supplies a default
// --sdk_container_image for Dataflow. The Flex Template image sets it to
// its own name, so that the launcher and the workers run the same image.
const workerImageEnv = "MULTIAD_WORKER_IMAGE"

// scoreFlags are the user-facing flags of `multiad score`: the pipeline's
// (scoring.RegisterFlags) and the ones the command adds.
type scoreFlags struct {
	opt *scoring.Options
	// gpu is the Dataflow worker accelerator (--gpu).
	gpu *string
	// gpuMemLimit is --gpu-mem-limit, a byte count with an optional unit,
	// parsed into Options.GPUMemLimit.
	gpuMemLimit *string
	// logLevel is --log-level ("": warn on local runners, info otherwise).
	logLevel *string
}

// registerScoreFlags registers every user-facing score flag on fs. The
// Beam runner flags are not among them: they live on flag.CommandLine.
func registerScoreFlags(fs *flag.FlagSet) *scoreFlags {
	f := &scoreFlags{opt: scoring.RegisterFlags(fs)}
	// The command picks the batch size from the device (prepareScore).
	if b := fs.Lookup("batch-size"); b != nil {
		b.Usage = fmt.Sprintf("images per model call (default %d on CPU, %d with --device=cuda or --gpu; the last images of a run go in smaller calls, shared by the --in-flight slots)", cpuBatchSize, cudaBatchSize)
		b.DefValue = "0" // zero: PrintDefaults shows no "(default 8)"
	}
	f.gpu = fs.String("gpu", "", "Dataflow: GPUs for each worker, added to --dataflow_service_options as worker_accelerator: "+
		"\"type:nvidia-tesla-t4;count:1;install-nvidia-driver\", or just a GPU type (count 1, driver installed); implies --device=cuda")
	f.gpuMemLimit = fs.String("gpu-mem-limit", "", "bound on ONNX Runtime's CUDA memory arena per worker process: bytes or 512MiB, 4GiB, 8GB; empty: no bound")
	f.logLevel = logLevelFlag(fs, "warn on Prism, info on Dataflow")
	return f
}

// scoreHelp is the help of `multiad score`: its own flags in groups, then
// a pointer to Beam's runner flags (listed by --help-beam).
var scoreHelp = &help{
	name:     "score",
	own:      isScoreFlag,
	synopsis: "multiad score --model BUNDLE --input IN --output OUT [flags] [Beam flags]",
	about: `Scores every image, slice and frame of IN with the model bundle and writes
scores.jsonl, failures.jsonl, studies.jsonl, heatmaps/, summary.json and report.html
into OUT. Runs on Prism (in process) unless --runner says otherwise. Before the
pipeline starts it checks the ONNX Runtime library (local runs), the bundle and OUT,
and stops with one line if one is not usable. An OUT holding an earlier run's
outputs is refused unless --overwrite (runs with --state write OUT/runs/<time>/).
Exit status: 0 done, 1 failed, 2 bad flags or a failed check, 3 more failed images
than --max-failures (the outputs were still written).`,
	groups: []flagGroup{
		{"what to score and where", []string{"model", "input", "output", "overwrite", "state"}},
		{"scoring", []string{"device", "batch-size", "threads", "max-failures", "group-by", "study-score"}},
		{"outputs", []string{"heatmaps", "gallery", "include-phi", "hash-uids", "uid-salt", "dicom-out", "dicomweb-token"}},
		{"Dataflow workers", []string{"gpu", "gpu-mem-limit"}},
		{"logging", []string{"log-level"}},
	},
	after: `Beam and runner flags (--runner, --project, --region, --temp_location, --staging_location,
--sdk_container_image, --worker_binary, --dry_run, ...): run "multiad score --help-beam".
For Dataflow:
  --runner=dataflow --project P --region R --staging_location gs://B/staging
  --temp_location gs://B/tmp --sdk_container_image IMAGE [--gpu ...] [--dry_run]
Without --worker_binary, Dataflow workers run this binary (it must be linux/amd64).`,
	examples: []string{
		"multiad score --model tiles.bundle --input ../shared/data/industrial/magnetic_tile/test --output out/",
		"multiad score --model m.bundle --input 'scans/*.dcm' --output out/ --overwrite --heatmaps all --log-level info",
		"multiad score --model gs://b/m.tar --input gs://b/archive/ --output gs://b/runs --state gs://b/ledger.jsonl \\\n" +
			"      --runner=dataflow --project P --region us-central1 --temp_location gs://b/tmp --gpu nvidia-l4",
	},
}

// scoreFlagNames are the flags registerScoreFlags adds; the others on
// flag.CommandLine are Beam's.
var scoreFlagNames = func() map[string]bool {
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	registerScoreFlags(fs)
	m := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { m[f.Name] = true })
	return m
}()

func isScoreFlag(name string) bool { return scoreFlagNames[name] }

// printBeamFlags lists the Beam and runner flags registered on fs.
func printBeamFlags(fs *flag.FlagSet) {
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if !isScoreFlag(f.Name) {
			names = append(names, f.Name)
		}
	})
	fmt.Printf("Beam and runner flags of multiad score (%d; see https://beam.apache.org/documentation/runners/):\n", len(names))
	printFlags(os.Stdout, fs, names)
}

func runScore(ctx context.Context, args []string) int {
	// Beam's runner flags are registered on flag.CommandLine, so the score
	// flags join them there and one Parse sees both.
	fs := flag.CommandLine
	fs.Init("multiad score", flag.ContinueOnError)
	sf := registerScoreFlags(fs)
	for _, a := range args {
		if a == "--help-beam" || a == "-help-beam" {
			printBeamFlags(fs)
			return 0
		}
	}
	if code, ok := parseArgs(fs, scoreHelp, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError("score", fmt.Sprintf("unexpected arguments %q (every input is given with --input)", fs.Args()))
	}
	if msg := missingFlags(fs, "model", "input", "output"); msg != "" {
		return usageError("score", msg)
	}
	exe, _ := os.Executable()
	plan, err := prepareScore(fs, sf, exe, os.Getenv(workerImageEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "multiad score:", err)
		return 2
	}
	if err := sf.opt.Validate(); err != nil {
		return usageError("score", strings.TrimPrefix(err.Error(), "score: "))
	}
	// The session builds while the preflight runs. Until beam.Init sets up
	// Beam's log handler, its lines (the model load, the session's device)
	// go through log/slog's default handler: at the run's level, as after.
	var level slog.Level
	if level.UnmarshalText([]byte(plan.logLevel)) == nil {
		slog.SetLogLoggerLevel(level)
	}
	scoring.Preload(ctx, *sf.opt)
	// Preflight: the checks that would otherwise fail inside the
	// pipeline, after Beam's plan dump.
	if plan.local {
		if err := checkORT(); err != nil {
			fmt.Fprintln(os.Stderr, "multiad score:", err)
			return 2
		}
	}
	if err := scoring.Check(ctx, *sf.opt); err != nil {
		fmt.Fprintln(os.Stderr, "multiad", preflightMessage(err, sf.opt))
		return 2
	}
	for _, note := range plan.notes {
		log.Print("multiad: ", note)
	}
	// Beam's logging (Prism's included) starts at beam.Init, at this level.
	blog.LogLevel = plan.logLevel
	beam.Init()

	if plan.submitOnly {
		// The job is printed (--dry_run), saved (--template_location) or
		// left running (--async): there is no finished run to summarize,
		// so build the pipeline without Run's staging, summary and commit.
		p, s := beam.NewPipelineWithRoot()
		if err := scoring.Build(s, *sf.opt); err != nil {
			fmt.Fprintln(os.Stderr, "multiad:", err)
			return 1
		}
		if err := beamx.Run(ctx, p); err != nil {
			fmt.Fprintln(os.Stderr, "multiad: score:", err)
			return 1
		}
		log.Printf("multiad: %s: no results to summarize here", plan.submitReason)
		return 0
	}
	if plan.local {
		// Prism's workers run in this process, and its log lines are off
		// by default: say how far the run is.
		stop := reportProgress(os.Stderr, score.ProgressEvery, score.Progress)
		defer stop()
	}
	sum, err := scoring.Run(ctx, *sf.opt)
	if sum != nil {
		fmt.Printf("multiad score: %d images scored, %d failed; wrote %s\n", sum.Scored, sum.Failed, sum.Output)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "multiad:", err)
		if errors.Is(err, scoring.ErrTooManyFailures) {
			return 3 // the outputs were written
		}
		return 1
	}
	return 0
}

// preflightMessage turns a failed scoring.Check into one line that says
// what to do.
func preflightMessage(err error, opt *scoring.Options) string {
	var oe *scoring.OutputError
	var be *scoring.BundleError
	switch {
	case errors.As(err, &oe) && errors.Is(err, scoring.ErrEarlierRun):
		return fmt.Sprintf("score: --output %s holds an earlier run's outputs (%s): give --overwrite to replace them, or choose another folder", opt.Output, oe.Found)
	case errors.As(err, &oe):
		return fmt.Sprintf("score: --output %s cannot be written (%v): choose a folder you can write to", opt.Output, oe.Err)
	case errors.As(err, &be):
		return fmt.Sprintf("score: --model: %v (give a bundle written by multiad train)", be.Err)
	}
	return err.Error()
}

// scorePlan is what prepareScore decided.
type scorePlan struct {
	// submitOnly is set when the runner only submits or prints the job.
	submitOnly   bool
	submitReason string
	// notes are log lines about defaults that were filled in.
	notes []string
	// local is set when the runner scores in this process (Prism).
	local bool
	// logLevel is the parsed --log-level.
	logLevel string
}

// prepareScore validates the parsed flags on fs and fills in defaults:
// the batch size for the device, the GPU service option, and for Dataflow
// the worker binary (exe, the running binary) and container image (image,
// from $MULTIAD_WORKER_IMAGE). Beam flags it changes are set on fs.
func prepareScore(fs *flag.FlagSet, sf *scoreFlags, exe, image string) (*scorePlan, error) {
	plan := &scorePlan{}
	opt := sf.opt
	dev, err := ort.ParseDevice(opt.Device)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	get := func(name string) string {
		if f := fs.Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	runner := strings.ToLower(get("runner"))
	dataflow := runner == "dataflow" || runner == "dataflowrunner"
	// A local runner scores in this process, which then needs the ONNX
	// Runtime library.
	plan.local = scoring.LocalRunner(runner)
	// Quiet by default where the run is watched in a terminal (Prism's
	// job and worker lines are INFO); Dataflow's job lines are its progress.
	def := "info"
	if plan.local {
		def = "warn"
	}
	if plan.logLevel, err = parseLogLevel(*sf.logLevel, def); err != nil {
		return nil, err
	}

	if *sf.gpuMemLimit != "" {
		n, err := parseBytes(*sf.gpuMemLimit)
		if err != nil {
			return nil, fmt.Errorf("--gpu-mem-limit: %w", err)
		}
		opt.GPUMemLimit = n
	}

	if *sf.gpu != "" {
		if !dataflow {
			return nil, fmt.Errorf("--gpu attaches GPUs to Dataflow workers (--runner=dataflow); to use a local GPU, pass --device=cuda")
		}
		acc, err := parseAccelerator(*sf.gpu)
		if err != nil {
			return nil, err
		}
		opts := get("dataflow_service_options")
		if strings.Contains(opts, "worker_accelerator=") {
			return nil, fmt.Errorf("--gpu and a worker_accelerator in --dataflow_service_options: give one")
		}
		if opts != "" {
			opts += ","
		}
		if err := fs.Set("dataflow_service_options", opts+"worker_accelerator="+acc); err != nil {
			return nil, err
		}
		if !set["device"] {
			dev = ort.DeviceCUDA
			opt.Device = string(dev)
			plan.notes = append(plan.notes, "--gpu given: scoring with --device=cuda (fails instead of falling back to CPU when CUDA does not load)")
		}
	}

	if !set["batch-size"] {
		opt.BatchSize = cpuBatchSize
		if dev == ort.DeviceCUDA {
			opt.BatchSize = cudaBatchSize
		}
	}

	if dataflow {
		if get("worker_binary") == "" {
			if err := checkWorkerBinary(exe); err != nil {
				return nil, fmt.Errorf("workers on Dataflow need a linux/amd64 multiad built with cgo "+
					"(Beam's own cross-compile uses CGO_ENABLED=0, which cannot build ONNX Runtime bindings): %w; "+
					"build one with GOOS=linux GOARCH=amd64 CGO_ENABLED=1 go build ./cmd/multiad and pass --worker_binary", err)
			}
			if err := fs.Set("worker_binary", exe); err != nil {
				return nil, err
			}
			plan.notes = append(plan.notes, fmt.Sprintf("--worker_binary not given: Dataflow workers will run this binary, %s", exe))
		}
		if get("sdk_container_image") == "" && get("worker_harness_container_image") == "" && get("environment_config") == "" {
			if image == "" {
				plan.notes = append(plan.notes, "warning: no --sdk_container_image: Beam's default worker image has neither libstdc++ nor ONNX Runtime, "+
					"so scoring will fail on the workers; build templates/Dockerfile and pass its image")
			} else {
				if err := fs.Set("sdk_container_image", image); err != nil {
					return nil, err
				}
				plan.notes = append(plan.notes, fmt.Sprintf("--sdk_container_image not given: workers use %s (from $%s)", image, workerImageEnv))
			}
		}
		switch {
		case get("dry_run") == "true":
			plan.submitOnly, plan.submitReason = true, "--dry_run: the job was printed, not submitted"
		case get("template_location") != "":
			plan.submitOnly, plan.submitReason = true, "--template_location: the job was saved, not run"
		case get("async") == "true" || get("execute_async") == "true":
			plan.submitOnly, plan.submitReason = true,
				"--async: the job was submitted; its outputs go straight to --output, without summary.json, report.html or an atomic commit"
		}
	}
	return plan, nil
}

// parseAccelerator checks a --gpu value and returns it in Dataflow's
// worker_accelerator form "type:T;count:N[;install-nvidia-driver...]". A
// bare GPU type means one GPU with the driver installed.
func parseAccelerator(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.ContainsAny(s, ", \t") {
		return "", fmt.Errorf("--gpu %q: no commas or spaces (want type:nvidia-tesla-t4;count:1;install-nvidia-driver)", s)
	}
	if !strings.Contains(s, ":") && !strings.Contains(s, ";") {
		s = "type:" + s + ";count:1;install-nvidia-driver"
	}
	var typ, count string
	for _, part := range strings.Split(s, ";") {
		k, v, _ := strings.Cut(part, ":")
		switch k {
		case "type":
			typ = v
		case "count":
			count = v
		case "":
			return "", fmt.Errorf("--gpu %q: empty item", s)
		}
	}
	if typ == "" {
		return "", fmt.Errorf("--gpu %q: no GPU type (e.g. type:nvidia-tesla-t4 or type:nvidia-l4)", s)
	}
	n, err := strconv.Atoi(count)
	if err != nil || n < 1 {
		return "", fmt.Errorf("--gpu %q: count must be a positive number (e.g. count:1)", s)
	}
	return s, nil
}

// parseBytes parses a byte count: a number, optionally with a unit KB, MB,
// GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%q: want a byte count such as 4294967296, 512MiB or 4GiB", s)
	}
	return int64(f * float64(mult)), nil
}

// checkWorkerBinary reports whether path is a linux/amd64 ELF executable,
// the only kind a Dataflow worker can run.
func checkWorkerBinary(path string) error {
	if path == "" {
		return fmt.Errorf("cannot find the running binary")
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s is not a linux/amd64 executable: %w", path, err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s is a %v %v binary, not linux/amd64", path, f.Class, f.Machine)
	}
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return fmt.Errorf("%s is a %v binary, not linux/amd64", path, f.OSABI)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%s is not an executable (%v)", path, f.Type)
	}
	return nil
}

// reportProgress writes a line to w every interval while the run scores
// (progress gives the counts so far), until the returned stop is called.
func reportProgress(w io.Writer, every time.Duration, progress func() (scored, failed int64, elapsed time.Duration)) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n, f, el := progress()
				if el <= 0 {
					fmt.Fprintln(w, "multiad score: starting (listing and decoding the inputs, loading the model)")
					continue
				}
				fmt.Fprintf(w, "multiad score: %d images scored so far (%.1f/s), %d failed\n", n, float64(n)/el.Seconds(), f)
			}
		}
	}()
	return func() { close(done); <-finished }
}
