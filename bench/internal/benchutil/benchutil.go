// Package benchutil holds what the multiad benchmark harnesses share:
// repeated timing with median, min and max, markdown tables, the
// machine-readable bench.* lines, progress on stderr, the shared data
// folder, the Debian reference Python, and the CPU's measured sgemm peak.
package benchutil

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/advancedclimatesystems/gonnx/onnx"

	"github.com/multiad/multiad/model/onnxb"
	"github.com/multiad/multiad/model/ort"
)

// Python is the Debian interpreter that has pydicom, nibabel, NumPy and
// scikit-learn (the python3 on PATH may be a pyenv without them).
const Python = "/usr/bin/python3"

// Stats summarises repeated measurements.
type Stats struct {
	Median, Min, Max float64
	N                int
}

// Summarize returns the median, min and max of xs.
func Summarize(xs []float64) Stats {
	if len(xs) == 0 {
		return Stats{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stats{Median: m, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// Scale returns the stats multiplied by k (k > 0).
func (s Stats) Scale(k float64) Stats {
	return Stats{Median: s.Median * k, Min: s.Min * k, Max: s.Max * k, N: s.N}
}

// Rate turns stats of seconds into stats of work/seconds (min and max swap).
func (s Stats) Rate(work float64) Stats {
	return Stats{Median: work / s.Median, Min: work / s.Max, Max: work / s.Min, N: s.N}
}

// Format prints "median (min–max)" with the given verb, e.g. "%.1f".
func (s Stats) Format(verb string) string {
	return fmt.Sprintf(verb+" ("+verb+"–"+verb+")", s.Median, s.Min, s.Max)
}

// Time runs f runs times (after warmup untimed runs) and returns the
// wall-clock seconds of each timed run.
func Time(warmup, runs int, f func() error) ([]float64, error) {
	for i := 0; i < warmup; i++ {
		if err := f(); err != nil {
			return nil, err
		}
	}
	out := make([]float64, 0, runs)
	for i := 0; i < runs; i++ {
		t := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t).Seconds())
	}
	return out, nil
}

// Progress prints a progress line on stderr, prefixed with the harness name.
func Progress(name, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %s %s] %s\n", name, time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Table is a markdown table.
type Table struct {
	Header []string
	Rows   [][]string
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

// Write prints the table as aligned markdown.
func (t *Table) Write(w io.Writer) {
	width := make([]int, len(t.Header))
	for i, h := range t.Header {
		width[i] = len([]rune(h))
	}
	for _, r := range t.Rows {
		for i, c := range r {
			if i < len(width) && len([]rune(c)) > width[i] {
				width[i] = len([]rune(c))
			}
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i := range width {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			b.WriteString(" " + c + strings.Repeat(" ", width[i]-len([]rune(c))) + " |")
		}
		fmt.Fprintln(w, b.String())
	}
	line(t.Header)
	sep := make([]string, len(width))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range t.Rows {
		line(r)
	}
	fmt.Fprintln(w)
}

// Figures collects the machine-readable bench.<name>.<figure>=<value> lines.
type Figures struct {
	Name  string
	lines []string
}

// Set records a figure.
func (f *Figures) Set(figure string, v float64) {
	f.lines = append(f.lines, fmt.Sprintf("bench.%s.%s=%s", f.Name, figure, FormatValue(v)))
}

// SetText records a non-numeric figure.
func (f *Figures) SetText(figure, v string) {
	f.lines = append(f.lines, fmt.Sprintf("bench.%s.%s=%s", f.Name, figure, v))
}

// Write prints the figures, one per line.
func (f *Figures) Write(w io.Writer) {
	for _, l := range f.lines {
		fmt.Fprintln(w, l)
	}
}

// FormatValue prints v with 4 significant digits.
func FormatValue(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "nan"
	}
	return fmt.Sprintf("%.4g", v)
}

// Shared returns the shared data folder: $MULTIAD_SHARED, else the first
// "shared" folder beside the working directory or one of its parents.
func Shared() (string, error) {
	if p := os.Getenv("MULTIAD_SHARED"); p != "" {
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		c := filepath.Join(filepath.Dir(d), "shared")
		if st, err := os.Stat(filepath.Join(c, "data")); err == nil && st.IsDir() {
			return c, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("benchutil: no shared folder found above %s; set MULTIAD_SHARED", wd)
		}
	}
}

// RunPython runs a Python reference script with the Debian interpreter
// and decodes the JSON object it prints last on stdout into v. Its stderr
// (progress) goes to ours.
func RunPython(ctx context.Context, v any, script string, args ...string) error {
	cmd := exec.CommandContext(ctx, Python, append([]string{script}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("benchutil: %s %s: %w", Python, script, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		return fmt.Errorf("benchutil: %s: reading its JSON result: %w (output %q)", script, err, out.String())
	}
	return nil
}

// HavePython reports whether the Debian Python has all the modules.
func HavePython(modules ...string) bool {
	code := "import " + strings.Join(modules, ", ")
	return exec.Command(Python, "-c", code).Run() == nil
}

// Script returns the path of a reference script in bench/py, found from
// the working directory upwards.
func Script(name string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		c := filepath.Join(d, "bench", "py", name)
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("benchutil: bench/py/%s not found above %s", name, wd)
		}
	}
}

// PeakGFLOPS measures the CPU's float32 matrix-multiply rate in ONNX
// Runtime: a MatMul of two n×n matrices, with the given intra-op threads,
// best of runs after one warm-up (peak means the best the CPU reached).
func PeakGFLOPS(n, threads, runs int) (Stats, error) {
	b := onnxb.New()
	a := b.Input("a", onnx.TensorProto_FLOAT, n, n)
	w := make([]float32, n*n)
	for i := range w {
		w[i] = float32(i%7-3) / 8
	}
	c := b.Const("w", []int64{int64(n), int64(n)}, w)
	y := b.Op("MatMul", []string{a, c}, nil)
	b.Identity(y, "y")
	b.Output("y", onnx.TensorProto_FLOAT, n, n)
	model, err := b.Marshal()
	if err != nil {
		return Stats{}, fmt.Errorf("benchutil: matmul graph: %w", err)
	}
	sess, err := ort.NewSession(model, []string{"a"}, []string{"y"}, ort.Options{IntraOpThreads: threads, Device: ort.DeviceCPU})
	if err != nil {
		return Stats{}, err
	}
	defer sess.Close()
	in := ort.Tensor{Shape: []int64{int64(n), int64(n)}, Data: make([]float32, n*n)}
	for i := range in.Data {
		in.Data[i] = float32(i%5-2) / 4
	}
	secs, err := Time(1, runs, func() error { _, err := sess.Run(in); return err })
	if err != nil {
		return Stats{}, err
	}
	return Summarize(secs).Rate(2 * float64(n) * float64(n) * float64(n) / 1e9), nil
}

// CPUProfile starts a CPU profile of this process written to path (no
// profile when path is empty) and returns the function that ends it.
func CPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
