package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/storage/gcstest"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/preprocess"
)

// repoRoot is the module root (cmd/multiad/../..).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// multiadBinary builds cmd/multiad once per test run, the way a user
// builds it for Dataflow (linux/amd64, cgo on, GOEXPERIMENT=simd).
func multiadBinary(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the Dataflow worker binary checks need linux/amd64")
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "multiad-score-test")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "multiad")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "GOEXPERIMENT=simd", "CGO_ENABLED=1", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/multiad: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// putBundle stores a minimal valid bundle (a placeholder graph: nothing
// scores in these tests) at gs://bucket/prefix on the emulator.
func putBundle(t *testing.T, srv *gcstest.Server, bucket, prefix string) {
	t.Helper()
	dir := t.TempDir()
	b := &bundle.Bundle{
		Manifest: bundle.Manifest{
			Format: bundle.FormatVersion, Channels: 3, Preprocess: preprocess.Default(64),
			Input: "image", Outputs: []string{"anomaly_map", "score"},
		},
		Model: []byte("placeholder graph"),
	}
	if err := bundle.Save(context.Background(), dir, b); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{bundle.ManifestFile, bundle.ModelFile} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		srv.Put(bucket, prefix+"/"+name, data)
	}
}

// dryRun runs `multiad score --runner=dataflow --dry_run` with args added and
// returns its combined output. It needs no network: gs:// goes to an
// in-process emulator holding the bundle.
func dryRun(t *testing.T, srvHost string, extra ...string) (string, error) {
	t.Helper()
	bin := multiadBinary(t)
	args := []string{"score",
		"--runner=dataflow", "--dry_run", "--project=fake-proj", "--region=us-central1",
		"--temp_location=gs://fake/tmp", "--staging_location=gs://fake/staging",
		"--model=gs://fake/m", "--input=gs://fake/in", "--output=gs://fake/out",
	}
	args = append(args, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "STORAGE_EMULATOR_HOST="+srvHost, "MULTIAD_WORKER_IMAGE=",
		"GOOGLE_APPLICATION_CREDENTIALS=/nonexistent", "GCE_METADATA_HOST=127.0.0.1:1", "NO_GCE_CHECK=True")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("multiad score --dry_run did not finish in 2 minutes:\n%s", out)
	}
	return string(out), err
}

// printedJob extracts the Dataflow job that --dry_run logs: Beam logs it
// with log/slog as one quoted msg="{...}" holding the indented job JSON.
func printedJob(t *testing.T, out string) map[string]any {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		i := strings.Index(line, "msg=\"{")
		if i < 0 {
			continue
		}
		q := line[i+len("msg="):]
		if j := strings.LastIndex(q, "\""); j > 0 {
			q = q[:j+1]
		}
		msg, err := strconv.Unquote(q)
		if err != nil {
			continue
		}
		var job map[string]any
		if json.Unmarshal([]byte(msg), &job) == nil && job["environment"] != nil {
			return job
		}
	}
	t.Fatalf("no job JSON in the output:\n%s", out)
	return nil
}

// findInPayloads looks for re in the base64 payloads of the logged
// pipeline, decoding nested base64 (DoFn configurations are JSON inside a
// proto inside base64) up to depth levels, and returns the first match.
func findInPayloads(re *regexp.Regexp, s string, depth int) []string {
	if m := re.FindStringSubmatch(s); m != nil {
		return m
	}
	if depth == 0 {
		return nil
	}
	for _, tok := range base64Token.FindAllString(s, -1) {
		// A token may start inside a preceding escape such as \\x05.
		for k := 0; k < 4 && k < len(tok); k++ {
			b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(tok[k:], "="))
			if err != nil {
				continue
			}
			if m := findInPayloads(re, string(b), depth-1); m != nil {
				return m
			}
		}
	}
	return nil
}

var base64Token = regexp.MustCompile(`[A-Za-z0-9+/]{24,}={0,2}`)

