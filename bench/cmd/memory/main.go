// Command memory measures the peak resident set size of `multiad score`
// over growing inputs made by repeating real test images: a folder of
// symbolic links (distinct file names, the same files underneath) and a
// manifest CSV that lists them with their labels and masks. A streaming
// pipeline's peak RSS should stay flat as the input grows. Peak RSS is the
// child's getrusage ru_maxrss.
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/multiad/multiad/bench/internal/benchutil"
	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/transforms/read"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "memory:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("memory", flag.ContinueOnError)
	bin := fs.String("bin", "bin/multiad", "multiad binary")
	model := fs.String("model", "", "model bundle")
	input := fs.String("input", "", "images to repeat (directory or MVTec layout)")
	sizeList := fs.String("sizes", "1000,10000", "input sizes in images")
	threads := fs.Int("threads", 2, "ONNX Runtime intra-op threads")
	budget := fs.Float64("max-rss-mib", 0, "skip a size whose extrapolated peak RSS exceeds this, and kill a run that exceeds it (0: 40% of MemTotal)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *model == "" || *input == "" {
		return fmt.Errorf("need -model and -input")
	}
	var sizes []int
	for _, f := range strings.Split(*sizeList, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return fmt.Errorf("bad -sizes %q", *sizeList)
		}
		sizes = append(sizes, n)
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
	tmp, err := os.MkdirTemp("", "bench-memory-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if *budget <= 0 {
		*budget = 0.4 * memTotalMiB()
	}
	fig := &benchutil.Figures{Name: "memory"}
	var done [][2]float64 // (images, MiB) of finished runs
	t := benchutil.Table{Header: []string{"images", "peak RSS", "wall time", "images/s"}}
	for _, n := range sizes {
		if k := len(done); k >= 2 {
			slope := (done[k-1][1] - done[k-2][1]) / (done[k-1][0] - done[k-2][0])
			if est := done[k-1][1] + slope*(float64(n)-done[k-1][0]); est > *budget {
				benchutil.Progress("memory", "skipping %d images: extrapolated peak RSS %.0f MiB exceeds the %.0f MiB budget", n, est, *budget)
				t.Add(fmt.Sprint(n), fmt.Sprintf("not run: ≈ %.0f MiB extrapolated (%.2f MiB/image) > %.0f MiB budget", est, slope, *budget), "", "")
				fig.Set(fmt.Sprintf("n%d.peak_rss_mib_extrapolated", n), est)
				continue
			}
		}
		dir := filepath.Join(tmp, fmt.Sprint(n))
		manifest, err := repeat(dir, items, n)
		if err != nil {
			return err
		}
		benchutil.Progress("memory", "multiad score over %d images (%s)", n, manifest)
		out := filepath.Join(dir, "out")
		logf, err := os.Create(filepath.Join(dir, "score.log"))
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, *bin, "score", "--model", *model, "--input", manifest, "--output", out,
			"--threads", fmt.Sprint(*threads), "--device", "cpu")
		cmd.Stdout, cmd.Stderr = logf, logf
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		killed := watch(cmd.Process.Pid, *budget)
		err = cmd.Wait()
		wall := time.Since(start).Seconds()
		if *killed {
			return fmt.Errorf("memory: %d images: the run passed the %.0f MiB budget and was stopped", n, *budget)
		}
		logf.Close()
		if err != nil {
			tail, _ := os.ReadFile(filepath.Join(dir, "score.log"))
			if len(tail) > 3000 {
				tail = tail[len(tail)-3000:]
			}
			return fmt.Errorf("%s score: %w\n%s", *bin, err, tail)
		}
		ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		if !ok {
			return fmt.Errorf("memory: no rusage on this platform")
		}
		mib := float64(ru.Maxrss) / 1024 // kilobytes on Linux
		t.Add(fmt.Sprint(n), fmt.Sprintf("%.0f MiB", mib), fmt.Sprintf("%.1f s", wall), fmt.Sprintf("%.1f", float64(n)/wall))
		fig.Set(fmt.Sprintf("n%d.peak_rss_mib", n), mib)
		done = append(done, [2]float64{float64(n), mib})
		fig.Set(fmt.Sprintf("n%d.images_per_s", n), float64(n)/wall)
		os.RemoveAll(dir)
	}
	fmt.Fprintf(stdout, "### Memory: peak RSS of `multiad score` (%d real test images repeated; batch 8 (the CPU default), %d threads, one run each)\n\n", len(items), *threads)
	t.Write(stdout)
	if k := len(done); k > 1 {
		a, b := done[0][1], done[k-1][1]
		fig.Set("growth_ratio", b/a)
		fig.Set("mib_per_1000_images", 1000*(b-a)/(done[k-1][0]-done[0][0]))
		fmt.Fprintf(stdout, "Reading: from %.0f to %.0f images (%.0f× more) peak RSS goes from %.0f to %.0f MiB (%.2f×, %.2f MiB per image). ",
			done[0][0], done[k-1][0], done[k-1][0]/done[0][0], a, b, b/a, (b-a)/(done[k-1][0]-done[0][0]))
		perImageKiB := 1024 * (b - a) / (done[k-1][0] - done[0][0])
		if perImageKiB > 32 {
			fmt.Fprintf(stdout, "It grows by %.0f KiB per image, as much as an anomaly map (64 KiB at 128²): something that large outlives "+
				"each image. Under Prism, elements waiting for a stage that needs all of its input (a side input, a CombinePerKey) stay in "+
				"memory; a heap profile of bench/cmd/scoring's TestProfilePipeline shows which.\n", perImageKiB)
		} else {
			fmt.Fprintf(stdout, "No anomaly map outlives its image (%.1f KiB per image, far less than one map; pixel metrics fold maps "+
				"into bounded histograms; study groups keep only the maps they draw), and scores.jsonl lines are spilled to sorted "+
				"shards and merged at the end instead of being held. What still grows with the input is held until the run ends: "+
				"the studies.jsonl lines (a side input of the study writer), the per-study accumulators of the study CombinePerKey "+
				"(a 2-D file is its own study) and each image's score in the image metrics and the report's curves.\n", perImageKiB)
		}
		lo, hi := done[0][1], done[0][1]
		for _, d := range done {
			lo, hi = min(lo, d[1]), max(hi, d[1])
		}
		fig.Set("max_over_min", hi/lo)
		verdict := "within"
		if hi/lo > 1.10 {
			verdict = "not within"
		}
		fmt.Fprintf(stdout, "\nThe largest peak is %.2f× the smallest: %s the 10%% target.\n", hi/lo, verdict)
		fmt.Fprintln(stdout)
	}
	fig.Write(stdout)
	fmt.Fprintln(stdout)
	return nil
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

// watch polls the RSS of pid every 200 ms and kills the process when it
// passes budget MiB; the returned flag is set when it did.
func watch(pid int, budget float64) *bool {
	killed := new(bool)
	go func() {
		for {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(data), "\n") {
				if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
					kb, _ := strconv.ParseFloat(f[1], 64)
					if kb/1024 > budget {
						*killed = true
						// ESRCH: the process has already exited and been reaped.
						if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
							benchutil.Progress("memory", "cannot stop process %d past the budget: %v", pid, err)
						}
						return
					}
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return killed
}
