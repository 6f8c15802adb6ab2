package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/internal/version"
)

// result is what one run of the binary did.
type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

// runBin runs the multiad binary with args (in the repository root, with
// env added) and returns its outputs and exit status.
func runBin(t *testing.T, env []string, args ...string) result {
	t.Helper()
	bin := multiadBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("multiad %q did not finish in 5 minutes:\n%s%s", args, r.stdout, r.stderr)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("multiad %q: %v", args, err)
	}
	return r
}

// commandsUnderTest are every command and subcommand, as typed.
var commandsUnderTest = [][]string{
	{"inspect"}, {"train"}, {"predict"}, {"score"}, {"version"}, {"teacher"}, {"teacher", "import"}, {"teacher", "classify"},
}

// TestHelp checks every command's help: -h, --help and `multiad help CMD`
// print the same text on stdout, nothing on stderr, and exit 0; the help
// names the command and ends with worked examples.
func TestHelp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the multiad binary")
	}
	for _, c := range commandsUnderTest {
		name := strings.Join(c, " ")
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			var texts []string
			for _, args := range [][]string{
				append(append([]string{}, c...), "-h"),
				append(append([]string{}, c...), "--help"),
				append([]string{"help"}, c...),
			} {
				r := runBin(t, nil, args...)
				if r.code != 0 || r.stderr != "" {
					t.Errorf("multiad %q: exit %d, stderr %q; want 0 and nothing on stderr", args, r.code, r.stderr)
				}
				texts = append(texts, r.stdout)
			}
			if texts[0] != texts[1] || texts[0] != texts[2] {
				t.Errorf("-h, --help and help %s differ:\n%s\n---\n%s\n---\n%s", name, texts[0], texts[1], texts[2])
			}
			h := texts[0]
			if !strings.HasPrefix(h, "usage: multiad "+name) {
				t.Errorf("help does not start with the usage of multiad %s:\n%s", name, h)
			}
			// Two or three worked examples, at the end.
			i := strings.LastIndex(h, "\nexamples:\n")
			if i < 0 {
				t.Fatalf("help of %s has no examples:\n%s", name, h)
			}
			ex := strings.Split(strings.TrimSpace(h[i+len("\nexamples:\n"):]), "\n")
			n := 0
			for _, l := range ex {
				if strings.HasPrefix(strings.TrimSpace(l), "multiad ") {
					n++
				} else if !strings.HasPrefix(l, "      ") { // continuation line
					t.Errorf("help of %s: line %q after the examples", name, l)
				}
			}
			if n < 2 || n > 3 {
				t.Errorf("help of %s has %d examples, want 2 or 3:\n%s", name, n, h)
			}
		})
	}
	// The top-level help.
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		r := runBin(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "commands:") || r.stderr != "" {
			t.Errorf("multiad %q: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
}

// TestUsageErrors checks that a missing required flag or argument, an
// unknown flag or command exits 2 with one line on stderr naming it, and
// nothing on stdout.
func TestUsageErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the multiad binary")
	}
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"train"}, []string{"--data", "--out"}},
		{[]string{"train", "--data", "x"}, []string{"missing --out"}},
		{[]string{"train", "--data", "x", "--out", "y", "stray"}, []string{"stray"}},
		{[]string{"predict", "x.png"}, []string{"missing --model"}},
		{[]string{"predict", "--model", "m"}, []string{"IMAGE"}},
		{[]string{"predict", "--model", "m", "--device", "tpu", "x.png"}, []string{"--device", "tpu"}},
		{[]string{"score", "--input", "x"}, []string{"missing --model, --output"}},
		{[]string{"score", "--model", "m", "--input", "x", "--output", "o", "--log-level", "loud"}, []string{"--log-level", "loud"}},
		{[]string{"score", "--model", "m", "--input", "x", "--output", "o", "--heatmaps", "some"}, []string{"--heatmaps", "some"}},
		{[]string{"teacher"}, []string{"subcommand"}},
		{[]string{"teacher", "convert"}, []string{"convert"}},
		{[]string{"teacher", "import"}, []string{"missing --out"}},
		{[]string{"teacher", "classify", "x.png"}, []string{"missing --model"}},
		{[]string{"teacher", "classify", "--model", "t.onnx"}, []string{"IMAGE"}},
		{[]string{"inspect"}, []string{"URI"}},
		{[]string{"inspect", "--frobnicate", "x"}, []string{"frobnicate"}},
		{[]string{"version", "extra"}, []string{"extra"}},
		{[]string{"frobnicate"}, []string{"frobnicate"}},
		{[]string{"help", "frobnicate"}, []string{"frobnicate"}},
	}
	for _, c := range cases {
		r := runBin(t, nil, c.args...)
		if r.code != 2 {
			t.Errorf("multiad %q: exit %d, want 2\n%s%s", c.args, r.code, r.stdout, r.stderr)
			continue
		}
		if r.stdout != "" {
			t.Errorf("multiad %q printed on stdout: %q", c.args, r.stdout)
		}
		if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n != 0 {
			t.Errorf("multiad %q: %d lines on stderr, want one:\n%s", c.args, n+1, r.stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("multiad %q: stderr %q does not name %q", c.args, r.stderr, w)
			}
		}
	}
}

