// Command stages measures how scoring scales with ONNX Runtime's intra-op
// threads and the batch size, and where its time goes. It runs, in one Go
// process and one goroutine, the functions the scoring pipeline calls for
// each image, timing each stage:
//
//   - decode: a read.Expander (file read, format decode, mask: a mask
//     volume shared by several files is decoded once, as in the pipeline);
//   - preprocess: inference.Model.Preprocess (normalise, resize to S×S);
//   - inference: inference.Model.Score (ONNX Runtime);
//   - post-processing: what the score transform does with a map
//     (score.NewResult: copies, the view at the image's size, the resized
//     mask) and the pixel metrics' accumulator
//     (evaluate.PixelCombineFn.AddInput);
//   - writing: report.WriteImages (the heatmap and predicted mask of
//     anomalous images, at the image's size, at the default --heatmaps
//     anomalous --masks) and the scores.jsonl record as JSON.
//
// Beam's own costs (element coding, Prism's data plane, shuffles) are what
// the pipeline adds on top; compare with the scoring harness.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/multiad/multiad/bench/internal/benchutil"
	"github.com/multiad/multiad/bench/internal/workload"
	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/model/ort"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "stages:", err)
		os.Exit(1)
	}
}

// stageNames are the timed stages, in pipeline order.
var stageNames = workload.StageNames

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad list %q", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("stages", flag.ContinueOnError)
	model := fs.String("model", "", "model bundle")
	input := fs.String("input", "", "input: directory, MVTec layout or manifest CSV")
	maxFiles := fs.Int("max", 160, "files of the input to use (0: all)")
	runs := fs.Int("runs", 5, "timed runs per configuration")
	threadList := fs.String("threads", "1,2", "intra-op thread counts")
	batchList := fs.String("batch", "1,4,16", "batch sizes")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stop, err := benchutil.CPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stop()
	if *model == "" || *input == "" {
		return fmt.Errorf("need -model and -input")
	}
	threads, err := ints(*threadList)
	if err != nil {
		return err
	}
	batches, err := ints(*batchList)
	if err != nil {
		return err
	}
	files, err := workload.Files(ctx, *input, *maxFiles)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "bench-stages-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fig := &benchutil.Figures{Name: "scaling"}

	type result struct {
		threads, batch int
		images         int
		total          benchutil.Stats
		stage          []benchutil.Stats
	}
	models := map[int]*inference.Model{}
	for _, th := range threads {
		m, err := inference.Load(ctx, *model, ort.Options{IntraOpThreads: th, Device: ort.DeviceCPU})
		if err != nil {
			return err
		}
		defer m.Close()
		models[th] = m
	}
	// Configurations take turns within each run, so that the load of a
	// shared machine drifting over time affects them alike.
	type acc struct {
		totals []float64
		per    [][]float64
		images int
	}
	accs := make([]acc, len(threads)*len(batches))
	for r := 0; r < *runs+1; r++ {
		benchutil.Progress("stages", "run %d/%d (first is warm-up): %d files at threads %v × batch %v", r+1, *runs+1, len(files), threads, batches)
		for i, th := range threads {
			for j, b := range batches {
				st, n, err := workload.Stages(ctx, models[th], files, b, filepath.Join(tmp, fmt.Sprint(r)), false)
				if err != nil {
					return err
				}
				if r == 0 {
					continue
				}
				a := &accs[i*len(batches)+j]
				if a.per == nil {
					a.per = make([][]float64, len(stageNames))
				}
				a.images = n
				sum := 0.0
				for k, s := range st {
					a.per[k] = append(a.per[k], s)
					sum += s
				}
				a.totals = append(a.totals, sum)
			}
		}
	}
	var results []result
	for i, th := range threads {
		for j, b := range batches {
			a := accs[i*len(batches)+j]
			res := result{threads: th, batch: b, images: a.images, total: benchutil.Summarize(a.totals).Rate(float64(a.images))}
			for _, p := range a.per {
				res.stage = append(res.stage, benchutil.Summarize(p))
			}
			results = append(results, res)
		}
	}

	fmt.Fprintf(stdout, "### Scaling and where the time goes (%s, %d images, %d runs each)\n\n", *input, results[0].images, *runs)
	t := benchutil.Table{Header: append([]string{"threads", "batch", "images/s"}, stageNames...)}
	for _, r := range results {
		row := []string{fmt.Sprint(r.threads), fmt.Sprint(r.batch), r.total.Format("%.1f")}
		sum := 0.0
		for _, s := range r.stage {
			sum += s.Median
		}
		for _, s := range r.stage {
			row = append(row, fmt.Sprintf("%.2f ms (%.0f%%)", 1e3*s.Median/float64(r.images), 100*s.Median/sum))
		}
		t.Add(row...)
		key := fmt.Sprintf("t%d_b%d", r.threads, r.batch)
		fig.Set(key+".images_per_s", r.total.Median)
		for i, s := range r.stage {
			fig.Set(key+"."+strings.ReplaceAll(stageNames[i], "-", "_")+"_ms", 1e3*s.Median/float64(r.images))
		}
	}
	t.Write(stdout)
	fmt.Fprintln(stdout, "Stage columns: median milliseconds per image and share of the per-image time. One goroutine runs every stage in turn, "+
		"so only inference uses the second core (through ONNX Runtime's intra-op threads).")
	fmt.Fprintln(stdout)
	if len(results) > 0 {
		best, worst := results[0], results[0]
		for _, r := range results {
			if r.total.Median > best.total.Median {
				best = r
			}
			if r.total.Median < worst.total.Median {
				worst = r
			}
		}
		inf := 0.0
		for _, r := range results {
			sum := 0.0
			for _, s := range r.stage {
				sum += s.Median
			}
			inf += r.stage[2].Median / sum / float64(len(results))
		}
		fmt.Fprintf(stdout, "Reading: inference takes %.0f%% of the per-image time on average; the rest, in the table's shares, is decoding, preprocessing, "+
			"post-processing (copies, the view and resized mask, the pixel-metric histograms of the image's group and of all images) and "+
			"writing (the heatmap and predicted-mask PNGs of anomalous images at their own size, and the JSON line). The fastest configuration here is %d thread(s) at batch %d (%.1f images/s), "+
			"the slowest %d at batch %d (%.1f). This loop runs every stage in one goroutine, one after the other, so a second intra-op thread "+
			"helps only inference, and larger batches only amortise ONNX Runtime's per-call overhead (model/ort turns its idle-thread spinning off, "+
			"which would otherwise take the CPU the decoding needs). The pipeline overlaps inference with decoding instead (transforms/score).\n\n",
			100*inf, best.threads, best.batch, best.total.Median, worst.threads, worst.batch, worst.total.Median)
	}
	// Scaling figures relative to 1 thread, batch 1.
	find := func(th, b int) *result {
		for i := range results {
			if results[i].threads == th && results[i].batch == b {
				return &results[i]
			}
		}
		return nil
	}
	if a, b := find(1, 1), find(2, 1); a != nil && b != nil {
		fig.Set("threads_2_vs_1", b.total.Median/a.total.Median)
		fig.Set("inference_threads_2_vs_1", a.stage[2].Median/b.stage[2].Median)
	}
	if big := slices.Max(batches); big > 1 {
		if a, b := find(2, 1), find(2, big); a != nil && b != nil {
			fig.Set(fmt.Sprintf("batch_%d_vs_1", big), b.total.Median/a.total.Median)
		}
	}
	fig.Write(stdout)
	fmt.Fprintln(stdout)
	return nil
}
