package main

import (
	"bufio"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/multiad/multiad/internal/testenv"
)

// The Flex Template checks: scripts/template.sh builds and pushes the image,
// and runs these tests (TestTemplate*) on the binary it is about to push,
// given in MULTIAD_TEMPLATE_BIN.

// maxGlibc is the oldest glibc among the images' runtime bases (Ubuntu
// 22.04 in the GPU image, Debian 12 in the CPU image): the binary must not
// need a newer one.
const maxGlibc = "2.35"

// templateBinary returns $MULTIAD_TEMPLATE_BIN, else the binary the tests
// build (multiadBinary).
func templateBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MULTIAD_TEMPLATE_BIN"); p != "" {
		return p
	}
	if testing.Short() {
		t.Skip("-short: builds the multiad binary")
	}
	return multiadBinary(t)
}

// TestTemplateBinary checks that the image's binary is a linux/amd64 ELF
// whose glibc symbol versions the images provide.
func TestTemplateBinary(t *testing.T) {
	bin := templateBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || f.Machine != elf.EM_X86_64 {
		t.Fatalf("%s is %v %v %v, want a 64-bit little-endian x86-64 ELF", bin, f.Class, f.Data, f.Machine)
	}
	syms, err := f.ImportedSymbols()
	if err != nil {
		t.Fatalf("%s: dynamic symbols: %v", bin, err)
	}
	need, by := "", ""
	for _, s := range syms {
		if v, ok := strings.CutPrefix(s.Version, "GLIBC_"); ok && versionLess(need, v) {
			need, by = v, s.Name
		}
	}
	if versionLess(maxGlibc, need) {
		t.Errorf("%s needs glibc %s (%s) but the images have %s; build on an older system (e.g. in golang:1.26-bookworm)", bin, need, by, maxGlibc)
	}
	t.Logf("%s: linux/amd64 ELF, needs glibc %s (images have >= %s)", bin, need, maxGlibc)
}