// lookup walks a decoded JSON value along keys (string keys for objects,
// "0", "1", ... for arrays).
func lookup(v any, keys ...string) any {
	for _, k := range keys {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			var i int
			if _, err := fmt.Sscan(k, &i); err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func TestScoreDataflowDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the multiad binary")
	}
	srv, err := gcstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	putBundle(t, srv, "fake", "m")
	srv.Put("fake", "in/a.png", []byte("not read at construction"))

	const image = "gcr.io/fake/multiad:1"
	const gpu = "type:nvidia-tesla-t4;count:1;install-nvidia-driver"
	tests := []struct {
		name      string
		args      []string
		wantGPU   bool
		wantBatch string
		wantMem   string
	}{
		{"cpu", []string{"--sdk_container_image=" + image}, false, fmt.Sprint(cpuBatchSize), "0"},
		{"gpu", []string{"--sdk_container_image=" + image, "--gpu=" + gpu, "--worker_machine_type=n1-standard-4", "--gpu-mem-limit=4GiB"}, true, fmt.Sprint(cudaBatchSize), "4294967296"},
		{"gpu-shorthand-explicit-batch", []string{"--sdk_container_image=" + image, "--gpu=nvidia-l4", "--batch-size=4"}, true, "4", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := dryRun(t, srv.Host, tt.args...)
			if err != nil {
				t.Fatalf("multiad score --dry_run: %v\n%s", err, out)
			}
			bin := multiadBinary(t)
			if !strings.Contains(out, "Dataflow workers will run this binary, "+bin) {
				t.Errorf("no log line saying the worker binary defaults to %s:\n%s", bin, out)
			}
			job := printedJob(t, out)
			opts, _ := lookup(job, "environment", "sdkPipelineOptions", "beam:option:go_options:v1", "options").(map[string]any)
			if opts == nil {
				t.Fatalf("job has no Go pipeline options:\n%s", out)
			}
			if got := opts["worker_binary"]; got != bin {
				t.Errorf("pipeline option worker_binary = %v, want %s", got, bin)
			}
			if got := lookup(job, "environment", "workerPools", "0", "sdkHarnessContainerImages", "0", "containerImage"); got != image {
				t.Errorf("worker container image = %v, want %s", got, image)
			}
			var services []string
			for _, s := range asSlice(lookup(job, "environment", "serviceOptions")) {
				services = append(services, fmt.Sprint(s))
			}
			hasGPU := false
			for _, s := range services {
				if strings.HasPrefix(s, "worker_accelerator=") {
					hasGPU = true
					if tt.name == "gpu" && s != "worker_accelerator="+gpu {
						t.Errorf("service option %q, want worker_accelerator=%s", s, gpu)
					}
					if tt.name == "gpu-shorthand-explicit-batch" && s != "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver" {
						t.Errorf("service option %q from --gpu=nvidia-l4", s)
					}
				}
			}
			if hasGPU != tt.wantGPU {
				t.Errorf("service options %q: worker_accelerator present %v, want %v", services, hasGPU, tt.wantGPU)
			}
			// The scoring DoFn's configuration is serialized into the
			// pipeline that --dry_run logs.
			m := findInPayloads(regexp.MustCompile(`"BatchSize":(\d+)`), out, 3)
			if m == nil {
				t.Errorf("no BatchSize in the logged pipeline")
			} else if m[1] != tt.wantBatch {
				t.Errorf("BatchSize %s, want %s", m[1], tt.wantBatch)
			}
			if m := findInPayloads(regexp.MustCompile(`"GPUMemLimit":(\d+)`), out, 3); m == nil || m[1] != tt.wantMem {
				t.Errorf("GPUMemLimit in the logged pipeline: %v, want %s", m, tt.wantMem)
			}
		})
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func TestScoreDataflowErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the multiad binary")
	}
	srv, err := gcstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	putBundle(t, srv, "fake", "m")
	srv.Put("fake", "used/summary.json", []byte("{}"))
	tests := []struct {
		name string
		args []string
		want string
	}{
		// Preflight checks of the output folder on GCS (exit 2).
		{"earlier-run", []string{"--output=gs://fake/used"}, "--output gs://fake/used holds an earlier run's outputs (summary.json): give --overwrite"},
		{"unwritable-output", []string{"--output=gs://no-such-bucket/out"}, "--output gs://no-such-bucket/out cannot be written"},
		{"gpu-without-dataflow", []string{"--runner=prism", "--gpu=nvidia-l4"}, "--gpu attaches GPUs to Dataflow workers"},
		{"bad-gpu", []string{"--gpu=type:nvidia-l4;count:0"}, "count must be a positive number"},
		{"gpu-twice", []string{"--gpu=nvidia-l4", "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1"}, "give one"},
		{"bad-device", []string{"--device=tpu"}, "tpu"},
		{"stray-argument", []string{"gs://fake/in2"}, "unexpected arguments"},
		{"missing-bundle", []string{"--model=gs://fake/nothing"}, "gs://fake/nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := dryRun(t, srv.Host, tt.args...)
			if err == nil {
				t.Fatalf("multiad score %q succeeded:\n%s", tt.args, out)
			}
			// Each is a bad flag or a failed check before the pipeline.
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
				t.Errorf("multiad score %q: %v, want exit status 2\n%s", tt.args, err, out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output does not mention %q:\n%s", tt.want, out)
			}
			if strings.Contains(out, "panic") {
				t.Errorf("panicked:\n%s", out)
			}
		})
	}
}