// TestVersion checks --version, -version and version against the release
// version in internal/version.
func TestVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the multiad binary")
	}
	want := regexp.MustCompile(`^multiad ` + regexp.QuoteMeta(version.Version) + ` \(build [^ ,]+, go[0-9][^)]*\)\n$`)
	var first string
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		r := runBin(t, nil, args...)
		if r.code != 0 || r.stderr != "" || !want.MatchString(r.stdout) {
			t.Errorf("multiad %q: exit %d, stdout %q, stderr %q; want exit 0 and a line matching %s", args, r.code, r.stdout, r.stderr, want)
		}
		if first == "" {
			first = r.stdout
		} else if r.stdout != first {
			t.Errorf("multiad %q printed %q, --version %q", args, r.stdout, first)
		}
	}
}

// TestTeacherClassifyHelp checks the flag line that a back-quoted word in
// the usage string used to garble into "-model multiad teacher import".
func TestTeacherClassifyHelp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the multiad binary")
	}
	r := runBin(t, nil, "teacher", "classify", "-h")
	if !regexp.MustCompile(`(?m)^  -model string\n\s+the teacher ONNX file`).MatchString(r.stdout) {
		t.Errorf("teacher classify -h lacks \"-model string   the teacher ONNX file\":\n%s", r.stdout)
	}
}

// TestScoreHelpGroups checks that score -h lists every score flag and no
// Beam flag, and that --help-beam lists Beam's.
func TestScoreHelpGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the multiad binary")
	}
	listed := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, g := range regexp.MustCompile(`(?m)^  -([A-Za-z][A-Za-z0-9_.-]*)`).FindAllStringSubmatch(s, -1) {
			m[g[1]] = true
		}
		return m
	}
	h := runBin(t, nil, "score", "-h")
	got := listed(h.stdout)
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	registerScoreFlags(fs)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !got[f.Name] {
			t.Errorf("score -h does not list -%s", f.Name)
		}
	})
	if len(got) != n {
		t.Errorf("score -h lists %d flags, want the %d score flags only:\n%s", len(got), n, h.stdout)
	}
	for _, g := range []string{"what to score and where:", "scoring:", "outputs:", "Dataflow workers:", "logging:", "--help-beam"} {
		if !strings.Contains(h.stdout, g) {
			t.Errorf("score -h lacks %q", g)
		}
	}
	b := runBin(t, nil, "score", "--help-beam")
	beam := listed(b.stdout)
	for _, name := range []string{"runner", "project", "region", "temp_location", "worker_binary", "dry_run"} {
		if !beam[name] {
			t.Errorf("score --help-beam does not list -%s", name)
		}
	}
	for name := range got {
		if beam[name] {
			t.Errorf("score --help-beam lists the score flag -%s", name)
		}
	}
}