// versionLess compares dotted version numbers ("" is the smallest).
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{{"", "2.2.5", true}, {"2.2.5", "", false}, {"2.34", "2.35", true}, {"2.35", "2.35", false}, {"2.4", "2.35", true}, {"2.35.1", "2.35", false}, {"3", "2.99", false}} {
		if got := versionLess(c.a, c.b); got != c.want {
			t.Errorf("versionLess(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

// dockerInstruction is one Dockerfile instruction: its keyword (upper case)
// and words, continuation lines joined, comments dropped.
type dockerInstruction struct {
	line  int
	op    string
	words []string
}

func readDockerfile(t *testing.T, path string) []dockerInstruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []dockerInstruction
	var buf string
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if buf == "" {
			start = n
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			buf += s + " "
			continue
		}
		if w := strings.Fields(buf + line); len(w) > 0 {
			out = append(out, dockerInstruction{start, strings.ToUpper(w[0]), w[1:]})
		}
		buf = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTemplateDockerfiles checks both images' Dockerfiles: every COPY
// source is in the build context scripts/template.sh stages (the binary at
// bin/linux_amd64/multiad, and the scripts and templates folders) or a
// stage of the file; the launcher, the score wrapper, the entry point and
// ONNX Runtime are copied where the environment says; and the worker's Beam
// boot loader has the Beam version of go.mod.
func TestTemplateDockerfiles(t *testing.T) {
	root := repoRoot(t)
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	beam := ""
	for _, l := range strings.Split(string(gomod), "\n") {
		if w := strings.Fields(l); len(w) >= 2 && w[0] == "github.com/apache/beam/sdks/v2" {
			beam = strings.TrimPrefix(w[1], "v")
		}
	}
	if beam == "" {
		t.Fatal("go.mod does not require github.com/apache/beam/sdks/v2")
	}
	for _, name := range []string{"Dockerfile", "Dockerfile.gpu"} {
		path := filepath.Join(root, "templates", name)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		stages, dests := map[string]bool{}, map[string]bool{}
		for _, in := range readDockerfile(t, path) {
			switch in.op {
			case "FROM":
				for i, w := range in.words {
					if strings.EqualFold(w, "AS") && i+1 < len(in.words) {
						stages[in.words[i+1]] = true
					}
				}
			case "COPY", "ADD":
				from := ""
				var args []string
				for _, w := range in.words {
					switch {
					case strings.HasPrefix(w, "--from="):
						from = strings.TrimPrefix(w, "--from=")
					case strings.HasPrefix(w, "--"):
					default:
						args = append(args, w)
					}
				}
				if len(args) < 2 {
					t.Errorf("%s:%d: malformed %s", name, in.line, in.op)
					continue
				}
				dests[args[len(args)-1]] = true
				if from != "" {
					if !stages[from] {
						t.Errorf("%s:%d: COPY --from=%s: no such stage", name, in.line, from)
					}
					continue
				}
				for _, src := range args[:len(args)-1] {
					if src == "bin/linux_amd64/multiad" {
						continue // the binary template.sh builds
					}
					top, _, _ := strings.Cut(src, "/")
					if _, err := os.Stat(filepath.Join(root, src)); err != nil || (top != "scripts" && top != "templates") {
						t.Errorf("%s:%d: COPY source %s is not in the build context (scripts/, templates/, the binary)", name, in.line, src)
					}
				}
			}
		}
		for _, want := range []string{"/template/multiad", "/template/score", "/opt/multiad/entrypoint.sh"} {
			if !dests[want] {
				t.Errorf("%s: nothing is copied to %s", name, want)
			}
		}
		lib := false
		for d := range dests {
			lib = lib || strings.HasPrefix(d, "/opt/multiad/lib/")
		}
		if !lib {
			t.Errorf("%s: ONNX Runtime is not copied to /opt/multiad/lib", name)
		}
		s := string(raw)
		for _, want := range []string{
			"\nENTRYPOINT [\"/opt/multiad/entrypoint.sh\"]",
			"FLEX_TEMPLATE_GO_BINARY=/template/score",
			"MULTIAD_ORT_LIB=/opt/multiad/lib/libonnxruntime.so.1",
			"apache/beam_go_sdk:" + beam,
		} {
			if !strings.Contains(s, want) {
				t.Errorf("%s lacks %q", name, strings.TrimSpace(want))
			}
		}
	}
}

// TestTemplateLibraries checks that each image's final stage installs the
// Debian package of every shared library the binary links (its DT_NEEDED
// entries, resolved to packages by dpkg on the build machine), glibc's own
// libraries aside. ONNX Runtime is loaded at run time and copied, not linked.
func TestTemplateLibraries(t *testing.T) {
	bin := templateBinary(t)
	dpkg := testenv.Tool(t, "dpkg", "dpkg")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	libs, err := f.ImportedLibraries()
	f.Close()
	if err != nil {
		t.Fatalf("%s: DT_NEEDED: %v", bin, err)
	}
	glibc := map[string]bool{"libc.so.6": true, "libm.so.6": true, "libpthread.so.0": true, "libdl.so.2": true, "librt.so.1": true, "libresolv.so.2": true}
	need := map[string]string{} // Debian package -> library
	for _, lib := range libs {
		if glibc[lib] || strings.HasPrefix(lib, "ld-linux") {
			continue
		}
		out, err := exec.Command(dpkg, "-S", "/lib/x86_64-linux-gnu/"+lib).Output()
		if err != nil {
			out, err = exec.Command(dpkg, "-S", "/usr/lib/x86_64-linux-gnu/"+lib).Output()
		}
		if err != nil {
			t.Errorf("%s links %s, which no Debian package on this machine provides", bin, lib)
			continue
		}
		pkg, _, _ := strings.Cut(string(out), ":")
		need[pkg] = lib
	}
	if len(need) == 0 {
		t.Fatalf("%s links no library outside glibc (%v): is it a cgo build?", bin, libs)
	}
	for _, name := range []string{"Dockerfile", "Dockerfile.gpu"} {
		installed := map[string]bool{}
		for _, in := range readDockerfile(t, filepath.Join(repoRoot(t), "templates", name)) {
			if in.op == "FROM" {
				clear(installed) // only the final stage's packages reach the image
			}
			if in.op != "RUN" {
				continue
			}
			inInstall := false
			for _, w := range in.words {
				switch {
				case w == "&&" || w == ";":
					inInstall = false
				case w == "install":
					inInstall = true
				case inInstall && !strings.HasPrefix(w, "-"):
					installed[w] = true
				}
			}
		}
		for pkg, lib := range need {
			if !installed[pkg] {
				t.Errorf("templates/%s: the binary links %s but the final stage does not apt-get install %s", name, lib, pkg)
			}
		}
	}
}

// TestTemplateEntrypoint runs templates/entrypoint.sh with stand-ins for
// the boot loader and the launcher: the boot loader's flags go to boot,
// anything else to the launcher; templates/score.sh adds the subcommand.
func TestTemplateEntrypoint(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	root := repoRoot(t)
	fake := t.TempDir()
	for _, name := range []string{"boot", "launcher", "multiad"} {
		if err := os.WriteFile(filepath.Join(fake, name), []byte("#!/bin/sh\necho "+name+" \"$@\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(script string, env []string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, sh, append([]string{filepath.Join(root, "templates", script)}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v", script, args, err)
		}
		return strings.TrimSpace(string(out))
	}
	ep := []string{"MULTIAD_BOOT=" + filepath.Join(fake, "boot"), "MULTIAD_LAUNCHER=" + filepath.Join(fake, "launcher"), "MULTIAD_ROLE="}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--id=1", "--logging_endpoint=l:1", "--artifact_endpoint=a:1", "--provision_endpoint=p:1", "--control_endpoint=c:1", "--semi_persist_dir=/tmp"}, "boot"},
		{[]string{"--worker_pool"}, "boot"},
		{nil, "launcher"},
		{[]string{"--template_arg=1"}, "launcher"},
	} {
		got := run("entrypoint.sh", ep, c.args...)
		if want := strings.TrimSpace(c.want + " " + strings.Join(c.args, " ")); got != want {
			t.Errorf("entrypoint.sh %v ran %q, want %q", c.args, got, want)
		}
	}
	got := run("score.sh", []string{"MULTIAD_BIN=" + filepath.Join(fake, "multiad")}, "--input=gs://b/x", "--runner=DataflowRunner")
	if want := "multiad score --input=gs://b/x --runner=DataflowRunner"; got != want {
		t.Errorf("score.sh ran %q, want %q", got, want)
	}
}

// TestTemplateGcloud has gcloud validate the template metadata and print
// the spec, without cloud access, when gcloud is installed (CI has none).
func TestTemplateGcloud(t *testing.T) {
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		t.Skip("no gcloud: the spec is not validated by gcloud")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gcloud, "dataflow", "flex-template", "build", "gs://check-bucket/templates/multiad-score.json",
		"--image", "example.com/multiad:check", "--sdk-language", "GO", "--metadata-file", filepath.Join(repoRoot(t), "templates", "score", "metadata.json"), "--print-only")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gcloud rejected templates/score/metadata.json: %v", err)
	}
	if !strings.Contains(string(out), `"sdkInfo"`) || !strings.Contains(string(out), `"GO"`) {
		t.Errorf("gcloud printed an unexpected spec:\n%s", out)
	}
}
