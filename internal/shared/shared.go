// Package shared locates the project's shared data folder (real datasets,
// reference decodes, teacher weights). It is ../shared relative to the
// repository root unless MULTIAD_SHARED names another folder.
package shared

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
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
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// MustPath is Path for tests: it fails the test if the folder or the file
// does not exist.
func MustPath(t TB, elems ...string) string {
	t.Helper()
	p, err := Path(elems...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shared file missing: %v", err)
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
