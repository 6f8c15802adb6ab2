// Command memory measures the peak resident set size of the scoring
// pipeline over growing inputs made by repeating real test images: a folder
// of symbolic links (distinct file names, the same files underneath) and a
// manifest CSV that lists them with their labels and masks. A streaming
// pipeline's peak RSS should stay flat as the input grows. Peak RSS is the
// child's getrusage ru_maxrss.
//
// The -model-sizes rows run `multiad score` with the bundle's ONNX model;
// the -sizes rows (the flatness check, up to 100,000 images) run the same
// pipeline (scoring.Run) in a child of this command with a stand-in scorer
// (standin.go) registered through score.RegisterLoader, so that the model's
// cost does not decide how large an input can be measured.
package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	blog "github.com/apache/beam/sdks/v2/go/pkg/beam/log"

	"github.com/multiad/multiad/bench/internal/benchutil"
	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/pipelines/scoring"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/report"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		if err := runChild(context.Background(), os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "memory child:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "memory:", err)
		os.Exit(1)
	}
}

// childArg, as the first argument, makes the command the measured child of
// a stand-in row (runChild); it is not a user-facing flag.
const childArg = "-stand-in-child"

// runChild runs the scoring pipeline in this process with the stand-in
// scorer, so that the parent reads the pipeline's own peak RSS.
func runChild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("memory child", flag.ContinueOnError)
	model := fs.String("model", "", "model bundle (its manifest: size, preprocessing, calibration)")
	input := fs.String("input", "", "manifest CSV")
	output := fs.String("output", "", "output folder")
	heap := fs.String("heap-profile", "", "write a heap profile here every 10 s (a diagnostic)")
	cpu := fs.String("cpuprofile", "", "write a CPU profile of the run to this file (a diagnostic; go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stop, err := benchutil.CPUProfile(*cpu)
	if err != nil {
		return err
	}
	defer stop()
	if *heap != "" {
		go func() {
			for i := 0; ; i++ {
				time.Sleep(10 * time.Second)
				f, err := os.Create(fmt.Sprintf("%s.%03d", *heap, i))
				if err != nil {
					return
				}
				err = pprof.Lookup("heap").WriteTo(f, 0)
				if cerr := f.Close(); err != nil || cerr != nil {
					return
				}
			}
		}()
	}
	blog.LogLevel = "warn"
	beam.Init()
	_, err = scoring.Run(ctx, scoring.Options{Model: *model, Input: *input, Output: *output, BatchSize: 8,
		Heatmaps: report.HeatmapsAnomalous, Masks: true, Gallery: 12, StudyScore: "max", Device: "cpu", Loader: standInLoader})
	return err
}

// row is one measured run: n images, with the bundle's model (the multiad
// binary) or the stand-in scorer (this command as the child).
type row struct {
	n       int
	standIn bool
}

func (r row) scorer() string {
	if r.standIn {
		return "stand-in"
	}
	return "ONNX model"
}

