// Command scoring measures the images/s of `multiad score` (files on disk
// to reports, on Prism) against a tight loop that feeds pre-decoded,
// pre-resized tensors straight into the same ONNX Runtime session
// (inference.Model.Score) with the same threads and batch size, and against
// the FLOP floor (the model's FLOPs per image over the CPU's measured
// sgemm peak).
//
//	scoring -name tiles -model BUNDLE -input DIR_OR_CSV [-bin bin/multiad] [-runs 5]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	"github.com/multiad/multiad/bench/internal/benchutil"
	"github.com/multiad/multiad/bench/internal/workload"
	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/transforms/read"
	"golang.org/x/sync/errgroup"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "scoring:", err)
		os.Exit(1)
	}
}

type options struct {
	name, model, input, bin, tmp, scoreArgs string
	runs, batch, threads, max               int
	peakN, boundMax                         int
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("scoring", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.name, "name", "tiles", "dataset name used in the bench.* lines")
	fs.StringVar(&o.model, "model", "", "model bundle")
	fs.StringVar(&o.input, "input", "", "input: directory, MVTec layout or manifest CSV")
	fs.StringVar(&o.bin, "bin", "bin/multiad", "multiad binary for the pipeline runs (empty: skip them)")
	fs.StringVar(&o.tmp, "tmp", "", "folder for pipeline outputs (default: a temporary folder)")
	fs.IntVar(&o.runs, "runs", 5, "timed runs of each path")
	fs.IntVar(&o.batch, "batch", 8, "batch size (multiad score's CPU default is 8)")
	fs.IntVar(&o.threads, "threads", 0, "ONNX Runtime intra-op threads of the raw and stages loops, also passed to `multiad score` when set (0: the machine's cores for the loops, and multiad score's own default)")
	fs.IntVar(&o.max, "max", 0, "use at most this many images in the raw loop (0: all; the pipeline always scores the whole input)")
	fs.StringVar(&o.scoreArgs, "score-args", "", "extra `multiad score` flags, space-separated (e.g. \"--threads auto --in-flight 2\"; they override -threads)")
	fs.IntVar(&o.boundMax, "bound-max", 160, "files timed stage by stage for the bound (0: all)")
	fs.IntVar(&o.peakN, "peak-n", 2048, "matrix side of the sgemm peak measurement")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.model == "" || o.input == "" {
		return fmt.Errorf("need -model and -input")
	}
	var threadArgs []string
	if o.threads > 0 {
		threadArgs = []string{"--threads", fmt.Sprint(o.threads)}
	} else {
		o.threads = goruntime.NumCPU()
	}
	if o.tmp == "" {
		d, err := os.MkdirTemp("", "bench-scoring-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.tmp = d
	}
	name := "scoring/" + o.name
	fig := &benchutil.Figures{Name: "scoring." + o.name}

	benchutil.Progress(name, "decoding and preprocessing %s", o.input)
	images, err := workload.Decode(ctx, o.input, o.max)
	if err != nil {
		return err
	}
	m, err := inference.Load(ctx, o.model, ort.Options{IntraOpThreads: o.threads, Device: ort.DeviceCPU})
	if err != nil {
		return err
	}
	defer m.Close()
	tensors := make([][]float32, len(images))
	for i, d := range images {
		if tensors[i], err = m.Preprocess(d.Image); err != nil {
			return fmt.Errorf("%s: %w", d.Item.URI, err)
		}
	}
	n := len(tensors)
	// The bound: every stage's single-thread per-image cost, on a
	// one-thread session, in the same runs.
	m1, err := inference.Load(ctx, o.model, ort.Options{IntraOpThreads: 1, Device: ort.DeviceCPU})
	if err != nil {
		return err
	}
	defer m1.Close()
	files, err := workload.Files(ctx, o.input, 0)
	if err != nil {
		return err
	}
	allFiles := files
	if o.boundMax > 0 && len(files) > o.boundMax { // an even sample across the input's classes
		sample := make([]read.File, o.boundMax)
		for i := range sample {
			sample[i] = files[i*len(files)/o.boundMax]
		}
		files = sample
	}
	var single, loaded bound // alone, and with every core running the loop
	rawOnce := func() (float64, error) {
		secs, err := benchutil.Time(0, 1, func() error {
			for i := 0; i < n; i += o.batch {
				if _, _, err := m.Score(tensors[i:min(i+o.batch, n)]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		return secs[0], nil
	}

	// The floor: FLOPs per image over the measured peak, same threads.
	var tf, sf int64
	shared, serr := benchutil.Shared()
	if serr == nil {
		var tp string
		if tp, serr = workload.TeacherPath(shared, m.Bundle); serr == nil {
			tf, sf, serr = workload.FLOPs(m.Bundle, tp)
		}
	}
	if serr != nil {
		benchutil.Progress(name, "no FLOP count: %v", serr)
	}
	flops := float64(tf + sf)

	// The raw loop, the pipeline (the whole process, files on disk to
	// committed reports) and the sgemm peak take turns within each run, so
	// that a shared machine's drifting load affects them alike.
	var rawSecs, wallSecs, innerSecs, peakRates, stagesRates, stagesCPU, pipelineCPU []float64
	var childCPU float64
	scored := 0
	for r := 0; r < o.runs+1; r++ {
		benchutil.Progress(name, "run %d/%d (the first warms up the loops and the page cache): raw loop over %d images, batch %d, %d threads", r+1, o.runs+1, n, o.batch, o.threads)
		s, err := rawOnce()
		if err != nil {
			return err
		}
		if r > 0 {
			rawSecs = append(rawSecs, s)
		}
		p, err := benchutil.PeakGFLOPS(o.peakN, o.threads, 1)
		if err != nil {
			return err
		}
		if r > 0 {
			peakRates = append(peakRates, p.Median)
		}
		benchutil.Progress(name, "run %d/%d: stages at 1 thread, batch %d (the bound)", r+1, o.runs+1, o.batch)
		st, err := stageCosts(ctx, m1, files, o.batch, filepath.Join(o.tmp, fmt.Sprintf("stages%d", r)), 1)
		if err != nil {
			return err
		}
		benchutil.Progress(name, "run %d/%d: stages at 1 thread on every core at once (the loaded bound)", r+1, o.runs+1)
		lst, err := stageCosts(ctx, m1, files, o.batch, filepath.Join(o.tmp, fmt.Sprintf("loaded%d", r)), goruntime.NumCPU())
		if err != nil {
			return err
		}
		if r > 0 {
			single.add(st)
			loaded.add(lst)
		}
		if r == 0 {
			// The warm-up round ends here: the pipeline's first timed run
			// finds every input file in the page cache, as the loops do.
			for _, f := range allFiles {
				if _, err := storage.ReadFile(ctx, f.URI, 0); err != nil {
					return err
				}
			}
			continue
		}
		benchutil.Progress(name, "run %d/%d: stages at %d threads, batch %d (the pipeline's functions without Beam)", r+1, o.runs+1, o.threads, o.batch)
		c0, t0 := cpuSeconds(), time.Now()
		_, sn, err := workload.Stages(ctx, m, files, o.batch, filepath.Join(o.tmp, fmt.Sprintf("stagesN%d", r)), false)
		if err != nil {
			return err
		}
		if r > 0 && sn > 0 {
			stagesRates = append(stagesRates, float64(sn)/time.Since(t0).Seconds())
			stagesCPU = append(stagesCPU, (cpuSeconds()-c0)/float64(sn))
		}
		if o.bin == "" {
			continue
		}
		out := filepath.Join(o.tmp, fmt.Sprintf("out%d", r))
		benchutil.Progress(name, "run %d/%d: multiad score --input %s", r+1, o.runs+1, o.input)
		secs, err := benchutil.Time(0, 1, func() error {
			cmd := exec.CommandContext(ctx, o.bin, "score", "--model", o.model, "--input", o.input, "--output", out,
				"--batch-size", fmt.Sprint(o.batch), "--device", "cpu")
			cmd.Args = append(append(cmd.Args, threadArgs...), strings.Fields(o.scoreArgs)...)
			logf, err := os.Create(out + ".log")
			if err != nil {
				return err
			}
			defer logf.Close()
			cmd.Stdout, cmd.Stderr = logf, logf
			if err := cmd.Run(); err != nil {
				tail, _ := os.ReadFile(out + ".log")
				if len(tail) > 3000 {
					tail = tail[len(tail)-3000:]
				}
				return fmt.Errorf("%s score: %w\n%s", o.bin, err, tail)
			}
			childCPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
			return nil
		})
		if err != nil {
			return err
		}
		var sum struct {
			Scored     int
			Throughput struct{ Seconds float64 }
		}
		js, err := os.ReadFile(filepath.Join(out, "summary.json"))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(js, &sum); err != nil {
			return fmt.Errorf("%s/summary.json: %w", out, err)
		}
		os.RemoveAll(out)
		if r == 0 {
			continue
		}
		scored = sum.Scored
		if scored > 0 {
			pipelineCPU = append(pipelineCPU, childCPU/float64(scored))
		}
		wallSecs = append(wallSecs, secs[0])
		innerSecs = append(innerSecs, sum.Throughput.Seconds)
	}
	raw := benchutil.Summarize(rawSecs).Rate(float64(n))
	peak := benchutil.Summarize(peakRates)
	bound, loadedRate := benchutil.Summarize(single.rates), benchutil.Summarize(loaded.rates)
	var wall, inner benchutil.Stats
	if o.bin != "" {
		wall = benchutil.Summarize(wallSecs).Rate(float64(scored))
		inner = benchutil.Summarize(innerSecs).Rate(float64(scored))
	}

	fmt.Fprintf(stdout, "### Scoring efficiency: %s (%s)\n\n", o.name, o.input)
	fmt.Fprintf(stdout, "Batch %d, %d timed runs each (median (min–max)); the raw and stages loops use %d intra-op threads.", o.batch, o.runs, o.threads)
	if args := strings.TrimSpace(strings.Join(threadArgs, " ") + " " + o.scoreArgs); args != "" {
		fmt.Fprintf(stdout, " `multiad score` gets %s.", args)
	} else {
		fmt.Fprint(stdout, " `multiad score` runs at its defaults (--threads, --in-flight).")
	}
	fmt.Fprint(stdout, "\n\n")
	t := benchutil.Table{Header: []string{"path", "images", "images/s", "vs raw loop"}}
	t.Add("raw loop: inference.Model.Score on pre-decoded, pre-resized tensors", fmt.Sprint(n), raw.Format("%.1f"), "100%")
	if o.bin != "" {
		t.Add("`multiad score` process wall time (start-up, Prism, decode, reports)", fmt.Sprint(scored), wall.Format("%.1f"),
			fmt.Sprintf("%.0f%%", 100*wall.Median/raw.Median))
		t.Add("`multiad score` pipeline time (summary.json throughput)", fmt.Sprint(scored), inner.Format("%.1f"),
			fmt.Sprintf("%.0f%%", 100*inner.Median/raw.Median))
	}
	if flops > 0 {
		floor := peak.Scale(1e9 / flops)
		t.Add(fmt.Sprintf("FLOP floor: %.3f GFLOP/image ÷ sgemm peak %.1f GFLOP/s", flops/1e9, peak.Median), "", floor.Format("%.1f"),
			fmt.Sprintf("%.0f%%", 100*floor.Median/raw.Median))
	}
	t.Add(fmt.Sprintf("bound: %d cores ÷ Σ single-thread CPU ms per image (%s)", goruntime.NumCPU(), single.costs()), "",
		bound.Format("%.1f"), fmt.Sprintf("%.0f%%", 100*bound.Median/raw.Median))
	t.Add(fmt.Sprintf("loaded bound: the same, each stage timed while all %d cores run the loop at once (%s)", goruntime.NumCPU(), loaded.costs()), "",
		loadedRate.Format("%.1f"), fmt.Sprintf("%.0f%%", 100*loadedRate.Median/raw.Median))
	stages := benchutil.Summarize(stagesRates)
	t.Add(fmt.Sprintf("stages loop: the pipeline's functions in one goroutine, no Beam, %d threads, batch %d", o.threads, o.batch),
		fmt.Sprint(len(files)), stages.Format("%.1f"), fmt.Sprintf("%.0f%%", 100*stages.Median/raw.Median))
	t.Write(stdout)
	boundCPU, loadedCPU := single.cpu(), loaded.cpu()
	fmt.Fprintf(stdout, "Loaded bound: with every core running the single-thread loop at once, an image's stages cost %.1f CPU ms against %.1f "+
		"alone (contention %.2f×). %s The loaded bound, %.1f images/s, is the rate the machine allows with all its cores busy.\n\n",
		1e3*loadedCPU, 1e3*boundCPU, loadedCPU/boundCPU, contentionReading(loadedCPU/boundCPU), loadedRate.Median)
	sCPU, pCPU := benchutil.Summarize(stagesCPU), benchutil.Summarize(pipelineCPU)
	if o.bin != "" {
		more := "more"
		if pCPU.Median < sCPU.Median {
			more = "less"
		}
		fmt.Fprintf(stdout, "CPU per image (user + system, all threads): `multiad score` %.1f ms (the child process, start-up included), "+
			"the stages loop %.1f ms, the bound's single-thread sum %.1f ms. The pipeline spends %.0f%% %s CPU per image than the same "+
			"functions without Beam on two intra-op threads (beam_cpu_share); on a machine whose cores are all busy, CPU per image is what "+
			"sets the throughput.\n\n",
			1e3*pCPU.Median, 1e3*sCPU.Median, 1e3*boundCPU, 100*math.Abs(pCPU.Median/sCPU.Median-1), more)
	}
	if o.bin != "" {
		fmt.Fprintf(stdout, "Against the bound (every stage of every image on one thread, timed by that thread's CPU clock, spread perfectly "+
			"over the cores, each run measured between the raw loop and the pipeline), `multiad score` reaches %.0f%% (wall time) and %.0f%% (pipeline time).\n\n",
			100*wall.Median/bound.Median, 100*inner.Median/bound.Median)
	}
	if flops > 0 {
		fmt.Fprintf(stdout, "Model: teacher %.3f GFLOP + %s head %.3f GFLOP per %d² image (convolutions, dense layers, the bank's nearest-neighbour product). "+
			"Peak: ONNX Runtime MatMul of two %d² float32 matrices, %d threads, %s GFLOP/s. "+
			"The raw loop runs at %.1f GFLOP/s, %.0f%% of that peak.\n\n",
			float64(tf)/1e9, workload.Head(m.Bundle), float64(sf)/1e9, m.Size(), o.peakN, o.threads, peak.Format("%.1f"),
			raw.Median*flops/1e9, 100*raw.Median*flops/1e9/peak.Median)
	}
	if o.bin != "" {
		fmt.Fprintf(stdout, "Reading: `multiad score` runs at %.0f%% of the raw loop, %.0f%% of the bound and %.0f%% of the stages loop here. "+
			"The raw loop only runs ONNX Runtime on tensors that are already decoded and resized; the pipeline, on the same cores, "+
			"also lists and decodes the files, preprocesses, folds every map into the pixel-metric histograms and writes the heatmaps, masks and "+
			"reports, and pays Beam's per-element costs under Prism. The bound and the stages loop do that same per-image work (they call the "+
			"pipeline's functions), so the pipeline's gap to them is Beam's share, start-up, the stages after scoring, and cores left idle where "+
			"the pipeline cannot overlap its work (the loaded bound above says how much of it the cores' contention explains). "+
			"Start-up (process, Prism, model load) is the gap between the wall-time and pipeline-time rows: %.1f s of %.1f s.\n\n",
			100*wall.Median/raw.Median, 100*wall.Median/bound.Median, 100*wall.Median/stages.Median,
			float64(scored)/wall.Median-float64(scored)/inner.Median, float64(scored)/wall.Median)
	}
	if flops > 0 {
		fmt.Fprintf(stdout, "Against the hardware, the raw loop itself reaches %.0f%% of the sgemm peak: at %d² and batch %d the teacher's depthwise "+
			"and 1×1 convolutions (and a student's small ones) are short, memory-bound kernels that ONNX Runtime cannot run at matrix-multiply "+
			"speed; a bank's nearest-neighbour product, a true matrix multiply with a thin inner dimension, runs closest to it.\n\n",
			100*raw.Median*flops/1e9/peak.Median, m.Size(), o.batch)
	}
	fig.Set("raw_images_per_s", raw.Median)
	if o.bin != "" {
		fig.Set("pipeline_images_per_s", wall.Median)
		fig.Set("efficiency", wall.Median/raw.Median)
		fig.Set("efficiency_pipeline_only", inner.Median/raw.Median)
	}
	fig.Set("bound_images_per_s", bound.Median)
	fig.Set("loaded_bound_images_per_s", loadedRate.Median)
	fig.Set("loaded_cpu_ms_per_image", 1e3*loadedCPU)
	fig.Set("contention", loadedCPU/boundCPU)
	fig.Set("stages_images_per_s", stages.Median)
	fig.Set("bound_cpu_ms_per_image", 1e3*boundCPU)
	fig.Set("stages_cpu_ms_per_image", 1e3*sCPU.Median)
	if o.bin != "" {
		fig.Set("efficiency_vs_bound", wall.Median/bound.Median)
		fig.Set("efficiency_vs_loaded_bound", wall.Median/loadedRate.Median)
		fig.Set("pipeline_vs_stages", wall.Median/stages.Median)
		fig.Set("pipeline_cpu_ms_per_image", 1e3*pCPU.Median)
		fig.Set("beam_cpu_share", 1-sCPU.Median/pCPU.Median)
	}
	for i, name := range workload.StageNames {
		fig.Set("t1_"+strings.ReplaceAll(name, "-", "_")+"_ms", 1e3*single.median(i))
	}
	fig.Set("peak_gflops", peak.Median)
	if flops > 0 {
		fig.Set("gflop_per_image", flops/1e9)
		fig.Set("floor_images_per_s", peak.Median*1e9/flops)
		fig.Set("raw_fraction_of_peak", raw.Median*flops/1e9/peak.Median)
	}
	fig.Write(stdout)
	fmt.Fprintln(stdout)
	return nil
}

// contentionReading says what a contention ratio (per-image CPU with
// every core busy ÷ alone) means, within the runs' noise of about ±5%.
func contentionReading(c float64) string {
	switch {
	case c > 1.05:
		return "Per-image CPU rises with every core busy: cores that share caches and memory bandwidth slow each other's " +
			"work (a cost no scheduling of the pipeline avoids, and most visible in memory-bound inference), or the machine's " +
			"own load rose during the loaded runs (then every stage rises alike; compare the two rows)."
	case c < 0.95:
		return "The loaded loop ran faster than the single one: the machine's load changed between the two measurements."
	}
	return "Busy cores do not slow each other's work measurably here, so the pipeline's gap to the bound is not the hardware's."
}

// bound collects, run by run, each stage's CPU seconds per image and the
// rate they allow: the cores ÷ their sum.
type bound struct {
	secs  [][]float64 // per stage, one value per run
	rates []float64
}

// add records one run's per-image stage costs (none: nothing to record).
func (b *bound) add(perImage []float64) {
	if perImage == nil {
		return
	}
	if b.secs == nil {
		b.secs = make([][]float64, len(perImage))
	}
	sum := 0.0
	for i, v := range perImage {
		b.secs[i] = append(b.secs[i], v)
		sum += v
	}
	b.rates = append(b.rates, float64(goruntime.NumCPU())/sum)
}

// median is stage i's median cost per image, in seconds.
func (b *bound) median(i int) float64 {
	if i >= len(b.secs) {
		return 0
	}
	return benchutil.Summarize(b.secs[i]).Median
}

// cpu is the sum of the stages' median costs per image, in seconds.
func (b *bound) cpu() float64 {
	sum := 0.0
	for i := range workload.StageNames {
		sum += b.median(i)
	}
	return sum
}

// costs lists the stages' median costs per image in milliseconds, for the
// table ("decode 2.72 + preprocess 1.74 + …").
func (b *bound) costs() string {
	var c []string
	for i, name := range workload.StageNames {
		c = append(c, fmt.Sprintf("%s %.2f", name, 1e3*b.median(i)))
	}
	return strings.Join(c, " + ")
}

// stageCosts runs workload.Stages on copies goroutines at once, all over
// files on the one-thread model m (whose ONNX Runtime work runs on each
// caller's thread), and returns each stage's thread-CPU seconds per image
// across them; nil when no image was scored. One copy gives the bound's
// costs, one per core the costs with every core busy.
func stageCosts(ctx context.Context, m *inference.Model, files []read.File, batch int, dir string, copies int) ([]float64, error) {
	secs := make([][]float64, copies)
	counts := make([]int, copies)
	var g errgroup.Group
	for c := range copies {
		g.Go(func() error {
			var err error
			secs[c], counts[c], err = workload.Stages(ctx, m, files, batch, filepath.Join(dir, fmt.Sprint(c)), true)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make([]float64, len(workload.StageNames))
	n := 0
	for c := range copies {
		for i, v := range secs[c] {
			out[i] += v
		}
		n += counts[c]
	}
	if n == 0 {
		return nil, nil
	}
	for i := range out {
		out[i] /= float64(n)
	}
	return out, nil
}

// cpuSeconds returns this process's CPU time so far, user and system, all
// threads (ONNX Runtime's included).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
