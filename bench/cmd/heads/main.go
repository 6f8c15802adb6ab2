// Command heads measures what each anomaly-map head costs at scoring time:
// `multiad score` images/s (summary.json throughput, heatmaps off) of one
// bundle per head on the same input, with the bank size and the bundle
// size. The first bundle is the baseline the others' ratios are taken
// against; runs are interleaved (round r scores every bundle once) so that
// drift on a shared machine hits every head alike. Issue 17 asks that the
// fused head score at no less than half the student-only rate.
//
//	heads -models student=B1,bank=B2,fused=B3 -input DIR_OR_CSV [-bin bin/multiad] [-runs 5] [-threads N]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/multiad/multiad/bench/internal/benchutil"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/transforms/report"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "heads:", err)
		os.Exit(1)
	}
}

type head struct {
	name, path  string
	bankVectors int
	bundleBytes int64
	rates       []float64
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("heads", flag.ContinueOnError)
	models := fs.String("models", "", "comma-separated name=bundle pairs; the first is the baseline")
	input := fs.String("input", "", "input: directory, MVTec layout or manifest CSV")
	bin := fs.String("bin", "bin/multiad", "multiad binary")
	runs := fs.Int("runs", 5, "timed rounds (after one warm-up round)")
	threads := fs.Int("threads", 0, "ONNX Runtime intra-op threads (multiad score --threads; 0: multiad score's default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *models == "" || *input == "" {
		return fmt.Errorf("need -models and -input")
	}
	var heads []*head
	for _, kv := range strings.Split(*models, ",") {
		name, path, ok := strings.Cut(kv, "=")
		if !ok || name == "" || path == "" {
			return fmt.Errorf("-models: %q is not name=bundle", kv)
		}
		h := &head{name: name, path: path}
		var err error
		if h.bankVectors, err = bankVectors(path); err != nil {
			return err
		}
		st, err := os.Stat(filepath.Join(path, bundle.ModelFile))
		if err != nil {
			return err
		}
		h.bundleBytes = st.Size()
		heads = append(heads, h)
	}
	tmp, err := os.MkdirTemp("", "bench-heads-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for r := 0; r <= *runs; r++ {
		for _, h := range heads {
			benchutil.Progress("heads", "round %d/%d: %s", r+1, *runs+1, h.name)
			rate, err := score(ctx, *bin, h.path, *input, filepath.Join(tmp, h.name), *threads)
			if err != nil {
				return err
			}
			if r > 0 { // round 0 warms the page cache and the binary
				h.rates = append(h.rates, rate)
			}
		}
	}
	fig := &benchutil.Figures{Name: "heads"}
	t := &benchutil.Table{Header: []string{"head", "bank vectors", "model.onnx (MB)", "images/s", "× " + heads[0].name}}
	base := benchutil.Summarize(heads[0].rates).Median
	for _, h := range heads {
		s := benchutil.Summarize(h.rates)
		t.Add(h.name, fmt.Sprint(h.bankVectors), fmt.Sprintf("%.1f", float64(h.bundleBytes)/1e6), s.Format("%.1f"), fmt.Sprintf("%.2f", s.Median/base))
		fig.Set(h.name+".images_per_s", s.Median)
		fig.Set(h.name+".ratio_vs_"+heads[0].name, s.Median/base)
		fig.Set(h.name+".bank_vectors", float64(h.bankVectors))
		fig.Set(h.name+".bundle_bytes", float64(h.bundleBytes))
	}
	fmt.Fprintf(stdout, "Scoring cost per head: `multiad score --heatmaps none%s` on %s, %d interleaved rounds after a warm-up; images/s from summary.json's throughput.\n\n", threadFlag(*threads), *input, *runs)
	t.Write(stdout)
	fmt.Fprintln(stdout)
	fig.Write(stdout)
	return nil
}

// bankVectors is the memory-bank size recorded in a local bundle's
// model.json (0 for the student head).
func bankVectors(path string) (int, error) {
	js, err := os.ReadFile(filepath.Join(path, bundle.ManifestFile))
	if err != nil {
		return 0, err
	}
	var m bundle.Manifest
	if err := json.Unmarshal(js, &m); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if m.Training == nil {
		return 0, nil
	}
	return m.Training.BankSize, nil
}

// threadFlag is the --threads flag for threads, empty for multiad score's
// default (0).
func threadFlag(threads int) string {
	if threads == 0 {
		return ""
	}
	return fmt.Sprintf(" --threads %d", threads)
}

// score runs multiad score once and returns its images/s.
func score(ctx context.Context, bin, model, input, out string, threads int) (float64, error) {
	cmd := exec.CommandContext(ctx, bin, "score", "--model", model, "--input", input, "--output", out, "--overwrite",
		"--heatmaps", "none", "--device", "cpu")
	cmd.Args = append(cmd.Args, strings.Fields(threadFlag(threads))...)
	log, err := cmd.CombinedOutput()
	if err != nil {
		if len(log) > 3000 {
			log = log[len(log)-3000:]
		}
		return 0, fmt.Errorf("%s score --model %s: %w\n%s", bin, model, err, log)
	}
	var sum report.Summary
	js, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(js, &sum); err != nil {
		return 0, fmt.Errorf("%s/summary.json: %w", out, err)
	}
	if sum.Throughput.ImagesPerSecond <= 0 {
		return 0, fmt.Errorf("%s/summary.json: no throughput", out)
	}
	return sum.Throughput.ImagesPerSecond, nil
}