func parseSizes(name, list string) ([]int, error) {
	var sizes []int
	if list == "" {
		return nil, nil
	}
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad -%s %q", name, list)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("memory", flag.ContinueOnError)
	bin := fs.String("bin", "bin/multiad", "multiad binary (the -model-sizes rows)")
	model := fs.String("model", "", "model bundle")
	input := fs.String("input", "", "images to repeat (directory or MVTec layout)")
	modelSizes := fs.String("model-sizes", "1000", "input sizes scored by `multiad score` with the bundle's ONNX model (empty: none)")
	sizeList := fs.String("sizes", "1000,10000,100000", "input sizes scored by the pipeline with the stand-in scorer (the flatness check)")
	threads := fs.Int("threads", 2, "ONNX Runtime intra-op threads (the -model-sizes rows)")
	budget := fs.Float64("max-rss-mib", 0, "skip a size whose extrapolated peak RSS exceeds this, and kill a run that exceeds it (0: 40% of MemTotal)")
	heap := fs.String("heap-profile", "", "stand-in rows write heap profiles to PREFIX.n<size>.NNN every 10 s (a diagnostic)")
	work := fs.String("work", "", "work folder, kept with each run's inputs, outputs and log (default: a temporary folder, removed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *model == "" || *input == "" {
		return fmt.Errorf("need -model and -input")
	}
	var rows []row
	for _, l := range []struct {
		name, list string
		standIn    bool
	}{{"model-sizes", *modelSizes, false}, {"sizes", *sizeList, true}} {
		sizes, err := parseSizes(l.name, l.list)
		if err != nil {
			return err
		}
		for _, n := range sizes {
			rows = append(rows, row{n, l.standIn})
		}
	}
	files, err := read.List(ctx, *input)
	if err != nil {
		return err
	}
	var items []read.Item
	for _, f := range files {
		for _, it := range f.Items {
			if _, ok := storage.LocalPath(it.URI); !ok {
				return fmt.Errorf("memory: local inputs only")
			}
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		return fmt.Errorf("memory: no images in %s", *input)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tmp := *work
	if tmp == "" {
		if tmp, err = os.MkdirTemp("", "bench-memory-"); err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
	}
	if *budget <= 0 {
		*budget = 0.4 * memTotalMiB()
	}
	fig := &benchutil.Figures{Name: "memory"}
	var done [][2]float64 // (images, MiB) of finished stand-in runs
	var anons []float64   // peak anonymous MiB of the finished stand-in runs
	t := benchutil.Table{Header: []string{"images", "scorer", "peak RSS", "anonymous", "file-backed", "wall time", "images/s"}}
	for _, r := range rows {
		prefix := fmt.Sprintf("n%d", r.n)
		if !r.standIn {
			prefix = fmt.Sprintf("model_n%d", r.n)
		}
		if k := len(done); r.standIn && k >= 2 {
			slope := (done[k-1][1] - done[k-2][1]) / (done[k-1][0] - done[k-2][0])
			if est := done[k-1][1] + slope*(float64(r.n)-done[k-1][0]); est > *budget {
				benchutil.Progress("memory", "skipping %d images: extrapolated peak RSS %.0f MiB exceeds the %.0f MiB budget", r.n, est, *budget)
				t.Add(fmt.Sprint(r.n), r.scorer(), fmt.Sprintf("not run: ≈ %.0f MiB extrapolated (%.2f MiB/image) > %.0f MiB budget", est, slope, *budget), "", "", "", "")
				fig.Set(prefix+".peak_rss_mib_extrapolated", est)
				continue
			}
		}
		dir := filepath.Join(tmp, prefix)
		manifest, err := repeat(dir, items, r.n)
		if err != nil {
			return err
		}
		out := filepath.Join(dir, "out")
		var cmd *exec.Cmd
		if r.standIn {
			a := []string{childArg, "-model", *model, "-input", manifest, "-output", out}
			if *heap != "" {
				a = append(a, "-heap-profile", *heap+"."+prefix)
			}
			cmd = exec.CommandContext(ctx, self, a...)
		} else {
			cmd = exec.CommandContext(ctx, *bin, "score", "--model", *model, "--input", manifest, "--output", out,
				"--threads", fmt.Sprint(*threads), "--device", "cpu")
		}
		benchutil.Progress("memory", "%d images with the %s (%s)", r.n, r.scorer(), manifest)
		p, wall, err := measure(cmd, filepath.Join(dir, "score.log"), *budget)
		if err != nil {
			return fmt.Errorf("memory: %d images with the %s: %w", r.n, r.scorer(), err)
		}
		t.Add(fmt.Sprint(r.n), r.scorer(), fmt.Sprintf("%.0f MiB", p.rss), fmt.Sprintf("%.0f MiB", p.anon), fmt.Sprintf("%.0f MiB", p.file),
			fmt.Sprintf("%.1f s", wall), fmt.Sprintf("%.1f", float64(r.n)/wall))
		fig.Set(prefix+".peak_rss_mib", p.rss)
		fig.Set(prefix+".peak_anon_mib", p.anon)
		fig.Set(prefix+".images_per_s", float64(r.n)/wall)
		if r.standIn {
			done = append(done, [2]float64{float64(r.n), p.rss})
			anons = append(anons, p.anon)
		}
		if *work == "" {
			os.RemoveAll(dir)
		}
	}
	fmt.Fprintf(stdout, "### Memory: peak RSS of the scoring pipeline (%d real test images repeated; batch 8, one run each)\n\n", len(items))
	t.Write(stdout)
	fmt.Fprintf(stdout, "Rows: \"ONNX model\" is `multiad score` with the bundle's model (%d ONNX Runtime threads): ONNX Runtime's "+
		"share of the peak, constant in the input size. \"stand-in\" is the same pipeline (scoring.Run, Prism, the bundle's "+
		"size, preprocessing and calibration, heatmaps and masks of flagged images) with a scorer that computes its maps and "+
		"scores by arithmetic from the input instead of running the model (it flags %.0f%% of distinct images): the model costs "+
		"about 20 ms an image here, so 100,000 images with it would take over half an hour, and what grows with the input is "+
		"what the pipeline keeps, not the model. The flatness figures compare the stand-in rows. \"anonymous\" and \"file-backed\" "+
		"are the peaks of the run's RssAnon and RssFile, sampled every 20 ms: peak RSS counts both, and the file-backed part "+
		"(the binary's and the libraries' pages) depends on the page cache, not on the input.\n\n", *threads, 100*standInFlagged)
	if k := len(done); k > 1 {
		a, b := done[0][1], done[k-1][1]
		fig.Set("growth_ratio", b/a)
		fig.Set("mib_per_1000_images", 1000*(b-a)/(done[k-1][0]-done[0][0]))
		fmt.Fprintf(stdout, "Reading: from %.0f to %.0f images (%.0f× more) peak RSS goes from %.0f to %.0f MiB (%.2f×, %.1f KiB per image).\n",
			done[0][0], done[k-1][0], done[k-1][0]/done[0][0], a, b, b/a, 1024*(b-a)/(done[k-1][0]-done[0][0]))
		lo, hi := done[0][1], done[0][1]
		for _, d := range done {
			lo, hi = min(lo, d[1]), max(hi, d[1])
		}
		fig.Set("max_over_min", hi/lo)
		verdict := "within"
		if hi/lo > 1.10 {
			verdict = "not within"
		}
		alo, ahi := slices.Min(anons), slices.Max(anons)
		fig.Set("anon_max_over_min", ahi/alo)
		fmt.Fprintf(stdout, "\nThe largest peak is %.2f× the smallest: %s the 10%% target. Anonymous memory alone: %.0f to %.0f MiB (%.2f×).\n",
			hi/lo, verdict, alo, ahi, ahi/alo)
		fmt.Fprintln(stdout)
	}
	fig.Write(stdout)
	fmt.Fprintln(stdout)
	return nil
}

// peaks is a run's memory: peak RSS (ru_maxrss) and the sampled peaks of
// its anonymous and file-backed parts, in MiB.
type peaks struct{ rss, anon, file float64 }

// measure runs cmd with its output in logPath, stopping it past budget
// MiB, and returns its memory peaks and its wall time in seconds.
func measure(cmd *exec.Cmd, logPath string, budget float64) (p peaks, wall float64, err error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return p, 0, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return p, 0, err
	}
	w := watch(cmd.Process.Pid, budget)
	err = cmd.Wait()
	wall = time.Since(start).Seconds()
	w.mu.Lock()
	killed := w.killed
	p.anon, p.file = w.anon, w.file
	w.mu.Unlock()
	if killed {
		return p, 0, fmt.Errorf("the run passed the %.0f MiB budget and was stopped", budget)
	}
	if err != nil {
		tail, _ := os.ReadFile(logPath)
		if len(tail) > 3000 {
			tail = tail[len(tail)-3000:]
		}
		return p, 0, fmt.Errorf("%s: %w\n%s", cmd.Path, err, tail)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return p, 0, fmt.Errorf("no rusage on this platform")
	}
	p.rss = float64(ru.Maxrss) / 1024 // kilobytes on Linux
	return p, wall, nil
}

// repeat makes n symbolic links in dir cycling over items' files and a
// manifest CSV listing them with labels and masks; it returns the CSV.
func repeat(dir string, items []read.Item, n int) (string, error) {
	links := filepath.Join(dir, "images")
	if err := os.MkdirAll(links, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "manifest.csv")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := csv.NewWriter(f)
	if err := w.Write([]string{"uri", "label", "mask_uri"}); err != nil {
		f.Close()
		return "", err
	}
	for i := 0; i < n; i++ {
		it := items[i%len(items)]
		src, err := localAbs(it.URI)
		if err != nil {
			f.Close()
			return "", err
		}
		name := fmt.Sprintf("%06d_%s", i, filepath.Base(src))
		if err := os.Symlink(src, filepath.Join(links, name)); err != nil {
			f.Close()
			return "", err
		}
		mask := ""
		if it.MaskURI != "" && it.MaskURI != read.EmptyMask {
			if mask, err = localAbs(it.MaskURI); err != nil {
				f.Close()
				return "", err
			}
		}
		label := ""
		if it.Label >= 0 {
			label = fmt.Sprint(it.Label)
		}
		if err := w.Write([]string{"images/" + name, label, mask}); err != nil {
			f.Close()
			return "", err
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// memTotalMiB returns MemTotal from /proc/meminfo in MiB (8 GiB if unknown).
// localAbs returns the absolute file system path of a local URI.
func localAbs(uri string) (string, error) {
	p, ok := storage.LocalPath(uri)
	if !ok {
		return "", fmt.Errorf("%s: local inputs only", uri)
	}
	return filepath.Abs(p)
}

func memTotalMiB() float64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 8192
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 8192
}

// watcher follows a child's /proc status every 20 ms: it stops the child
// past the budget and keeps the peaks of its anonymous and file-backed
// resident memory (RssAnon, RssFile). Peak RSS (ru_maxrss) counts both;
// the file-backed part is the binary's and the libraries' pages, whose
// count depends on the page cache, not on the input: runs of one binary
// read 63 to 131 MiB of it.
type watcher struct {
	mu         sync.Mutex
	killed     bool
	anon, file float64 // MiB
}

func watch(pid int, budget float64) *watcher {
	w := new(watcher)
	go func() {
		for {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				return
			}
			var rss, anon, file float64
			for _, line := range strings.Split(string(data), "\n") {
				if f := strings.Fields(line); len(f) >= 2 {
					kb, _ := strconv.ParseFloat(f[1], 64)
					switch f[0] {
					case "VmRSS:":
						rss = kb / 1024
					case "RssAnon:":
						anon = kb / 1024
					case "RssFile:":
						file = kb / 1024
					}
				}
			}
			w.mu.Lock()
			w.anon, w.file = max(w.anon, anon), max(w.file, file)
			kill := rss > budget && !w.killed
			w.killed = w.killed || kill
			w.mu.Unlock()
			if kill {
				// ESRCH: the process has already exited and been reaped.
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
					benchutil.Progress("memory", "cannot stop process %d past the budget: %v", pid, err)
				}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return w
}