// TestScoreWorkerMode starts the binary the way Beam's Go boot loader
// (sdks/go/container/boot.go) starts a worker, with no control service
// listening: it must exit non-zero with a message naming the endpoint, not
// hang.
func TestScoreWorkerMode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the multiad binary")
	}
	t.Parallel()
	bin := multiadBinary(t)
	// multiad probes the endpoint for 10 s before handing over to Beam.
	const limit = 25 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, "--worker=true", "--id=1",
		"--logging_endpoint=localhost:1", "--control_endpoint=localhost:1", "--semi_persist_dir="+dir)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("worker still running after %v:\n%s", limit, out.String())
	}
	if err == nil {
		t.Fatalf("worker exited 0 without a control service:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "localhost:1") {
		t.Errorf("worker failure does not name the control endpoint:\n%s", out.String())
	}
	t.Logf("worker failed after %.1f s: %s", time.Since(start).Seconds(), lastLine(out.String()))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// metadataParam is one parameter of a Flex Template's metadata.json.
type metadataParam struct {
	Name       string   `json:"name"`
	Label      string   `json:"label"`
	HelpText   string   `json:"helpText"`
	IsOptional *bool    `json:"isOptional"`
	Regexes    []string `json:"regexes"`
}

func readMetadata(t *testing.T) (name string, params []metadataParam) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "templates", "score", "metadata.json"))
	if err != nil {
		t.Fatal(err)
	}
	var md struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  []metadataParam `json:"parameters"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&md); err != nil {
		t.Fatalf("templates/score/metadata.json: %v", err)
	}
	if md.Name == "" || md.Description == "" {
		t.Errorf("metadata.json: name and description are required")
	}
	return md.Name, md.Parameters
}

// TestScoreMetadata checks templates/score/metadata.json against the flags:
// every parameter is a score flag and every score flag is a parameter.
func TestScoreMetadata(t *testing.T) {
	_, params := readMetadata(t)
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	registerScoreFlags(fs)
	flags := map[string]*flag.Flag{}
	fs.VisitAll(func(f *flag.Flag) { flags[f.Name] = f })

	seen := map[string]bool{}
	for _, p := range params {
		if seen[p.Name] {
			t.Errorf("parameter %s listed twice", p.Name)
		}
		seen[p.Name] = true
		f := flags[p.Name]
		if f == nil {
			t.Errorf("metadata parameter %q is not a multiad score flag", p.Name)
			continue
		}
		if p.Label == "" || p.HelpText == "" || p.IsOptional == nil {
			t.Errorf("parameter %s: label, helpText and isOptional are required", p.Name)
		}
		required := p.Name == "model" || p.Name == "input" || p.Name == "output"
		if p.IsOptional != nil && *p.IsOptional == required {
			t.Errorf("parameter %s: isOptional %v", p.Name, *p.IsOptional)
		}
		// The flag's default must pass the parameter's regexes (Dataflow
		// checks given values only, but a default that fails them means
		// the two disagree), unless it is empty or zero ("chosen by the
		// command", as for batch-size).
		for _, r := range p.Regexes {
			re, err := regexp.Compile(r)
			if err != nil {
				t.Errorf("parameter %s: regex %q: %v", p.Name, r, err)
				continue
			}
			if def := f.DefValue; def != "" && def != "0" && !re.MatchString(def) {
				t.Errorf("parameter %s: default %q does not match regex %q", p.Name, def, r)
			}
		}
	}
	var missing []string
	for name := range flags {
		if !seen[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("score flags missing from templates/score/metadata.json: %s", strings.Join(missing, ", "))
	}
}

// TestScoreMetadataRegexes checks the URI and value regexes on examples.
func TestScoreMetadataRegexes(t *testing.T) {
	_, params := readMetadata(t)
	cases := map[string]struct{ good, bad []string }{
		"model":         {[]string{"gs://my-bucket/models/tiles", "gs://b_1/m.tar"}, []string{"/local/model", "gs://", "s3://b/m", "gs://b"}},
		"input":         {[]string{"gs://bkt/scans/*.dcm", "gs://my.bucket/test.csv", "gs://bucket-1/mvtec/"}, []string{"scans/*.dcm", "file:///x"}},
		"output":        {[]string{"gs://bkt/runs/1"}, []string{"out", "http://bkt/x", "gs://b/too-short-bucket"}},
		"heatmaps":      {[]string{"none", "anomalous", "all"}, []string{"some"}},
		"device":        {[]string{"auto", "cpu", "cuda"}, []string{"tpu"}},
		"max-failures":  {[]string{"10", "0.05", "5%", "1"}, []string{"-1", "ten"}},
		"gpu":           {[]string{"nvidia-l4", "type:nvidia-tesla-t4;count:1;install-nvidia-driver"}, []string{"type:t4,count:1"}},
		"gpu-mem-limit": {[]string{"4GiB", "512MiB", "1000000"}, []string{"4 potatoes"}},
		"batch-size":    {[]string{"1", "16"}, []string{"0", "-3"}},
		"threads":       {[]string{"0", "2", "auto"}, []string{"-1", "two"}},
		"in-flight":     {[]string{"1", "2"}, []string{"0", "-1"}},
	}
	byName := map[string]metadataParam{}
	for _, p := range params {
		byName[p.Name] = p
	}
	for name, c := range cases {
		p, ok := byName[name]
		if !ok {
			t.Errorf("no parameter %s", name)
			continue
		}
		match := func(v string) bool {
			for _, r := range p.Regexes {
				if !regexp.MustCompile(r).MatchString(v) {
					return false
				}
			}
			return true
		}
		for _, v := range c.good {
			if !match(v) {
				t.Errorf("parameter %s rejects %q", name, v)
			}
		}
		for _, v := range c.bad {
			if match(v) {
				t.Errorf("parameter %s accepts %q", name, v)
			}
		}
	}
}

func TestParseAccelerator(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"type:nvidia-tesla-t4;count:1;install-nvidia-driver", "type:nvidia-tesla-t4;count:1;install-nvidia-driver", true},
		{"nvidia-l4", "type:nvidia-l4;count:1;install-nvidia-driver", true},
		{"type:nvidia-l4;count:2", "type:nvidia-l4;count:2", true},
		{"type:nvidia-l4;count:1;install-nvidia-driver;use_nvidia_mps", "type:nvidia-l4;count:1;install-nvidia-driver;use_nvidia_mps", true},
		{"type:nvidia-l4", "", false},
		{"count:1", "", false},
		{"type:nvidia-l4;count:zero", "", false},
		{"type:nvidia-l4,count:1", "", false},
		{"type:nvidia-l4;;count:1", "", false},
	}
	for _, tt := range tests {
		got, err := parseAccelerator(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseAccelerator(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"1048576", 1 << 20, true}, {"512MiB", 512 << 20, true}, {"4GiB", 4 << 30, true},
		{"1.5GiB", 3 << 29, true}, {"8GB", 8e9, true}, {"100 KB", 1e5, true}, {"7B", 7, true},
		{"", 0, false}, {"-1", 0, false}, {"4 potatoes", 0, false}, {"GiB", 0, false}, {"1e30", 0, false},
	}
	for _, tt := range tests {
		got, err := parseBytes(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("parseBytes(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestCheckWorkerBinary(t *testing.T) {
	// The test binary itself is a linux/amd64 ELF when run there.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	err = checkWorkerBinary(self)
	if want := runtime.GOOS == "linux" && runtime.GOARCH == "amd64"; (err == nil) != want {
		t.Errorf("checkWorkerBinary(test binary on %s/%s) = %v", runtime.GOOS, runtime.GOARCH, err)
	}
	script := filepath.Join(t.TempDir(), "multiad")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec multiad score \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkWorkerBinary(script); err == nil {
		t.Error("checkWorkerBinary(shell script): no error")
	}
	if err := checkWorkerBinary(""); err == nil {
		t.Error("checkWorkerBinary(\"\"): no error")
	}
	if err := checkWorkerBinary(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Error("checkWorkerBinary(absent): no error")
	}
}

// TestPrepareScoreDefaults checks the batch-size and device defaults and
// the Flex Template's default worker image on a flag set like the real one.
func TestPrepareScoreDefaults(t *testing.T) {
	self, _ := os.Executable()
	tests := []struct {
		name       string
		args       []string
		image      string
		wantBatch  int
		wantDevice string
		wantImage  string
		wantMem    int64
		wantErr    string
		submitOnly bool
	}{
		{name: "prism-cpu", args: []string{"--device=cpu"}, wantBatch: cpuBatchSize, wantDevice: "cpu"},
		{name: "prism-auto", args: nil, wantBatch: cpuBatchSize, wantDevice: "auto"},
		{name: "prism-cuda", args: []string{"--device=cuda"}, wantBatch: cudaBatchSize, wantDevice: "cuda"},
		{name: "explicit-batch", args: []string{"--device=cuda", "--batch-size=3"}, wantBatch: 3, wantDevice: "cuda"},
		{name: "dataflow-gpu", args: []string{"--runner=dataflow", "--gpu=nvidia-l4"}, image: "img:1",
			wantBatch: cudaBatchSize, wantDevice: "cuda", wantImage: "img:1"},
		{name: "dataflow-gpu-cpu-device", args: []string{"--runner=DataflowRunner", "--gpu=nvidia-l4", "--device=cpu", "--sdk_container_image=mine"},
			image: "img:1", wantBatch: cpuBatchSize, wantDevice: "cpu", wantImage: "mine"},
		{name: "dry-run", args: []string{"--runner=dataflow", "--dry_run=true"}, wantBatch: cpuBatchSize, wantDevice: "auto", submitOnly: true},
		{name: "gpu-mem-limit", args: []string{"--device=cuda", "--gpu-mem-limit=4GiB"}, wantBatch: cudaBatchSize, wantDevice: "cuda", wantMem: 4 << 30},
		{name: "bad-gpu-mem-limit", args: []string{"--gpu-mem-limit=lots"}, wantErr: "gpu-mem-limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("score", flag.ContinueOnError)
			sf := registerScoreFlags(fs)
			// Stand-ins for the Beam flags that prepareScore reads and sets.
			for _, name := range []string{"runner", "dataflow_service_options", "worker_binary", "sdk_container_image",
				"worker_harness_container_image", "environment_config", "template_location"} {
				fs.String(name, "", "")
			}
			for _, name := range []string{"dry_run", "async", "execute_async"} {
				fs.Bool(name, false, "")
			}
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			plan, err := prepareScore(fs, sf, self, tt.image)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sf.opt.BatchSize != tt.wantBatch || sf.opt.Device != tt.wantDevice {
				t.Errorf("batch %d device %s, want %d %s", sf.opt.BatchSize, sf.opt.Device, tt.wantBatch, tt.wantDevice)
			}
			if sf.opt.GPUMemLimit != tt.wantMem {
				t.Errorf("GPUMemLimit %d, want %d", sf.opt.GPUMemLimit, tt.wantMem)
			}
			if got := fs.Lookup("sdk_container_image").Value.String(); got != tt.wantImage {
				t.Errorf("sdk_container_image %q, want %q", got, tt.wantImage)
			}
			if plan.submitOnly != tt.submitOnly {
				t.Errorf("submitOnly %v, want %v", plan.submitOnly, tt.submitOnly)
			}
		})
	}
}

// TestTemplateDryRun runs scripts/template.sh --dry-run: it prints the
// build and template commands it would run.
func TestTemplateDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the multiad binary")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash")
	}
	bin := multiadBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(t), "scripts", "template.sh"), "--dry-run")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "MULTIAD_BIN="+bin, "PROJECT=fake-proj", "BUCKET=fake-bucket", "TAG=t1",
		"BUILDER=cloudbuild", "GPU=1", "ORT_GPU_SHA256=skip")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/template.sh --dry-run: %v\n%s", err, out)
	}
	const image = "us-central1-docker.pkg.dev/fake-proj/multiad/multiad-gpu:t1"
	for _, want := range []string{
		"+ go test -count=1 -run \\^TestTemplate ./cmd/multiad",
		"-f, templates/Dockerfile.gpu",
		`"IMAGE=` + image + `"`,
		"+ gcloud builds submit ",
		"+ gcloud dataflow flex-template build gs://fake-bucket/templates/multiad-score-gpu.json --project fake-proj --image " + image +
			" --sdk-language GO --metadata-file templates/score/metadata.json",
		"--worker-machine-type g2-standard-4",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("template.sh --dry-run output lacks %q:\n%s", want, out)
		}
	}
}

// TestScorePrism runs `multiad score` end to end on Prism, on three
// magnetic tile images, with the bundle given by MULTIAD_TEST_BUNDLE or else
// a tiny one that `multiad train` makes in seconds.
func TestScorePrism(t *testing.T) {
	model := os.Getenv("MULTIAD_TEST_BUNDLE")
	if model == "" {
		model, _ = trainTiny(t)
	}
	bin := multiadBinary(t)
	in := t.TempDir()
	crack := shared.MustPath(t, "data", "industrial", "magnetic_tile", "test", "crack")
	names, err := filepath.Glob(filepath.Join(crack, "*.jpg"))
	if err != nil || len(names) < 3 {
		t.Fatalf("want 3 images in %s: %v", crack, err)
	}
	for _, n := range names[:3] {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(in, filepath.Base(n)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "score", "--model="+model, "--input="+filepath.Join(in, "*.jpg"), "--output="+out, "--device=cpu")
	cmd.Dir = repoRoot(t)
	stderr, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("multiad score: %v\n%s", err, stderr)
	}
	var sum struct{ Inputs, Scored, Failed int }
	data, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &sum); err != nil {
		t.Fatal(err)
	}
	lines, err := os.ReadFile(filepath.Join(out, "scores.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Scored != 3 || sum.Failed != 0 || strings.Count(string(lines), "\n") != 3 {
		t.Errorf("summary %+v, %d score lines; want 3 scored", sum, strings.Count(string(lines), "\n"))
	}

	// A truncated image is a failure; over --max-failures the command
	// exits 3 after writing the outputs.
	if err := os.WriteFile(filepath.Join(in, "truncated.jpg"), []byte("\xff\xd8\xff\xe0"), 0o644); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(t.TempDir(), "out")
	cmd = exec.CommandContext(ctx, bin, "score", "--model="+model, "--input="+filepath.Join(in, "*.jpg"), "--output="+out2,
		"--device=cpu", "--max-failures=0")
	cmd.Dir = repoRoot(t)
	stderr, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("multiad score --max-failures=0 with a truncated image: %v, want exit status 3\n%s", err, stderr)
	}
	if data, err = os.ReadFile(filepath.Join(out2, "summary.json")); err != nil {
		t.Fatalf("no summary.json after too many failures: %v", err)
	}
	if err := json.Unmarshal(data, &sum); err != nil || sum.Scored != 3 || sum.Failed != 1 {
		t.Errorf("summary %+v (%v), want 3 scored and 1 failed", sum, err)
	}
}
