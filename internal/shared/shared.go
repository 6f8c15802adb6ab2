// Package shared locates the project's shared data folder (real datasets,
// reference decodes, teacher weights). It is ../shared relative to the
// repository root unless MULTIAD_SHARED names another folder.
package shared

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/multiad/multiad/internal/testenv"
)

// EnvVar overrides the shared folder's location.
const EnvVar = "MULTIAD_SHARED"

// Dir returns the shared folder: $MULTIAD_SHARED, or the first "shared"
// folder found beside the repository root while walking up from the working
// directory.
func Dir() (string, error) {
	if d := os.Getenv(EnvVar); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			cand := filepath.Join(filepath.Dir(d), "shared")
			if st, err := os.Stat(cand); err == nil && st.IsDir() {
				return cand, nil
			}
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	return "", fmt.Errorf("shared data folder not found: set %s or place it at ../shared beside the repository", EnvVar)
}

// Path joins elems onto Dir.
func Path(elems ...string) (string, error) {
	d, err := Dir()
	if err != nil {
		return "", err
	}
	return filepath.Join(append([]string{d}, elems...)...), nil
}

// TB is the subset of testing.TB used by MustPath.
type TB = testenv.TB

// MustPath is Path for tests: when the folder or the file does not exist it
// skips the test, saying which, or fails it when MULTIAD_REQUIRE_SHARED=1
// (testenv.Missing). Under -short (unit tests only) it skips.
func MustPath(t TB, elems ...string) string {
	t.Helper()
	testenv.SkipIfShort(t, "shared data")
	p, err := Path(elems...)
	if err != nil {
		testenv.Missing(t, "%v", err)
		return ""
	}
	if _, err := os.Stat(p); err != nil {
		testenv.Missing(t, "shared data missing: %v", err)
		return ""
	}
	return p
}

// DirTB is the subset of testing.TB used by LinkTileNormals.
type DirTB interface {
	TB
	TempDir() string
}

// LinkTileNormals links the first n (by name) real magnetic-tile training
// normals into a new temporary folder and returns it: a small training set
// for tests.
func LinkTileNormals(t DirTB, n int) string {
	t.Helper()
	src := MustPath(t, "data", "industrial", "magnetic_tile", "train", "good")
	names, err := filepath.Glob(filepath.Join(src, "*.jpg"))
	if err != nil || len(names) < n {
		t.Fatalf("want %d images in %s, found %d (%v)", n, src, len(names), err)
	}
	sort.Strings(names)
	dir := t.TempDir()
	for _, p := range names[:n] {
		if err := os.Symlink(p, filepath.Join(dir, filepath.Base(p))); err != nil {
			t.Fatalf("%v", err)
		}
	}
	return dir
}

// SkipExamplesIfMissing leaves the package's examples out of the test run
// (it adds ^Example to -test.skip) under -short, or when the shared folder is
// missing and missing data may skip (testenv.Required is false): an example
// cannot skip itself, and its output is that of the shared data. Call it
// first in TestMain; it parses the command line.
func SkipExamplesIfMissing() {
	if !flag.Parsed() {
		flag.Parse()
	}
	d, err := Dir()
	if err == nil {
		_, err = os.Stat(d)
	}
	switch {
	case testenv.Short():
		err = errors.New("-short: unit tests only")
	case err == nil || testenv.Required():
		return
	}
	skip := flag.Lookup("test.skip")
	if skip == nil {
		return
	}
	pat := "^Example"
	if v := skip.Value.String(); v != "" {
		pat += "|" + v
	}
	if skip.Value.Set(pat) != nil {
		return
	}
	fmt.Printf("examples skipped, they need the shared data: %v\n", err)
}
