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
			if strings.HasPrefix(it.URI, "gs://") {
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
	fig := &benchutil.Figures{Name: "memory"}
	t := benchutil.Table{Header: []string{"images", "peak RSS", "wall time", "images/s"}}
	var first float64
	for _, n := range sizes {
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
		err = cmd.Run()
		wall := time.Since(start).Seconds()
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
		if first == 0 {
			first = mib
		}
		t.Add(fmt.Sprint(n), fmt.Sprintf("%.0f MiB", mib), fmt.Sprintf("%.1f s", wall), fmt.Sprintf("%.1f", float64(n)/wall))
		fig.Set(fmt.Sprintf("n%d.peak_rss_mib", n), mib)
		fig.Set(fmt.Sprintf("n%d.images_per_s", n), float64(n)/wall)
		os.RemoveAll(dir)
	}
	fmt.Fprintf(stdout, "### Memory: peak RSS of `multiad score` (%d real test images repeated; batch 1 (CPU default), %d threads, one run each)\n\n", len(items), *threads)
	t.Write(stdout)
	if len(sizes) > 1 {
		var last float64
		fmt.Sscanf(t.Rows[len(t.Rows)-1][1], "%f", &last)
		fig.Set("growth_ratio", last/first)
	}
	if len(sizes) > 1 {
		var a, b float64
		fmt.Sscanf(t.Rows[0][1], "%f", &a)
		fmt.Sscanf(t.Rows[len(t.Rows)-1][1], "%f", &b)
		fmt.Fprintf(stdout, "Reading: from %d to %d images (%.0f× more) peak RSS goes from %.0f to %.0f MiB (%.2f×). ",
			sizes[0], sizes[len(sizes)-1], float64(sizes[len(sizes)-1])/float64(sizes[0]), a, b, b/a)
		if b > 1.25*a {
			fmt.Fprintln(stdout, "It does not stay flat. Prism, the local runner, holds the elements waiting between stages in memory, and "+
				"every scoring result travels with S×S maps (the anomaly map and gray input for heatmaps, and a copy of the map with its resized "+
				"mask for the pixel metrics) to stages that run only after scoring has finished (metrics need all images; the report needs every "+
				"line), so memory grows with the number of images; the pixel-metric accumulators themselves are bounded.")
		} else {
			fmt.Fprintln(stdout, "It stays flat: nothing held per image outlives the image.")
		}
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
	w.Write([]string{"uri", "label", "mask_uri"})
	for i := 0; i < n; i++ {
		it := items[i%len(items)]
		src, err := filepath.Abs(strings.TrimPrefix(it.URI, "file://"))
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
			if mask, err = filepath.Abs(strings.TrimPrefix(it.MaskURI, "file://")); err != nil {
				f.Close()
				return "", err
			}
		}
		label := ""
		if it.Label >= 0 {
			label = fmt.Sprint(it.Label)
		}
		w.Write([]string{"images/" + name, label, mask})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}
