// Package testenv decides what a test does when something it needs from
// outside the repository is missing: the shared data folder, a Python
// module used as a reference oracle, or an external tool. It skips, saying
// what is missing, so that the tests run anywhere; with
// MULTIAD_REQUIRE_SHARED=1 (set by .ci/run) it fails instead, so that CI
// runs every test. With -short (make test-short) tests use none of them:
// unit tests only.
package testenv

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// RequireEnv, set to 1, turns the skips of Missing into failures.
const RequireEnv = "MULTIAD_REQUIRE_SHARED"

// PythonEnv names the Python interpreter to use before the default ones.
const PythonEnv = "MULTIAD_PYTHON"

// TB is the subset of testing.TB used here.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// Required reports whether missing test dependencies fail the test
// ($MULTIAD_REQUIRE_SHARED is 1).
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Short reports whether the test binary runs with -short. It reads the flag
// rather than calling testing.Short, so that internal/shared, which
// production code imports, does not link package testing.
func Short() bool {
	f := flag.Lookup("test.short")
	return f != nil && f.Value.String() == "true"
}

// SkipIfShort skips the test under -short, which runs unit tests only:
// what names the outside dependency the test would use.
func SkipIfShort(t TB, what string) {
	t.Helper()
	if Short() {
		t.Skipf("-short: unit tests only, no %s", what)
	}
}

// Missing ends the test for want of what the message describes: it fails
// when Required, and skips otherwise.
func Missing(t TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s (%s=1: required)", msg, RequireEnv)
		return
	}
	t.Skipf("%s (set %s=1 to fail instead)", msg, RequireEnv)
}

// pythons lists the interpreters Python tries, in order.
func pythons() []string {
	var c []string
	if p := os.Getenv(PythonEnv); p != "" {
		c = append(c, p)
	}
	return append(c, "/usr/bin/python3", "python3")
}

// Python returns the first of $MULTIAD_PYTHON, /usr/bin/python3 and python3
// on PATH that imports every module of mods (e.g. "sklearn", "pydicom",
// "numpy"); when none does, Missing names the modules the best candidate
// lacks and the Debian packages providing them. Answers are cached for the
// test binary's life. Under -short it skips.
func Python(t TB, mods ...string) string {
	t.Helper()
	SkipIfShort(t, "Python")
	var lacks []string
	found := false
	for _, p := range pythons() {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		found = true
		miss, err := missingModules(path, mods)
		if err != nil {
			continue
		}
		if len(miss) == 0 {
			return path
		}
		if lacks == nil || len(miss) < len(lacks) {
			lacks = miss
		}
	}
	if !found || lacks == nil {
		Missing(t, "no working python3 (tried %s)", strings.Join(pythons(), ", "))
		return ""
	}
	var pkgs []string
	for _, m := range lacks {
		pkgs = append(pkgs, debianPackage(m))
	}
	Missing(t, "python3 lacks module %s (Debian: %s)", strings.Join(lacks, ", "), strings.Join(pkgs, " "))
	return ""
}

var (
	modMu    sync.Mutex
	modCache = map[string][]string{} // interpreter and modules → the missing ones
)

// missingModules returns the modules of mods that the interpreter at path
// cannot import, trying them all in one process.
func missingModules(path string, mods []string) ([]string, error) {
	key := path + "\x00" + strings.Join(mods, "\x00")
	modMu.Lock()
	defer modMu.Unlock()
	if m, ok := modCache[key]; ok {
		return m, nil
	}
	const script = `import importlib, sys
for m in sys.argv[1:]:
    try:
        importlib.import_module(m)
    except Exception:
        print(m)`
	out, err := exec.Command(path, append([]string{"-c", script}, mods...)...).Output()
	if err != nil {
		return nil, err
	}
	miss := strings.Fields(string(out))
	if miss == nil {
		miss = []string{}
	}
	modCache[key] = miss
	return miss, nil
}

// debianPackage names the Debian package of Python module m.
func debianPackage(m string) string {
	switch m {
	case "sklearn":
		return "python3-sklearn"
	case "skimage":
		return "python3-skimage"
	case "PIL":
		return "python3-pil"
	}
	return "python3-" + strings.ToLower(m)
}

// Tool returns the path of executable name (LookPath); when it is missing,
// Missing names it and pkg, the Debian package that provides it. Under
// -short it skips.
func Tool(t TB, name, pkg string) string {
	t.Helper()
	SkipIfShort(t, name)
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s not found (Debian package %s)", name, pkg)
		return ""
	}
	return p
}