// TestScorePreflight checks that `multiad score` without the ONNX Runtime
// library, or with a bad bundle, or into an output it cannot write, stops
// in under 2 s with exit 2 and one line saying what to do, before any
// pipeline output.
func TestScorePreflight(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the multiad binary")
	}
	multiadBinary(t)
	root := t.TempDir()
	in := filepath.Join(root, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(root, "bad.bundle")
	if err := os.MkdirAll(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, "model.json"), []byte(`{"format_version": 99}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, "model.onnx"), []byte("not a graph"), 0o644); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(root, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	good, _ := trainTinyOnce(t)
	cases := []struct {
		name  string
		env   []string
		model string
		out   string
		want  []string
	}{
		{"no-library", []string{"MULTIAD_ORT_LIB=" + filepath.Join(root, "missing", "libonnxruntime.so.1")}, good, filepath.Join(root, "out1"),
			[]string{"ONNX Runtime", "MULTIAD_ORT_LIB"}},
		{"bad-bundle", nil, bad, filepath.Join(root, "out2"), []string{"--model", bad, "format version 99", "multiad train"}},
		{"missing-bundle", nil, filepath.Join(root, "nothing"), filepath.Join(root, "out3"), []string{"--model", "nothing"}},
		{"output-under-a-file", nil, good, filepath.Join(notDir, "out"), []string{"--output", notDir}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runBin(t, c.env, "score", "--model="+c.model, "--input="+in, "--output="+c.out)
			if _, err := os.Stat(c.out); c.name == "no-library" && err == nil {
				t.Errorf("the failed check created %s", c.out)
			}
			if r.code != 2 {
				t.Fatalf("exit %d, want 2\n%s%s", r.code, r.stdout, r.stderr)
			}
			all := strings.TrimSpace(r.stdout + r.stderr)
			if strings.Contains(all, "\n") || r.stdout != "" {
				t.Errorf("want one line on stderr, got stdout %q stderr:\n%s", r.stdout, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("message %q does not contain %q", all, w)
				}
			}
			if r.elapsed > 2*time.Second {
				t.Errorf("took %v, want under 2 s", r.elapsed)
			}
		})
	}
	// predict makes the checks that apply to it (library, bundle) before
	// reading any image.
	img := filepath.Join(in, "x.png")
	for _, c := range cases[:3] {
		r := runBin(t, c.env, "predict", "--model="+c.model, img)
		all := strings.TrimSpace(r.stdout + r.stderr)
		if r.code != 2 || r.stdout != "" || strings.Contains(all, "\n") || !strings.Contains(all, c.want[0]) {
			t.Errorf("predict, %s: exit %d, stdout %q, stderr %q; want exit 2 and one line on stderr naming %q", c.name, r.code, r.stdout, r.stderr, c.want[0])
		}
	}
}

// TestScoreOverwriteAndLogLevel scores into a folder twice: the second run
// is refused without --overwrite (exit 2, the earlier outputs untouched)
// and works with it. The default run prints no INFO line (Prism's and
// multiad's); --log-level info prints Prism's.
func TestScoreOverwriteAndLogLevel(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the multiad binary")
	}
	model, _ := trainTinyOnce(t)
	in := shared.LinkTileNormals(t, 3)
	out := filepath.Join(t.TempDir(), "out")
	args := []string{"score", "--model=" + model, "--input=" + filepath.Join(in, "*.jpg"), "--output=" + out, "--device=auto"}
	first := runBin(t, nil, args...)
	if first.code != 0 {
		t.Fatalf("first run: exit %d\n%s%s", first.code, first.stdout, first.stderr)
	}
	if strings.Contains(first.stderr, "level=INFO") || strings.Contains(first.stderr, "CUDA") {
		t.Errorf("default run logs INFO lines or CUDA details:\n%s", first.stderr)
	}
	if !strings.Contains(first.stdout, "wrote "+out) {
		t.Errorf("no result line on stdout: %q", first.stdout)
	}
	summary, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}

	again := runBin(t, nil, args...)
	if again.code != 2 || !strings.Contains(again.stderr, "--overwrite") || strings.Count(strings.TrimSpace(again.stderr), "\n") != 0 {
		t.Errorf("second run without --overwrite: exit %d, stderr %q; want exit 2 and one line naming --overwrite", again.code, again.stderr)
	}
	if now, err := os.ReadFile(filepath.Join(out, "summary.json")); err != nil || !bytes.Equal(now, summary) {
		t.Errorf("the refused run changed summary.json (%v)", err)
	}

	over := runBin(t, nil, append(args, "--overwrite", "--log-level=info")...)
	if over.code != 0 {
		t.Fatalf("run with --overwrite: exit %d\n%s%s", over.code, over.stdout, over.stderr)
	}
	if now, err := os.ReadFile(filepath.Join(out, "summary.json")); err != nil || bytes.Equal(now, summary) {
		t.Errorf("--overwrite did not replace summary.json (%v)", err)
	}
	// Prism's own job lines appear at info.
	if !strings.Contains(over.stderr, "level=INFO") || !strings.Contains(over.stderr, "pipeline done") {
		t.Errorf("--log-level info does not show Prism's INFO lines:\n%s", over.stderr)
	}
}
